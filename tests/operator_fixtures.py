"""Operator fixtures for every cluster test (registered once from tests/conftest.py): the real operator process, the CRD, Runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from runyard.ports import free_port
from tests.conftest import ROOT, Cluster
from tests.unit.artifacts import s3server

CRD_FILE = ROOT / "crds" / "runyard.dev_trainingruns.yaml"


def wait_until(check: Callable[[], Any], timeout: float = 60, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


class OperatorProcess:
    """`runyard-operator run` as a real process; restartable and killable by tests."""

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.extra_args = extra_args or []
        self.env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env}
        exe = Path(sys.executable).parent / "runyard-operator"
        with open(self.log_dir / f"operator-{self.starts}.log", "wb") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [str(exe), "run", "--metrics-port", str(self.port), "--log-format", "plain", *self.extra_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_until(self._ready, timeout=60, what="operator /readyz")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}; see {self.log_dir}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            return str(resp.read().decode())

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    # Every CRD Runyard ships (runs, templates, sweeps), as `kubectl apply -f crds/` applies them.
    paths = sorted(CRD_FILE.parent.glob("*.yaml"))
    for path in paths:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    names = [f"crd/{path.stem.split('_', 1)[1]}.runyard.dev" for path in paths]
    cluster.kubectl("wait", "--for=condition=Established", *names, "--timeout=60s")


# The session operator, once a test has asked for it: tests that run their own cluster-wide operator pause it.
_SESSION_OPERATOR: list[OperatorProcess] = []


@contextlib.contextmanager
def session_operator_paused() -> Iterator[None]:
    """Stop the session operator (if one runs) for the block, so a test's own operator does not race it."""
    running = [p for p in _SESSION_OPERATOR if p.proc is not None and p.proc.poll() is None]
    for proc in running:
        proc.stop()
    try:
        yield
    finally:
        for proc in running:
            proc.start()


# The operator reads no Secret of a run's namespace: it reaches the test S3 store with its own credentials.
OPERATOR_S3_ENV = {"AWS_ACCESS_KEY_ID": s3server.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": s3server.SECRET_KEY}


@pytest.fixture(scope="session")
def operator(cluster: Cluster, crd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster.kubeconfig, tmp_path_factory.mktemp("operator"), env=OPERATOR_S3_ENV)
    proc.start()
    _SESSION_OPERATOR.append(proc)
    yield proc
    _SESSION_OPERATOR.remove(proc)
    proc.stop()


class Runs:
    """Create TrainingRuns and read them back in one namespace."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.api = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.namespace = namespace

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.api.create_namespaced_custom_object(
                "runyard.dev", "v1alpha1", self.namespace, "trainingruns", manifest
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return dict(
            self.api.get_namespaced_custom_object("runyard.dev", "v1alpha1", self.namespace, "trainingruns", name)
        )

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.api.patch_namespaced_custom_object(
                "runyard.dev", "v1alpha1", self.namespace, "trainingruns", name, body
            )
        )

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object("runyard.dev", "v1alpha1", self.namespace, "trainingruns", name)

    def names(self) -> list[str]:
        items = self.api.list_namespaced_custom_object("runyard.dev", "v1alpha1", self.namespace, "trainingruns")
        return [item["metadata"]["name"] for item in items["items"]]

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def wait_phase(self, name: str, *phases: str, timeout: float = 60) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (s := self.status(name)).get("phase") in phases and s,
                timeout=timeout,
                what=f"{name} to reach {phases}",
            )
        )

    def jobs(self, name: str) -> list[Any]:
        return list(self.batch.list_namespaced_job(self.namespace, label_selector=f"runyard.dev/run-name={name}").items)

    def pods(self, name: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=f"runyard.dev/run-name={name}").items)

    def events(self, name: str) -> list[Any]:
        return list(
            self.core.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=TrainingRun"
            ).items
        )

    def wait_events(self, name: str, reason: str | None = None, contains: str = "", timeout: float = 30) -> list[Any]:
        """The run's Events once one matches: the operator posts a change's Events after the status write a test waits
        for, so reading them right after a phase is seen races that post."""

        def matching() -> list[Any]:
            found = self.events(name)
            if any((reason is None or e.reason == reason) and contains in (e.message or "") for e in found):
                return found
            return []

        events: list[Any] = wait_until(
            matching, timeout=timeout, what=f"an event {reason or ''} {contains!r} for {name}"
        )
        return events


@pytest.fixture
def runs(api: Any, namespace: str, operator: OperatorProcess) -> Runs:
    return Runs(api, namespace)


def job_failed(runs: Runs, name: str) -> bool:
    """The Job has its Failed condition (what the Job controller records, whoever watches)."""
    job = runs.batch.read_namespaced_job(name, runs.namespace)
    return any(c.type == "Failed" and c.status == "True" for c in job.status.conditions or [])


def load_example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "examples" / name).read_text()))


def training_run(
    name: str,
    framework: str = "pytorch",
    replicas: dict[str, int] | None = None,
    *,
    gpus: int = 0,
    outcome: str | None = None,
    sim: dict[str, str] | None = None,
    run_policy: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A TrainingRun manifest whose kwok-simulated pods behave as `outcome` says (see tests/README.md)."""
    replicas = replicas or {"node": 2}
    labels = {"sim.runyard.dev/outcome": outcome} if outcome else {}
    annotations = {"sim.runyard.dev/duration": "1s", **(sim or {})}
    body: dict[str, Any] = {
        "apiVersion": "runyard.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {
            "framework": framework,
            "image": "ghcr.io/runyard/examples:0.1.0",
            "command": ["python", "train.py"],
            "replicas": {role: {"replicas": n, "resources": {"gpus": gpus}} for role, n in replicas.items()},
            "podTemplate": {"metadata": {"labels": labels, "annotations": annotations}},
            **spec,
        },
    }
    if run_policy:
        body["spec"]["runPolicy"] = run_policy
    return body
