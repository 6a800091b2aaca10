"""Start-up policy: Pending, Starting or Running from the replicas' scheduling and readiness; stuck starts fail late.

A container waiting on something that will not resolve itself keeps the run Pending with that reason and fails it
after runPolicy.startTimeoutSeconds, counted from the pod's own start time (an operator restart neither resets nor
shortens it). Unschedulable pods wait: queueing for GPUs is normal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from runyard_operator.observe import PodView
from runyard_operator.policies.draft import FailureInfo, Observed, StatusDraft
from runyard_operator.policies.model import (
    FAILED,
    PENDING,
    REASON_UNSCHEDULABLE,
    RUNNING,
    STARTING,
    Decision,
    RunFacts,
    Verdict,
)
from runyard_operator.timestamps import format_time, parse_time

# Reasons a container waits with that do not resolve themselves (Always-restarting sidecars can crash-loop).
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    }
)
NOT_READY_NAMED = 3  # replicas named in a Running message that are not ready; more are elided


def stuck(pods: Sequence[PodView]) -> PodView | None:
    """The first replica whose containers wait on something that will not resolve itself."""
    found = [p for p in pods if p.waiting_reason in STUCK_REASONS]
    return min(found, key=lambda p: (p.start_time, p.role, p.index)) if found else None


def scheduling_message(pods: Sequence[PodView]) -> str:
    for pod in sorted(pods, key=lambda p: (p.role, p.index)):
        if pod.unschedulable_message and not pod.node:
            return pod.unschedulable_message
    return ""


def _stuck_verdict(facts: RunFacts, pod: PodView, draft: StatusDraft, decision: Decision, now: datetime) -> Verdict:
    since = parse_time(pod.start_time) or now
    deadline = since + timedelta(seconds=facts.start_timeout_seconds)
    if now >= deadline:
        draft.failure = FailureInfo(
            role=pod.role,
            index=pod.index,
            pod=pod.name,
            reason=pod.waiting_reason,
            message=f"{pod.waiting_message} (not resolved within startTimeoutSeconds={facts.start_timeout_seconds})",
        )
        if pod.node:
            draft.failure["node"] = pod.node
        return Verdict(FAILED, pod.waiting_reason, f"{pod.name}: {pod.waiting_reason}: {draft.failure['message']}")
    decision.requeue_at = deadline
    message = f"{pod.name}: {pod.waiting_reason}: {pod.waiting_message}; the run fails at {format_time(deadline)}"
    return Verdict(PENDING, pod.waiting_reason, message)


def decide(facts: RunFacts, seen: Observed, draft: StatusDraft, decision: Decision, now: datetime) -> Verdict:
    """The way in: stuck, unschedulable, being created, some replicas started, or all of them (Running)."""
    if (pod := stuck(seen.live_pods)) is not None:
        return _stuck_verdict(facts, pod, draft, decision, now)
    sched = scheduling_message(seen.live_pods)
    started = seen.started_pods()
    if sched:
        draft.scheduling_message = sched
        return Verdict(PENDING, REASON_UNSCHEDULABLE, sched)
    if not any(p.node for p in seen.current_pods):
        return Verdict(PENDING, "Creating", "waiting for replicas to be created and scheduled")
    message = f"{len(started)}/{facts.total_replicas} replicas started"
    resumed = draft.resumed_step(seen.attempt)
    if resumed is not None:
        message += f", resumed from step {resumed}"
    if len(started) < facts.total_replicas:
        return Verdict(STARTING, "Starting", message)
    # A replica whose node stopped reporting is marked not ready long before it is evicted.
    unready = sorted(p.name for p in started if p.phase == "Running" and not p.ready)
    if unready:
        more = " ..." if len(unready) > NOT_READY_NAMED else ""
        message += f"; not ready: {', '.join(unready[:NOT_READY_NAMED])}" + more
    return Verdict(RUNNING, "Running", message)
