"""The controller with the artifacts plugin, against the in-memory API and a real S3 server: every rank's log is
archived when a gang restart ends an attempt (before its Jobs, and with them its pods, are deleted) and when the run
ends; what could not be archived is in status.artifacts.logs and a Warning Event; runs without a store are untouched."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runyard import constants as c
from runyard.artifacts import logs as lg
from runyard_operator.artifacts.plugin import LOG_ARCHIVE_EVENT, ArtifactsPlugin
from runyard_operator.config import OperatorConfig
from runyard_operator.k8s import ApiError
from tests.unit.artifacts.s3server import S3Server
from tests.unit.operator.test_controller import NS, Harness, training_run


@pytest.fixture(autouse=True)
def operator_credentials(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator reaches the store with its own environment's credentials, as in its Deployment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)


async def harness(artifacts: dict[str, Any] | None = None) -> Harness:
    plugin = ArtifactsPlugin.from_config(OperatorConfig.model_validate({"artifacts": artifacts or {}}))
    assert plugin is not None
    h = Harness([plugin])
    await h.controller.start_plugins()
    return h


def store_spec(server: S3Server, bucket: str) -> dict[str, Any]:
    return {"store": f"s3://{bucket}/team", "s3": {"endpoint": server.endpoint}}


def say(h: Harness, pods: list[str], attempt: int) -> None:
    """What each rank printed: the kubelet serves it as the pod's log."""
    for index, pod in enumerate(pods):
        h.kube.logs[(NS, pod, c.CONTAINER_NAME)] = f"attempt {attempt} rank {index}\n" * 3


def test_every_ranks_log_is_archived_before_the_restart_deletes_it_and_at_the_end(
    s3_server: S3Server, bucket: str
) -> None:
    async def scenario() -> None:
        h = await harness()
        spec = {"runPolicy": {"backoffLimit": 1, "backoffSeconds": 0}, "artifacts": store_spec(s3_server, bucket)}
        await h.create(training_run("ddp", **spec))
        await h.reconcile("ddp")
        first = h.start_pods("ddp-node", 2)
        say(h, first, 0)
        await h.reconcile("ddp")

        h.end_pod(first[1], 137, "OOMKilled")
        status = await h.reconcile("ddp")
        assert (status["phase"], status["restarts"]) == ("Restarting", 1)
        # The Job went, and its pods with it (the in-memory API collects them at once: a later read would be a 404).
        assert ("DELETE", "Job", NS, "ddp-node") in h.kube.calls and h.kube.of_kind("Pod") == []
        uri = f"s3://{bucket}/team/ddp/logs"
        # Written in the same status write as the restart, with nothing to complain about.
        assert status["artifacts"]["logs"] == {"uri": uri, "attempts": [0]}

        await h.reconcile("ddp")
        second = h.start_pods("ddp-node", 2)
        say(h, second, 1)
        await h.reconcile("ddp")
        for pod in second:
            h.end_pod(pod, 0, "Completed")
        h.complete_job("ddp-node", 2)
        status = await h.reconcile("ddp")
        assert status["phase"] == "Succeeded"
        assert status["artifacts"]["logs"] == {"uri": uri, "attempts": [0, 1]}
        # The archive is Runyard's record, not one of the run's files: the manifest leaves it out.
        assert status["artifacts"]["files"] == 0
        assert not [e for e in h.kube.events if e[2] == LOG_ARCHIVE_EVENT]

        archive = lg.LogArchive(status["artifacts"]["storeUri"], endpoint=s3_server.endpoint)
        for attempt in (0, 1):
            for index in (0, 1):
                data = archive.read(lg.log_path(attempt, f"node-{index}"))
                assert data == f"attempt {attempt} rank {index}\n".encode() * 3
        index = archive.index(0)
        assert index is not None and {(r.rank, r.pod, r.error) for r in index} == {
            ("node-0", first[0], ""),
            ("node-1", first[1], ""),
        }
        await h.controller.stop_plugins()

    asyncio.run(scenario())


def test_replicas_stopped_by_a_preemption_keep_their_logs_in_a_segment_and_the_attempt_goes_on(
    s3_server: S3Server, bucket: str
) -> None:
    async def scenario() -> None:
        h = await harness()
        await h.create(training_run("low", queueName="team", artifacts=store_spec(s3_server, bucket)))
        await h.reconcile("low")
        h.kube.mutate("Job", NS, "low-node", {"spec": {"suspend": False}})  # Kueue admits
        pods = h.start_pods("low-node", 2)
        say(h, pods, 0)
        assert (await h.reconcile("low"))["phase"] == "Running"
        assert not [c for c in h.kube.calls if c[0].startswith("GET log")]

        # The stopped Job is deleted in the foreground: it (and its stopping pods) stay until the pods are gone, which
        # the in-memory API would otherwise collect at once.
        delete = h.kube.delete

        async def foreground(kind: str, namespace: str, name: str, **kw: Any) -> Any:
            if kind == "Job":
                h.kube.calls.append(("DELETE", kind, namespace, name))
                return None
            return await delete(kind, namespace, name, **kw)

        h.kube.delete = foreground  # type: ignore[method-assign]
        # Kueue preempts: the Job controller suspends the Job and deletes its pods, which are stopping now.
        suspended_at = "2026-12-05T23:15:00Z"
        h.kube.mutate("Job", NS, "low-node", {"spec": {"suspend": True}})
        conditions = [{"type": "Suspended", "status": "True", "lastTransitionTime": suspended_at}]
        h.kube.mutate("Job", NS, "low-node", {"status": {"conditions": conditions}})
        for pod in pods:
            h.kube.mutate("Pod", NS, pod, {"metadata": {"deletionTimestamp": suspended_at}})
        await h.reconcile("low")
        await asyncio.gather(*h.controller.plugins[0]._tasks)  # type: ignore[attr-defined]
        # Each rank's log is followed until it ends, once however often the run is reconciled while they stop.
        status = await h.reconcile("low")
        await h.reconcile("low")
        followed = [c[3] for c in h.kube.calls if c[0] == "GET log follow"]
        assert sorted(followed) == sorted(pods)
        segment = "stopped-20261205T231500Z"
        assert status["artifacts"]["logs"]["stops"] == [
            {"attempt": 0, "segment": segment, "reason": "Preempted", "time": suspended_at}
        ]
        archive = lg.LogArchive(status["artifacts"]["storeUri"], endpoint=s3_server.endpoint)
        assert archive.read(lg.log_path(0, "node-1", segment)) == b"attempt 0 rank 1\n" * 3
        assert archive.attempts() == []  # the attempt is not over: it goes on when Kueue admits the run again
        await h.controller.stop_plugins()

    asyncio.run(scenario())


def test_what_could_not_be_archived_is_in_the_status_and_an_event(s3_server: S3Server, bucket: str) -> None:
    async def scenario() -> None:
        h = await harness()
        await h.create(training_run("lost", runPolicy={"backoffLimit": 0}, artifacts=store_spec(s3_server, bucket)))
        await h.reconcile("lost")
        pods = h.start_pods("lost-node", 2)
        say(h, pods, 0)
        h.kube.log_refusals[(NS, pods[1])] = ApiError(500, "InternalError", "no preferred addresses found")
        await h.reconcile("lost")
        h.end_pod(pods[0], 3, "Error")
        status = await h.reconcile("lost")
        assert status["phase"] == "Failed"
        logs = status["artifacts"]["logs"]
        # The attempt is archived (one rank's log and the index say what happened to the other)...
        assert logs["attempts"] == [0]
        assert logs["message"] == "attempt 0: node-1: not read: 500 InternalError: no preferred addresses found"
        # ...and the Event is posted after the status write that records it.
        (event,) = [e for e in h.kube.events if e[2] == LOG_ARCHIVE_EVENT]
        assert event[1] == "Warning" and "node-1: not read" in event[3]
        await h.controller.stop_plugins()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("artifacts", "logs"),
    [
        (None, None),  # no store: no archive, no status, no pods/log reads (as before)
        (
            {"store": "pvc://claim/team"},
            {"message": "logs not archived: the operator archives logs to s3:// stores only, not pvc://"},
        ),
    ],
    ids=["no-store", "pvc"],
)
def test_runs_without_an_s3_store_read_no_logs(artifacts: dict[str, Any] | None, logs: dict[str, Any] | None) -> None:
    async def scenario() -> None:
        h = await harness()
        await h.create(training_run("plain", **({"artifacts": artifacts} if artifacts else {})))
        await h.reconcile("plain")
        pods = h.start_pods("plain-node", 2)
        await h.reconcile("plain")
        for pod in pods:
            h.end_pod(pod, 0, "Completed")
        h.complete_job("plain-node", 2)
        status = await h.reconcile("plain")
        assert status["phase"] == "Succeeded"
        assert (status.get("artifacts") or {}).get("logs") == logs
        assert not [call for call in h.kube.calls if call[0] == "GET log"]
        await h.controller.stop_plugins()

    asyncio.run(scenario())


def test_the_archive_can_be_turned_off(s3_server: S3Server, bucket: str) -> None:
    async def scenario() -> None:
        h = await harness({"logs": {"enabled": False}})
        await h.create(training_run("quiet", artifacts=store_spec(s3_server, bucket)))
        await h.reconcile("quiet")
        pods = h.start_pods("quiet-node", 2)
        for pod in pods:
            h.end_pod(pod, 0, "Completed")
        h.complete_job("quiet-node", 2)
        status = await h.reconcile("quiet")
        assert status["phase"] == "Succeeded" and "logs" not in status["artifacts"]
        await h.controller.stop_plugins()

    asyncio.run(scenario())
