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


def test_cli_example_submit_wait_logs_list_describe_top_delete(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    submitted = cli(cluster, namespace, "submit", "-f", "examples/pytorch-ddp.yaml")
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.strip() == "trainingrun.runyard.dev/pytorch-ddp created"
    again = cli(cluster, namespace, "submit", "-f", "examples/pytorch-ddp.yaml")
    assert again.returncode == 5 and "already exists" in again.stderr
    waited = cli(cluster, namespace, "wait", "pytorch-ddp", "--for=Succeeded", "--timeout", "120")
    assert waited.returncode == 0, waited.stderr
    assert "pytorch-ddp Succeeded" in waited.stdout
    logs = cli(cluster, namespace, "logs", "pytorch-ddp")
    assert logs.returncode == 0, logs.stderr
    # The example ran for real on the real node: these are its ranks' own lines.
    assert "[node-0] rank 0: epoch 5/5" in logs.stdout and "[node-1] rank 1: epoch 5/5" in logs.stdout, logs.stdout
    assert "Traceback" not in logs.stderr
    listed = cli(cluster, namespace, "list", "-o", "json")
    assert listed.returncode == 0
    items = json.loads(listed.stdout)["items"]
    assert [(i["metadata"]["name"], i["status"]["phase"]) for i in items] == [("pytorch-ddp", "Succeeded")]
    table = cli(cluster, namespace, "list")
    assert table.stdout.splitlines()[1].split()[:3] == ["pytorch-ddp", "pytorch", "Succeeded"]
    described = cli(cluster, namespace, "describe", "pytorch-ddp")
    assert described.returncode == 0
    for text in ("Phase:       Succeeded", "Conditions:", "Succeeded  True", "Events:", "TrainingRun/pytorch-ddp"):
        assert text in described.stdout, described.stdout
    top = cli(cluster, namespace, "top", "--once")
    assert top.returncode == 0 and "pytorch-ddp" in top.stdout and "UTIL AVG" in top.stdout
    deleted = cli(cluster, namespace, "delete", "pytorch-ddp", "--wait")
    assert deleted.returncode == 0
    gone = cli(cluster, namespace, "get", "pytorch-ddp")
    assert gone.returncode == 3 and "not found" in gone.stderr


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
