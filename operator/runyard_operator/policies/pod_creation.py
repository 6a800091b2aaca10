"""Pod creation policy: a gang whose pods cannot be created (quota, Pod Security, missing ServiceAccount) waits, then fails.

A gang must never run partially: once any replica started while another cannot even be created (a pods quota of 1
would otherwise run a 2-rank gang one rank after the other), the run fails with the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from runyard_operator.observe import JobView, PodView
from runyard_operator.policies.draft import FailureInfo, Observed, StatusDraft
from runyard_operator.policies.model import FAILED, PENDING, REASON_FAILED_CREATE, Decision, RunFacts, Verdict
from runyard_operator.timestamps import format_time, parse_time


def decide(
    facts: RunFacts,
    seen: Observed,
    draft: StatusDraft,
    decision: Decision,
    now: datetime,
    refusals: Mapping[str, str],
) -> Verdict | None:
    """Pending while no replica runs and startTimeoutSeconds has not passed; Failed otherwise.

    `refusals` maps a role to why its Job could not create pods (the Job controller's FailedCreate Events).
    """
    if not refusals:
        late = created_after_a_peer_finished(seen.current_pods)
        if late is None:
            return None
        # Proof from the pods themselves: one was only created after a peer had finished (a quota or an
        # admission webhook held it back), so the gang never ran together.
        refusals = {late.role: f"pod {late.name} was only created after a peer replica had finished"}
    role = sorted(refusals)[0]
    why = refusals[role]
    job = next((j for j in seen.current_jobs if j.role == role), None)
    since = parse_time(job.created if job else None) or now
    deadline = since + timedelta(seconds=facts.start_timeout_seconds)
    started = seen.started_pods()
    if started or now >= deadline:
        partial = " while other replicas ran: a partial gang cannot train" if started else ""
        draft.failure = FailureInfo(
            role=role,
            reason=REASON_FAILED_CREATE,
            message=f"pods of role {role} could not be created{partial}: {why}",
        )
        return Verdict(FAILED, REASON_FAILED_CREATE, f"{role}: {REASON_FAILED_CREATE}: {draft.failure['message']}")
    decision.requeue_at = deadline
    message = f"pods of role {role} cannot be created: {why}; the run fails at {format_time(deadline)}"
    return Verdict(PENDING, REASON_FAILED_CREATE, message)


def created_after_a_peer_finished(pods: Sequence[PodView]) -> PodView | None:
    finished = [p.termination.finished_at for p in pods if p.termination and p.termination.finished_at]
    if not finished:
        return None
    first_end = min(finished)
    # Times have whole seconds: a pod created in the second its peer finished counts as late (a busy machine makes
    # that common), unless no peer was created before it (a gang created at once whose first pod ended at once).
    late = [
        p
        for p in pods
        if p.created
        and p.created >= first_end
        and any(q is not p and (not q.created or q.created < p.created) for q in pods)
    ]
    return min(late, key=lambda p: p.created) if late else None


def awaiting_pods(facts: RunFacts, jobs: Sequence[JobView], pods: Sequence[PodView]) -> list[JobView]:
    """Jobs of the current attempt whose FailedCreate Events may say why pods are missing: those that have not created
    all their pods, and every Job once a pod was created only after a peer had finished."""
    if created_after_a_peer_finished(pods) is not None:
        return [j for j in jobs if not j.deleting]
    return [
        job
        for job in jobs
        if not (job.suspended or job.deleting or job.failed_condition or job.complete)
        and sum(1 for p in pods if p.owner_uid == job.uid or (not p.owner_uid and p.role == job.role))
        < facts.replicas.get(job.role, 0)
    ]
