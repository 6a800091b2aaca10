"""The typed status draft converts to and from the status dict without loss; children split by attempt."""

from __future__ import annotations

from datetime import UTC, datetime

from runyard_operator.policies.draft import Observed, StatusDraft
from tests.unit.operator.views import job, pod

STATUS = {
    "phase": "Running",
    "message": "2/2 replicas started",
    "observedGeneration": 3,
    "totalReplicas": 2,
    "readyReplicas": 2,
    "restarts": 1,
    "nodes": ["n0", "n1"],
    "gpus": 16,
    "startTime": "2026-11-26T12:00:00Z",
    "failure": {"role": "node", "index": 1, "reason": "OOMKilled", "exitCode": 137},
    "conditions": [{"type": "Running", "status": "True"}],
    "tracking": {"mlflow": {"runId": "abc"}},
    "sshSecret": "r-mpi-ssh-x1",
}


def test_round_trip_keeps_every_field_including_the_ones_it_does_not_own() -> None:
    draft = StatusDraft.from_status(STATUS)
    assert draft.start_time == datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    assert draft.failure is not None and draft.failure["exitCode"] == 137
    assert draft.other == {"tracking": {"mlflow": {"runId": "abc"}}, "sshSecret": "r-mpi-ssh-x1"}
    assert draft.to_status() == STATUS


def test_absent_fields_stay_absent_and_the_input_is_not_changed() -> None:
    status = {"phase": "Pending"}
    draft = StatusDraft.from_status(status)
    assert draft.to_status() == {"phase": "Pending"}
    draft.conditions = [{"type": "Running", "status": "False"}]
    draft.restarts = 0
    assert draft.to_status() == {
        "phase": "Pending",
        "restarts": 0,
        "conditions": [{"type": "Running", "status": "False"}],
    }
    assert status == {"phase": "Pending"}


def test_observed_splits_children_by_the_recorded_attempt() -> None:
    jobs = [job(attempt=1), job("ps", attempt=0), job("old", attempt=0, deleting=True)]
    pods = [pod(0, attempt=1), pod(1, "Pending", attempt=1, deleting=True), pod(0, attempt=0, uid="old")]
    seen = Observed.split("Running", 1, jobs, pods)
    assert [j.role for j in seen.current_jobs] == ["node"]
    assert [j.role for j in seen.stale_jobs] == ["ps"]  # the deleting one is already going
    assert [p.uid for p in seen.current_pods] == ["p0-1", "p1-1"]
    assert [p.uid for p in seen.live_pods] == ["p0-1"]
    assert [p.uid for p in seen.started_pods()] == ["p0-1"]
