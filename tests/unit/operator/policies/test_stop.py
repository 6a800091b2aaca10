"""Stop policy, through the whole lifecycle: a Job whose replicas a suspension or a Kueue preemption ended is neither a
failure nor a success; it is replaced under the same attempt, its replicas resume, and the status says so throughout."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runyard_operator.observe import summarize_job
from runyard_operator.policies import lifecycle as lc
from runyard_operator.policies import stop
from tests.unit.operator.views import FACTS, NOW, T0, job, pod

QUEUE = replace(FACTS, queue_name="team-a")
RUNNING = {"phase": "Running", "startTime": T0, "restarts": 0}
STOPPED_BY_KUEUE = job(
    suspended=True, active=0, failed_condition=True, failure_reason="PodFailurePolicy", stopped=True,
    failure_message="Container trainer for pod ns/r-node-0-abc failed with exit code 1 matching FailJob rule at index 1",
)  # fmt: skip
CHECKPOINT = {"uri": "s3://b/runs/r/node-0/checkpoints/step-000030.pt", "step": 30, "attempt": 0}


def test_a_preempted_gang_is_suspended_replaced_and_resumed_without_a_failure_or_a_restart() -> None:
    stopping = lc.decide(QUEUE, RUNNING, [STOPPED_BY_KUEUE], [], NOW)
    status = stopping.status
    assert status["phase"] == lc.SUSPENDED and status["restarts"] == 0 and "failure" not in status, status
    assert status["stopped"] == {"attempt": 0, "reason": "Preempted", "time": "2026-11-26T12:00:00Z"}
    assert stopping.delete_jobs == ["r-node"] and not stopping.create_children
    assert status["message"].startswith("preempted: Kueue queue team-a evicted the workload")
    assert "their newest checkpoint, if any" in status["message"]
    assert ("Normal", lc.SUSPENDED, status["message"]) in stopping.events

    # The stopped Job is going: nothing is created under its name yet, and its absence is not "someone deleted it".
    going = lc.decide(QUEUE, status, [replace(STOPPED_BY_KUEUE, deleting=True)], [], NOW)
    assert going.status["phase"] == lc.SUSPENDED and not going.create_children and "failure" not in going.status

    # Gone: the replacement is created (suspended, for Kueue) to resume; the artifacts plugin has read the checkpoint.
    with_checkpoint = going.status | {"lastCheckpoint": CHECKPOINT}
    replacing = lc.decide(QUEUE, with_checkpoint, [], [], NOW)
    assert replacing.create_children and replacing.resume
    assert replacing.status["phase"] == lc.SUSPENDED and replacing.status["stopped"]["attempt"] == 0
    assert "they resume from the checkpoint of step 30 when it is admitted again" in replacing.status["message"]

    # Waiting in the queue again is still the preemption (not a fresh Queued), until Kueue admits the replacement.
    waiting = lc.decide(QUEUE, replacing.status, [job(suspended=True, active=0)], [], NOW)
    assert waiting.status["phase"] == lc.SUSPENDED and waiting.status["conditions"]
    assert not waiting.create_children and not waiting.delete_jobs

    admitted = waiting.status | {"resumedFrom": {"attempt": 0, "step": 30, "uri": CHECKPOINT["uri"]}}
    running = lc.decide(QUEUE, admitted, [job()], [pod(0), pod(1)], NOW)
    assert running.status["phase"] == lc.RUNNING and "stopped" not in running.status
    assert running.status["message"] == "2/2 replicas started, resumed from step 30"
    assert running.status["restarts"] == 0 and "failure" not in running.status


def test_a_gang_kueue_never_admitted_is_queued_not_preempted() -> None:
    queued = lc.decide(QUEUE, {"phase": "Pending"}, [job(suspended=True, active=0)], [], NOW)
    assert queued.status["phase"] == lc.QUEUED and "stopped" not in queued.status


def test_pods_still_stopping_after_kueue_suspended_the_job_mean_preempted() -> None:
    stopping = pod(0, deleting=True)
    decision = lc.decide(QUEUE, RUNNING, [job(suspended=True, active=0)], [stopping], NOW)
    assert decision.status["phase"] == lc.SUSPENDED and "preempted" in decision.status["message"]
    assert not decision.delete_jobs  # not ended yet: a Job whose pods vanish without failing is simply unsuspended


def test_runpolicy_suspend_replaces_a_stopped_job_and_resumes_it_when_unsuspended() -> None:
    suspended = replace(FACTS, suspend=True)
    stopped = replace(STOPPED_BY_KUEUE, failure_message="")
    decision = lc.decide(suspended, RUNNING | {"phase": "Suspended"}, [stopped], [], NOW)
    assert decision.status["phase"] == lc.SUSPENDED and decision.delete_jobs == ["r-node"]
    assert decision.status["stopped"]["reason"] == "Suspended" and "failure" not in decision.status
    assert "when the run resumes" in decision.status["message"]
    # Unsuspended before the replacement existed: it is created running, resuming.
    resumed = lc.decide(FACTS, decision.status, [], [], NOW)
    assert resumed.create_children and resumed.resume and resumed.status["phase"] == lc.PENDING


def test_a_stopped_job_that_completed_is_not_a_success() -> None:
    done = job(suspended=True, active=0, complete=True, succeeded=2, stopped=True)
    decision = lc.decide(QUEUE, RUNNING, [done], [pod(0, "Succeeded", deleting=True)], NOW)
    assert decision.status["phase"] == lc.SUSPENDED and decision.delete_jobs == ["r-node"]


def test_a_failure_before_any_suspension_still_restarts_the_gang() -> None:
    failed = replace(STOPPED_BY_KUEUE, suspended=False, stopped=False)
    message = failed.failure_message.replace("exit code 1", "exit code 137")
    decision = lc.decide(QUEUE, RUNNING, [replace(failed, failure_message=message)], [], NOW)
    assert decision.status["phase"] == lc.RESTARTING and decision.status["restarts"] == 1


def _job_body(suspend: bool, conditions: list[tuple[str, str]], succeeded: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": "r-node", "labels": {}},
        "spec": {"suspend": suspend},
        "status": {
            "succeeded": succeeded,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": at} for t, at in conditions],
        },
    }


def test_observe_tells_a_job_the_suspension_ended_from_one_that_had_ended_before() -> None:
    before, after = "2026-11-26T12:00:00Z", "2026-11-26T12:00:07Z"
    assert summarize_job(_job_body(True, [("Suspended", before), ("FailureTarget", after), ("Failed", after)])).stopped
    assert summarize_job(_job_body(True, [("Suspended", before), ("Failed", before)])).stopped  # the same second
    assert summarize_job(_job_body(True, [("Suspended", before), ("Complete", after)])).stopped
    assert summarize_job(_job_body(True, [("Suspended", before)], succeeded=1)).stopped
    assert not summarize_job(_job_body(True, [("Failed", before), ("Suspended", after)])).stopped
    assert not summarize_job(_job_body(False, [("Failed", after)])).stopped
    assert not summarize_job(_job_body(True, [("Suspended", before)])).stopped  # never ran: just unsuspend it
    # When the suspension began names the archive of the stopping replicas' logs; an unsuspended Job has none.
    assert summarize_job(_job_body(True, [("Suspended", before)])).suspended_since == before
    assert summarize_job(_job_body(False, [("Suspended", before)])).suspended_since == ""


def test_the_replicas_a_suspension_is_stopping_are_named_with_when_it_began() -> None:
    """What the artifacts plugin archives while the Job controller deletes a suspended Job's pods."""
    suspended = job(suspended=True, active=0, suspended_since="2026-11-26T11:59:58Z")
    stopping_pods = [pod(0, owner_uid="j-node-0", deleting=True), pod(1, owner_uid="j-node-0", deleting=True)]
    found = stop.stopping(QUEUE, [suspended], stopping_pods, 0)
    assert found is not None and (found.attempt, found.since, found.reason) == (0, "2026-11-26T11:59:58Z", "Preempted")
    assert [p.name for p in found.pods] == ["r-node-0-abc", "r-node-1-abc"]
    # runPolicy.suspend stops a queued run too: that is the user's suspension, not Kueue's.
    assert (stop.stopping(replace(QUEUE, suspend=True), [suspended], stopping_pods, 0) or found).reason == "Suspended"
    assert stop.stopping(FACTS, [suspended], stopping_pods, 0).reason == "Suspended"  # type: ignore[union-attr]
    # Nothing stops: a gang created suspended (no pods), a running Job, another attempt's or a foreign Job's pods.
    assert stop.stopping(QUEUE, [suspended], [], 0) is None
    assert stop.stopping(QUEUE, [job()], stopping_pods, 0) is None
    assert stop.stopping(QUEUE, [replace(suspended, attempt=1)], stopping_pods, 1) is None
    assert stop.stopping(QUEUE, [replace(suspended, owned=False)], stopping_pods, 0) is None
    assert stop.stopping(QUEUE, [replace(suspended, suspended_since="")], stopping_pods, 0) is None


def test_a_job_kueue_suspended_is_stopped_without_any_failure_condition() -> None:
    """Kubernetes 1.36 (the real node): the pods a suspension deletes are not counted as failed, so the Job carries only
    its Suspended condition. Its replicas ran, so it is replaced to resume, exactly like one the podFailurePolicy
    failed; a Job that never ran (created suspended for Kueue) is not."""
    suspended = job(suspended=True, active=0, suspended_since="2026-11-26T11:59:58Z")
    stopping_pods = [pod(0, owner_uid="j-node-0", deleting=True), pod(1, owner_uid="j-node-0", deleting=True)]
    stopping = lc.decide(QUEUE, RUNNING, [suspended], stopping_pods, NOW)
    assert stopping.status["phase"] == lc.SUSPENDED and stopping.status["stopped"]["reason"] == "Preempted"
    assert stopping.delete_jobs == ["r-node"] and "failure" not in stopping.status
    # The same Job seen after its pods are gone and the status says Suspended: still the stop being carried out.
    later = lc.decide(QUEUE, stopping.status, [replace(suspended, deleting=True)], [], NOW)
    assert later.status["phase"] == lc.SUSPENDED and not later.create_children
    # Created suspended for Kueue, never ran: waiting, nothing to replace.
    waiting = lc.decide(QUEUE, {"phase": "Queued"}, [suspended], [], NOW)
    assert not waiting.delete_jobs and "stopped" not in waiting.status
