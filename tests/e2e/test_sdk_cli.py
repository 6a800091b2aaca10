"""The SDK and the `runyard` CLI against the local control plane with the real operator (kwok pods: no real logs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runyard import Client, NotFoundError, RunFailedError
from runyard.api import Phase
from tests.cluster.conftest import OperatorProcess, training_run
from tests.conftest import ROOT, Cluster

RUNYARD = Path(sys.executable).parent / "runyard"


@pytest.fixture
def sdk(cluster: Cluster, namespace: str, operator: OperatorProcess) -> Client:
    return Client(kubeconfig=cluster.kubeconfig, namespace=namespace)


def cli(cluster: Cluster, namespace: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUNYARD), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_sdk_submit_wait_logs_events_delete(sdk: Client) -> None:
    run = sdk.submit(training_run("sdk-ok", "pytorch", {"node": 2}))
    assert run.metadata.uid and run.metadata.namespace == sdk.namespace
    progress: list[Any] = []
    done = sdk.wait("sdk-ok", timeout=90, callback=lambda r: progress.append(r.status.phase if r.status else None))
    assert done.status is not None and done.status.phase is Phase.SUCCEEDED
    assert done.status.total_replicas == 2 and progress[-1] is Phase.SUCCEEDED
    assert [r.name for r in sdk.list(phase="Succeeded")] == ["sdk-ok"]
    assert sdk.list(phase=["Running", "Failed"]) == []
    # kwok nodes run no kubelet: the API server cannot proxy pods/log, and logs says so per replica.
    lines = list(sdk.logs("sdk-ok"))
    assert sorted(line.prefix for line in lines) == ["[node-0]", "[node-1]"]
    assert all(line.notice for line in lines)
    assert [line.prefix for line in sdk.logs("sdk-ok", rank=1)] == ["[node-1]"]
    followed = list(sdk.logs("sdk-ok", follow=True))
    assert {line.prefix for line in followed} == {"[node-0]", "[node-1]"}
    reasons = {(e.kind, e.reason) for e in sdk.events("sdk-ok")}
    assert ("TrainingRun", "Succeeded") in reasons and ("Job", "SuccessfulCreate") in reasons
    sdk.delete("sdk-ok", wait=True)
    with pytest.raises(NotFoundError):
        sdk.get("sdk-ok")


def test_sdk_watch_sees_phases(sdk: Client) -> None:
    sdk.submit(training_run("sdk-watch", sim={"sim.runyard.dev/duration": "2s"}))
    phases = []
    for event in sdk.watch("sdk-watch", timeout=60):
        phase = event.run.status.phase if event.run.status else None
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        if phase is Phase.SUCCEEDED:
            break
    assert phases[-1] is Phase.SUCCEEDED and Phase.RUNNING in phases


def test_sdk_wait_on_failing_run_raises_with_failure(sdk: Client) -> None:
    sdk.submit(
        training_run("sdk-fail", outcome="fail", sim={"sim.runyard.dev/exit-code": "3"}, run_policy={"backoffLimit": 0})
    )
    with pytest.raises(RunFailedError, match="exit code 3") as info:
        sdk.wait("sdk-fail", timeout=90)
    assert info.value.exit_code == 3
    assert info.value.failure is not None and info.value.failure.pod and info.value.failure.role == "node"


def test_sdk_logs_follow_switches_to_the_gang_restart(sdk: Client) -> None:
    sdk.submit(
        training_run(
            "sdk-restart",
            outcome="fail-first",
            sim={"sim.runyard.dev/exit-code": "137", "sim.runyard.dev/duration": "2s"},
            run_policy={"backoffLimit": 2, "backoffSeconds": 0},
        )
    )
    lines = list(sdk.logs("sdk-restart", follow=True, poll_interval=0.3))
    assert sdk.get("sdk-restart").status.phase is Phase.SUCCEEDED  # type: ignore[union-attr]
    # The stream ends once the run finished, on the pods of the newest attempt.
    assert any(line.restart_attempt == 1 for line in lines), lines
    assert {line.prefix for line in lines if line.restart_attempt == 1} == {"[node-0]", "[node-1]"}


def test_cli_wait_on_failing_run_exits_1_with_exit_code(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    client = Client(kubeconfig=cluster.kubeconfig, namespace=namespace)
    client.submit(
        training_run(
            "cli-fail", outcome="fail", sim={"sim.runyard.dev/exit-code": "42"}, run_policy={"backoffLimit": 0}
        )
    )
    waited = cli(cluster, namespace, "wait", "cli-fail", "--timeout", "120")
    assert waited.returncode == 1
    assert "exit code 42" in waited.stderr and "cli-fail-node-" in waited.stderr
    timeout = cli(cluster, namespace, "wait", "cli-fail", "--for", "Running", "--timeout", "1")
    assert timeout.returncode == 1  # already Failed: a failure, not a timeout
    missing = cli(cluster, namespace, "wait", "no-such-run", "--timeout", "5")
    assert missing.returncode == 3


def test_cli_wait_times_out_with_exit_code_4(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    client = Client(kubeconfig=cluster.kubeconfig, namespace=namespace)
    client.submit(training_run("cli-slow", outcome="running"))
    waited = cli(cluster, namespace, "wait", "cli-slow", "--timeout", "3")
    assert waited.returncode == 4 and "did not reach Succeeded within 3s" in waited.stderr


# The fast path must not fall back to the full CLI here: with the client library and the models unimportable, it would fail.
FAST_ONLY = (
    "import sys; sys.modules['kubernetes'] = sys.modules['pydantic'] = None\n"
    "from runyard.fast_submit import main\n"
    "sys.argv = ['runyard', *sys.argv[1:]]\n"
    "main()\n"
)


def test_submit_fast_path_creates_with_neither_the_client_nor_the_models(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    def fast(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-c", FAST_ONLY, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)

    two = tmp_path / "two.yaml"
    two.write_text(
        json.dumps(training_run("fast-a")) + "\n---\n" + json.dumps(training_run("fast-b", image="python:3.11"))
    )
    checked = fast("submit", "-f", str(two), "--dry-run")
    assert checked.returncode == 0, checked.stderr
    assert cluster.kubectl("get", "tr", "-n", namespace, "-o", "name").stdout == ""
    done = fast("submit", "-f", str(two))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "trainingrun.runyard.dev/fast-a created",
        "trainingrun.runyard.dev/fast-b created",
    ]
    assert "fast-b: spec.securityContext: python:3.11 runs as root" in done.stderr  # the same advisories
    stored = json.loads(cluster.kubectl("get", "tr", "fast-a", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"] == training_run("fast-a")["spec"]  # sent as written


def test_submit_hands_refusals_to_the_full_cli_before_creating_anything(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    bad = training_run("fast-bad")
    bad["spec"]["replicas"]["node"]["replicas"] = 0
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(json.dumps(training_run("fast-good")) + "\n---\n" + json.dumps(bad))
    refused = cli(cluster, namespace, "submit", "-f", str(mixed))
    # The full CLI's own explanation, field by field, and its exit code; the valid document was not created either.
    assert refused.returncode == 2 and "spec.replicas.node.replicas" in refused.stderr, refused.stderr
    assert cluster.kubectl("get", "tr", "-n", namespace, "-o", "name").stdout == ""
    ok = tmp_path / "ok.yaml"
    ok.write_text(json.dumps(training_run("fast-good")))
    assert cli(cluster, namespace, "submit", "-f", str(ok)).returncode == 0
    again = cli(cluster, namespace, "submit", "-f", str(ok))
    assert again.returncode == 5 and "already exists" in again.stderr
