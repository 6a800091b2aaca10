"""The work queue never runs one key twice at once and coalesces bursts; observe summarises real object shapes."""

from __future__ import annotations

import asyncio
import time

from runyard_operator.controller import status_patch
from runyard_operator.observe import summarize_job, summarize_pod
from runyard_operator.workqueue import WorkQueue


def test_queue_serialises_a_key_and_coalesces_bursts() -> None:
    calls: list[str] = []
    running: set[str] = set()

    async def reconcile(key: str) -> None:
        assert key not in running, "one key reconciled twice at once"
        running.add(key)
        calls.append(key)
        await asyncio.sleep(0.01)
        running.discard(key)

    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue(reconcile, workers=4)
        queue.start()
        for _ in range(50):
            queue.add("a")
        queue.add("b")
        await asyncio.sleep(0.005)
        queue.add("a")  # arrives while "a" is processed: exactly one more pass
        await asyncio.sleep(0.1)
        await queue.stop()

    asyncio.run(main())
    assert calls.count("a") == 2 and calls.count("b") == 1


def test_timer_wakes_a_key_once() -> None:
    calls: list[float] = []

    async def reconcile(key: str) -> None:
        calls.append(time.monotonic())

    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue(reconcile, workers=1)
        queue.start()
        now = time.monotonic()
        queue.add_at("a", now + 0.05)
        queue.add_at("a", now + 0.2)  # later than an already-due wake-up: dropped
        await asyncio.sleep(0.3)
        await queue.stop()

    asyncio.run(main())
    assert len(calls) == 1


def test_fresh_events_go_before_fired_timers_and_promote_them() -> None:
    order: list[str] = []

    async def reconcile(key: str) -> None:
        order.append(key)

    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue(reconcile, workers=1)
        now = time.monotonic()
        for key in ("t1", "t2", "t3"):
            queue.add_at(key, now)
        queue.start()  # the timer loop moves t1..t3 to the later lane before the worker runs
        await asyncio.sleep(0)
        for key in ("e1", "e2", "t3"):
            queue.add(key)  # t3 gets an event too: promoted, reconciled once, with the events
        assert len(queue) == 5
        await asyncio.sleep(0.05)
        await queue.stop()

    asyncio.run(main())
    assert order == ["e1", "e2", "t3", "t1", "t2"]


def test_a_deferred_key_ages_past_a_busy_event_lane() -> None:
    order: list[str] = []
    queues: list[WorkQueue[str]] = []

    async def reconcile(key: str) -> None:
        order.append(key)
        if key.startswith("e") and len(order) < 40:
            queues[0].add(f"e{len(order)}")  # the event lane never drains on its own
        await asyncio.sleep(0.002)

    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue(reconcile, workers=1, max_defer=0.02)
        queues.append(queue)
        queue.add("e0")
        queue.add_at("timer", time.monotonic())
        queue.start()
        await asyncio.sleep(0.3)
        await queue.stop()

    asyncio.run(main())
    assert "timer" in order and order.index("timer") < 39


def test_summaries_of_real_objects() -> None:
    job = summarize_job(
        {
            "metadata": {
                "name": "r-node",
                "uid": "j1",
                "labels": {"runyard.dev/run-uid": "u", "runyard.dev/role": "node", "runyard.dev/restart-attempt": "2"},
            },
            "spec": {"suspend": False},
            "status": {
                "active": 1,
                "failed": 1,
                "conditions": [
                    {
                        "type": "FailureTarget",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
            },
        }
    )
    assert (job.attempt, job.failed_condition, job.failure_reason) == (2, True, "BackoffLimitExceeded")
    pod = summarize_pod(
        {
            "metadata": {
                "name": "r-node-1-x",
                "uid": "p",
                "labels": {"runyard.dev/run-uid": "u"},
                "annotations": {"batch.kubernetes.io/job-completion-index": "1"},
            },
            "spec": {
                "nodeName": "",
                "containers": [{"name": "trainer", "resources": {"limits": {"nvidia.com/gpu": "8"}}}],
            },
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/6 nodes are available",
                    }
                ],
            },
        }
    )
    assert pod.index == 1 and pod.gpus == 8 and pod.unschedulable_message.startswith("Unschedulable: 0/6")


def test_status_patch_nulls_removed_keys() -> None:
    assert status_patch({"a": 1, "b": 2}, {"a": 1, "c": 3}) == {"c": 3, "b": None}
    assert status_patch({"a": 1}, {"a": 1}) == {}


def test_status_patch_removes_nested_keys_too() -> None:
    """A merge patch merges nested objects: a key gone from status.progress must be sent as null, or it stays."""
    old = {"progress": {"step": 1, "silentRanks": [{"rank": 1}]}, "failure": {"reason": "x", "logTail": "t"}}
    new = {"progress": {"step": 2}, "failure": {"reason": "y"}}
    assert status_patch(old, new) == {
        "progress": {"step": 2, "silentRanks": None},
        "failure": {"reason": "y", "logTail": None},
    }
    assert status_patch({"nodes": ["a", "b"]}, {"nodes": ["a"]}) == {"nodes": ["a"]}  # lists are replaced whole


def test_job_and_pod_summaries_keep_the_durable_facts() -> None:
    """Owner UIDs (not labels) tie children to runs; the Job's podFailurePolicy message survives its pod."""
    from runyard_operator.observe import summarize_job, summarize_pod

    labels = {"runyard.dev/run-uid": "run-1", "runyard.dev/role": "node", "runyard.dev/restart-attempt": "0"}
    job = summarize_job(
        {
            "metadata": {"name": "r-node", "namespace": "ns", "uid": "job-1", "labels": labels,
                         "creationTimestamp": "2026-12-01T00:00:00Z",
                         "ownerReferences": [{"kind": "TrainingRun", "uid": "run-1", "controller": True}]},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                                       "message": "Container trainer for pod ns/r-node-0-xyz failed with exit code "
                                                  "143 matching FailJob rule at index 1"}]},
        }
    )  # fmt: skip
    assert job.owned and job.namespace == "ns" and job.created == "2026-12-01T00:00:00Z"
    assert job.recorded_failure == (143, "Error", "r-node-0-xyz")
    foreign = summarize_job({"metadata": {"name": "r-node", "labels": labels, "ownerReferences": []}})
    assert not foreign.owned
    pod = summarize_pod(
        {
            "metadata": {"name": "r-node-0-xyz", "namespace": "ns", "uid": "p", "labels": labels,
                         "ownerReferences": [{"kind": "Job", "uid": "job-1", "controller": True}]},
            "status": {"phase": "Running", "conditions": [{"type": "DisruptionTarget", "status": "True",
                                                           "reason": "EvictionByEvictionAPI"}]},
        }
    )  # fmt: skip
    assert pod.owner_uid == "job-1" and pod.disruption == "EvictionByEvictionAPI" and pod.namespace == "ns"
