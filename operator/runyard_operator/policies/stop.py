"""Stop policy: replicas a suspension or a Kueue preemption stopped are replaced, to resume from their checkpoint.

Suspending a Job deletes its pods. Kubernetes 1.36 does not count them as failed (seen on the real node): the Job is
merely suspended, and unsuspended as it is it would start replicas without RUNYARD_RESUME_FROM. Where a trainer's
exit is counted (an index that exits 0 counts as done; a podFailurePolicy that fails the Job) it could not resume at
all. Either way a Job whose replicas ran and were stopped (`JobView.stopped`, set in `Observed.split`) is deleted and
created again under the same name and attempt, suspended as before, with RUNYARD_RESUME_FROM; `status.stopped`
carries that intent across the reconciles in between. Jobs whose pods never ran stay and are simply unsuspended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runyard_operator.observe import JobView, PodView
from runyard_operator.policies import conditions as cond
from runyard_operator.policies.draft import Observed, StatusDraft
from runyard_operator.policies.model import REASON_PREEMPTED, RUNNING, STARTING, SUSPENDED, Decision, RunFacts
from runyard_operator.timestamps import format_time

REASON_SUSPENDED = "Suspended"


def replace_stopped(
    facts: RunFacts, seen: Observed, draft: StatusDraft, decision: Decision, reason: str, now: datetime
) -> None:
    """Delete this attempt's stopped Jobs and create missing ones once nothing of this attempt is being deleted."""
    stopped = [j for j in seen.current_jobs if j.stopped]
    if stopped:
        if not resuming(draft, seen):
            draft.stopped = {"attempt": seen.attempt, "reason": reason, "time": format_time(now)}
        decision.delete_jobs = sorted(set(decision.delete_jobs) | {j.name for j in stopped})
    # The replacement takes the stopped Job's name: it waits until that Job (and its pods) are gone.
    going = stopped or any(j.deleting and j.attempt == seen.attempt for j in seen.jobs)
    decision.create_children = len(seen.current_jobs) < len(facts.replicas) and not going and not seen.stale_jobs
    decision.resume = decision.create_children and resuming(draft, seen)


@dataclass(frozen=True)
class Stopping:
    """Replicas of an attempt that a suspension is stopping now: their logs are to be kept before their pods go."""

    attempt: int
    since: str  # when the suspension began: the earliest Suspended condition of the attempt's Jobs (RFC 3339)
    reason: str
    pods: tuple[PodView, ...]


def stopping(facts: RunFacts, jobs: Sequence[JobView], pods: Sequence[PodView], attempt: int) -> Stopping | None:
    """The pods of `attempt` whose Job is suspended (the Job controller is deleting them), if there are any.

    A gang created suspended (waiting for Kueue, or for runPolicy.suspend to be lifted) has no pods: nothing stops.
    """
    suspended = {j.uid: j for j in jobs if j.attempt == attempt and j.owned and j.suspended and j.suspended_since}
    mine = tuple(p for p in pods if p.owner_uid in suspended and p.attempt == attempt)
    if not mine:
        return None
    since = min(j.suspended_since for j in suspended.values())
    reason = REASON_PREEMPTED if facts.queue_name and not facts.suspend else REASON_SUSPENDED
    return Stopping(attempt, since, reason, mine)


def resuming(draft: StatusDraft, seen: Observed) -> bool:
    """Whether this attempt's replicas were stopped and are to be created again to resume."""
    return draft.stopped is not None and draft.stopped.get("attempt") == seen.attempt


def preempted(seen: Observed, draft: StatusDraft) -> bool:
    """Kueue took an admitted gang back (its Jobs suspended again), as opposed to a gang still waiting its turn."""
    if resuming(draft, seen) and (draft.stopped or {}).get("reason") == REASON_PREEMPTED:
        return True
    if seen.phase_before in (STARTING, RUNNING) or any(p.node for p in seen.current_pods):
        return True
    before = cond.find(draft.conditions or [], SUSPENDED)
    return seen.phase_before == SUSPENDED and _reason(before) == REASON_PREEMPTED


def resume_note(draft: StatusDraft, when: str) -> str:
    """The end of a Suspended message: what the replicas resume from, and when."""
    step = draft.last_checkpoint_step
    what = f"the checkpoint of step {step}" if step is not None else "their newest checkpoint, if any"
    return f"; they resume from {what} {when}"


def _reason(condition: Mapping[str, Any] | None) -> str:
    return str(condition.get("reason") or "") if condition is not None and condition.get("status") == "True" else ""
