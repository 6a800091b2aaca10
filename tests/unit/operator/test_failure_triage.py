"""Failure triage through the Controller: the log tail read once, best effort, and restarts that avoid a faulty node."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runyard import constants as c
from runyard_operator.k8s import ApiError
from tests.unit.operator.test_controller import NS, Harness, run, training_run

OOM_LOG = "".join(f"step {i} loss 0.{i}\n" for i in range(30)) + "MLFLOW_TRACKING_PASSWORD=hunter2\nallocating\n"


def log_reads(h: Harness) -> list[tuple[str, str, str, str]]:
    return [call for call in h.kube.calls if call[0] == "GET log"]


async def failed_run(h: Harness, name: str, exit_code: int, reason: str, **spec: Any) -> str:
    """A 2-node run whose replica 1 ends with `exit_code`; returns that pod's name."""
    await h.create(training_run(name, **spec))
    await h.reconcile(name)
    pods = h.start_pods(f"{name}-node", 2)
    await h.reconcile(name)
    h.end_pod(pods[1], exit_code, reason)
    return pods[1]


def test_the_failed_ranks_log_tail_is_read_once_redacted_into_the_failure() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("oom", runPolicy={"backoffLimit": 0}))
        await h.reconcile("oom")
        pods = h.start_pods("oom-node", 2)
        await h.reconcile("oom")
        h.kube.logs[(NS, pods[1], c.CONTAINER_NAME)] = OOM_LOG
        h.end_pod(pods[1], 137, "OOMKilled")
        status = await h.reconcile("oom")
        failure = status["failure"]
        assert status["phase"] == "Failed"
        assert (failure["category"], failure["rank"], failure["node"], failure["pod"]) == (
            "OOMKilled",
            1,
            "node-1",
            pods[1],
        )
        lines = failure["logTail"].split("\n")
        assert len(lines) == c.FAILURE_LOG_TAIL_LINES and lines[-2:] == ["MLFLOW_TRACKING_PASSWORD=***", "allocating"]
        assert log_reads(h) == [("GET log", "Pod", NS, pods[1])]
        # Recorded once: later reconciles neither read the log again nor change the failure.
        assert (await h.reconcile("oom"))["failure"] == failure
        assert len(log_reads(h)) == 1

    run(scenario)


def test_reconciles_without_a_new_failure_read_no_log() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("fine"))
        await h.reconcile("fine")
        h.start_pods("fine-node", 2)
        for _ in range(3):
            await h.reconcile("fine")
        assert log_reads(h) == []

    run(scenario)


@pytest.mark.parametrize(
    "error",
    [ApiError(404, "NotFound", "pods not found"), ApiError(403, "Forbidden", "pods/log"), ApiError(0, "x", "dial")],
    ids=["gone", "forbidden", "no-kubelet"],
)
def test_an_unreadable_log_records_the_failure_without_a_tail(error: ApiError) -> None:
    async def scenario() -> None:
        h = Harness()

        async def refuse(*args: Any, **kwargs: Any) -> str:
            raise error

        h.kube.pod_log = refuse  # type: ignore[method-assign]
        await failed_run(h, "nolog", 1, "Error", runPolicy={"backoffLimit": 0})
        status = await h.reconcile("nolog")
        assert status["phase"] == "Failed" and status["failure"]["category"] == "UserCode"
        assert "logTail" not in status["failure"]

    run(scenario)


def test_a_slow_log_read_does_not_hold_the_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(c, "FAILURE_LOG_TAIL_TIMEOUT_SECONDS", 0.05)

    async def scenario() -> None:
        h = Harness()

        async def hang(*args: Any, **kwargs: Any) -> str:
            await asyncio.sleep(30)
            return "never"

        h.kube.pod_log = hang  # type: ignore[method-assign]
        await failed_run(h, "slow", 1, "Error", runPolicy={"backoffLimit": 0})
        status = await asyncio.wait_for(h.reconcile("slow"), timeout=5)
        assert status["phase"] == "Failed" and "logTail" not in status["failure"]

    run(scenario)


def test_a_gpu_fault_in_the_log_restarts_the_gang_away_from_that_node() -> None:
    async def scenario() -> None:
        h = Harness()
        policy = {"backoffLimit": 1, "backoffSeconds": 0, "retryOn": {"categories": ["GPUError", "NodeLost"]}}
        await h.create(training_run("xid", runPolicy=policy, affinity={"nodeAffinity": {}}))
        await h.reconcile("xid")
        pods = h.start_pods("xid-node", 2)
        await h.reconcile("xid")
        h.kube.logs[(NS, pods[0], c.CONTAINER_NAME)] = "NCCL WARN Cuda failure 'unspecified launch failure'\nXid 79\n"
        h.end_pod(pods[0], 1, "Error")
        status = await h.reconcile("xid")
        assert (status["phase"], status["restarts"]) == ("Restarting", 1)
        assert status["failure"]["category"] == "GPUError" and status["avoidNodes"] == ["node-0"]

        await h.reconcile("xid")  # the next attempt's Job
        spec = h.job("xid-node")["spec"]["template"]["spec"]
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [{"key": c.LABEL_HOSTNAME, "operator": "NotIn", "values": ["node-0"]}]}]

    run(scenario)


def test_user_code_is_not_retried_by_default_and_its_node_is_not_avoided() -> None:
    async def scenario() -> None:
        h = Harness()
        await failed_run(h, "bug", 1, "Error", runPolicy={"backoffLimit": 2})
        status = await h.reconcile("bug")
        assert (status["phase"], status["failure"]["category"]) == ("Failed", "UserCode")
        assert "avoidNodes" not in status

    run(scenario)


def test_a_refused_run_is_categorised_as_config() -> None:
    async def scenario() -> None:
        h = Harness()
        h.kube.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "taken", "namespace": NS}})
        await h.create(training_run("taken"))
        status = await h.reconcile("taken")
        assert status["failure"]["reason"] == "NameConflict" and status["failure"]["category"] == "Config"
        assert log_reads(h) == []

    run(scenario)
