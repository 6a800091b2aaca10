"""Pure lifecycle policy: from a run's facts, its previous status and its observed children to the next status and actions.

`decide` only orders the rule modules (one per policy, as JobSet splits its controllers: failure.py, success.py, ...)
over a typed status draft; the dict form of the status exists only at its two edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runyard_operator.observe import JobView, PodView
from runyard_operator.policies import (
    cleanup,
    deadline,
    failure,
    pod_creation,
    queue,
    restart,
    stall,
    starting,
    success,
    suspend,
    triage,
)
from runyard_operator.policies import conditions as cond
from runyard_operator.policies.draft import Observed, StatusDraft
from runyard_operator.policies.model import (
    FAILED,
    PENDING,
    QUEUED,
    REASON_BACKOFF,
    REASON_DEADLINE,
    REASON_DISRUPTED,
    REASON_EVICTED,
    REASON_FAILED_CREATE,
    REASON_INVALID,
    REASON_JOB_DELETED,
    REASON_NAME_CONFLICT,
    REASON_NAMESPACE_REFUSED,
    REASON_NODE_LOST,
    REASON_POLICY,
    REASON_PREEMPTED,
    REASON_REJECTED,
    REASON_TEMPLATE_LOCKED,
    REASON_TEMPLATE_NOT_FOUND,
    REASON_UNKNOWN,
    REASON_UNSCHEDULABLE,
    RESTARTING,
    RUNNING,
    STARTING,
    SUCCEEDED,
    SUSPENDED,
    TERMINAL,
    Decision,
    RetryPolicy,
    RunFacts,
    Verdict,
)
from runyard_operator.policies.pod_creation import awaiting_pods
from runyard_operator.policies.starting import STUCK_REASONS
from runyard_operator.timestamps import format_time as fmt_time
from runyard_operator.timestamps import parse_time

# The lifecycle's names, where the controller and older callers import them from.
__all__ = [
    "FAILED",
    "PENDING",
    "QUEUED",
    "REASON_BACKOFF",
    "REASON_DEADLINE",
    "REASON_DISRUPTED",
    "REASON_EVICTED",
    "REASON_FAILED_CREATE",
    "REASON_INVALID",
    "REASON_JOB_DELETED",
    "REASON_NAMESPACE_REFUSED",
    "REASON_NAME_CONFLICT",
    "REASON_NODE_LOST",
    "REASON_POLICY",
    "REASON_PREEMPTED",
    "REASON_REJECTED",
    "REASON_TEMPLATE_LOCKED",
    "REASON_TEMPLATE_NOT_FOUND",
    "REASON_UNKNOWN",
    "REASON_UNSCHEDULABLE",
    "RESTARTING",
    "RUNNING",
    "STARTING",
    "STUCK_REASONS",
    "SUCCEEDED",
    "SUSPENDED",
    "TERMINAL",
    "Decision",
    "RetryPolicy",
    "RunFacts",
    "awaiting_pods",
    "decide",
    "fmt_time",
    "parse_time",
    "progress_only",
    "recorded_on_the_way_in",
]

# Phases on the way in are visible in status and conditions only: an Event each would double a burst's writes
# (bench/RESULTS.md) while telling `kubectl describe` nothing the phase column does not.
_QUIET_PHASES = frozenset({PENDING, QUEUED, STARTING})
# Reasons of a Pending or Starting run that is merely on its way (not unschedulable, not stuck on an image).
_PROGRESS_REASONS = frozenset({"Creating", "Starting"})


def recorded_on_the_way_in(previous: Mapping[str, Any]) -> str | None:
    """The reason of the Pending or Starting the operator recorded (its Reconciling condition), None if it recorded none.

    The CRD's default Pending carries no observedGeneration and no conditions: not recorded.
    """
    if previous.get("phase") not in (PENDING, STARTING) or previous.get("observedGeneration") is None:
        return None
    for condition in previous.get("conditions") or []:
        if condition.get("type") == cond.RECONCILING and condition.get("status") == "True":
            return str(condition.get("reason") or "")
    return ""


def progress_only(reason: str | None) -> bool:
    """A reason that says only that replicas are on their way (Creating, Starting)."""
    return reason in _PROGRESS_REASONS


def decide(
    facts: RunFacts,
    previous: Mapping[str, Any],
    jobs: Sequence[JobView],
    pods: Sequence[PodView],
    now: datetime,
    refusals: Mapping[str, str] | None = None,
    log_tails: Mapping[str, str] | None = None,
) -> Decision:
    """Compute the next status and the actions that move the run towards it (level-based: same input, same output).

    `refusals` maps a role to why its Job could not create pods (FailedCreate: quota, Pod Security, a missing
    ServiceAccount or PriorityClass), as the Job controller reported it. `log_tails` maps a failed pod to the end of
    its trainer log, which the controller reads once for a newly recorded failure (`triage.log_tail_pod`).
    """
    draft = StatusDraft.from_status(previous)
    # A run the operator has not written yet reads `phase: Pending` from the CRD's default: not a recorded phase.
    defaulted = draft.phase == PENDING and draft.observed_generation is None
    recorded = "" if defaulted else (draft.phase or "")
    seen = Observed.split(recorded, draft.restarts or 0, jobs, pods, log_tails)
    _observe(facts, seen, draft)
    decision = Decision()
    if seen.phase_before in TERMINAL:
        cleanup.after_end(facts, seen, draft, decision, now)
    else:
        decision.delete_jobs = [j.name for j in seen.stale_jobs]
        # The first rule with a verdict decides; the order is the policy (a failure beats a success, ...).
        verdict = (
            failure.decide(facts, seen, draft, decision)
            or stall.decide(facts, seen, draft, decision)
            or pod_creation.decide(facts, seen, draft, decision, now, refusals or {})
            or success.decide(facts, seen)
            or deadline.decide(facts, draft, now)
            or suspend.decide(facts, seen, draft, decision, now)
            or restart.decide(facts, seen, draft, decision, now)
            or queue.decide(facts, seen, draft, decision, now)
            or starting.decide(facts, seen, draft, decision, now)
        )
        if draft.failure is not None:
            # Every rule's failure gets a category (and a rank), whichever rule recorded it.
            triage.triage(draft.failure, facts.rank_layout)
        _conclude(facts, seen, draft, decision, verdict, now)
    decision.status = draft.to_status()
    return decision


def _observe(facts: RunFacts, seen: Observed, draft: StatusDraft) -> None:
    """The counts every status carries, from this attempt's children; a new decision drops the last one's details."""
    draft.observed_generation = facts.generation
    draft.total_replicas = facts.total_replicas
    draft.restarts = seen.attempt
    draft.scheduling_message = None
    if seen.phase_before in TERMINAL:
        return  # an ended run keeps the counts and nodes it ended with, while its pods go away
    # A replica that finished successfully stays counted until the run ends: its Job's completion trails it by seconds
    # in a burst, and a count falling as the gang finishes would cost a status write that tells nothing.
    done = sum(1 for p in seen.current_pods if p.phase == "Succeeded" and not p.deleting)
    draft.ready_replicas = sum(1 for p in seen.live_pods if p.ready) + done
    draft.nodes = sorted({p.node for p in seen.current_pods if p.node}) or draft.nodes or []
    draft.gpus = sum(p.gpus for p in seen.live_pods if p.node)


def _conclude(
    facts: RunFacts, seen: Observed, draft: StatusDraft, decision: Decision, verdict: Verdict, now: datetime
) -> None:
    """Record the verdict: wake-ups, the start and end times, clean-up, Events and the lifecycle's conditions."""
    phase, reason, message = verdict
    if phase in (STARTING, RUNNING) and not draft.start_time:
        draft.start_time = now
    if phase not in TERMINAL and phase != RESTARTING:
        decision.requeue_by(deadline.deadline_of(facts, draft.start_time))
    draft.phase, draft.message = phase, message
    decision.quiet = (phase in (PENDING, STARTING) and reason in _PROGRESS_REASONS) or (
        phase == RUNNING and seen.phase_before == RUNNING
    )
    if phase not in (SUSPENDED, QUEUED, PENDING):
        draft.stopped = None  # the stopped replicas were replaced and run again (or the run moved on)
    if phase in TERMINAL:
        draft.completion_time = now
        draft.gpus = draft.ready_replicas = 0
        cleanup.on_end(facts, seen, decision, now)
        decision.events.append(("Normal" if phase == SUCCEEDED else "Warning", phase, message))
    elif (
        phase != seen.phase_before
        and phase != RESTARTING
        and (phase == RUNNING or (seen.phase_before and phase not in _QUIET_PHASES))
    ):
        # A run's first status (often Suspended, for a queue-managed run) is not news either; Running always is.
        decision.events.append(("Normal", phase, message))
    previous = draft.conditions or []
    draft.conditions = cond.compute(previous, phase, reason, message, facts.generation, now)
    stalled = stall.condition(facts, seen, draft, previous, phase, now)
    if stalled is not None:
        draft.conditions = cond.merge(draft.conditions, [stalled])
