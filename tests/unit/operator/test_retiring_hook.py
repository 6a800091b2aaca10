"""The plugins' `retiring` hook: once per ending attempt (gang restart, end), with that attempt's pods, before the
controller deletes any of its Jobs, and its status fields in the write that records the change."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from runyard.api import TrainingRun
from runyard_operator.observe import PodView
from runyard_operator.plugins import RunPlugin
from tests.unit.operator.test_controller import Harness, training_run


class Recorder(RunPlugin):
    """Records each call with what the API held at that moment."""

    name = "recorder"

    def __init__(self) -> None:
        self.harness: Harness | None = None
        self.calls: list[tuple[int, str, list[str], bool]] = []

    async def retiring(
        self, run: TrainingRun, status: Mapping[str, Any], attempt: int, pods: Sequence[PodView]
    ) -> dict[str, Any]:
        assert self.harness is not None
        jobs_left = bool(self.harness.kube.of_kind("Job"))
        self.calls.append((attempt, str(status["phase"]), sorted(p.name for p in pods), jobs_left))
        return {"retired": {"attempt": attempt}}


def test_retiring_runs_once_per_ending_attempt_before_its_jobs_go() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        h = Harness([recorder])
        recorder.harness = h
        await h.create(training_run("r", runPolicy={"backoffLimit": 1, "backoffSeconds": 0, "cleanPodPolicy": "All"}))
        await h.reconcile("r")
        first = h.start_pods("r-node", 2)
        await h.reconcile("r")
        assert recorder.calls == []  # starting and running end nothing

        h.end_pod(first[0], 137, "OOMKilled")
        status = await h.reconcile("r")
        assert status["phase"] == "Restarting" and status["retired"] == {"attempt": 0}
        assert recorder.calls == [(0, "Restarting", sorted(first), True)]  # the Job (and pods) still there
        assert h.kube.of_kind("Job") == []  # ...and deleted right after
        await h.reconcile("r")  # waiting for the backoff and creating the next attempt: no new call
        second = h.start_pods("r-node", 2)
        await h.reconcile("r")
        assert len(recorder.calls) == 1

        for pod in second:
            h.end_pod(pod, 0, "Completed")
        h.complete_job("r-node", 2)
        status = await h.reconcile("r")
        assert status["phase"] == "Succeeded" and status["retired"] == {"attempt": 1}
        assert recorder.calls[1:] == [(1, "Succeeded", sorted(second), True)]
        assert h.kube.of_kind("Job") == []  # cleanPodPolicy All, after the hook
        await h.reconcile("r")
        assert len(recorder.calls) == 2  # a finished run's later reconciles retire nothing

    asyncio.run(scenario())
