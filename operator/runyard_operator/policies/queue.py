"""Queue policy: create the attempt's missing Jobs, and leave their admission to Kueue when the run names a queue."""

from __future__ import annotations

from datetime import datetime

from runyard_operator.policies import stop
from runyard_operator.policies.draft import Observed, StatusDraft
from runyard_operator.policies.model import QUEUED, REASON_PREEMPTED, SUSPENDED, Decision, RunFacts, Verdict


def decide(facts: RunFacts, seen: Observed, draft: StatusDraft, decision: Decision, now: datetime) -> Verdict | None:
    """Queued while Kueue holds every Job suspended, Suspended (Preempted) when it took an admitted gang back.

    Without a queue, Jobs are never left suspended.
    """
    reason = REASON_PREEMPTED if facts.queue_name else stop.REASON_SUSPENDED
    stop.replace_stopped(facts, seen, draft, decision, reason, now)
    if not facts.queue_name:
        decision.suspend_jobs = {j.name: False for j in seen.current_jobs if j.suspended and not j.stopped}
        return None
    waiting = [j for j in seen.current_jobs if not j.stopped]
    if all(j.suspended for j in waiting) and (waiting or stop.resuming(draft, seen)):
        if stop.preempted(seen, draft):
            message = f"preempted: Kueue queue {facts.queue_name} evicted the workload and its replicas were stopped"
            return Verdict(SUSPENDED, REASON_PREEMPTED, message + stop.resume_note(draft, "when it is admitted again"))
        return Verdict(QUEUED, "Queued", f"waiting for admission by Kueue queue {facts.queue_name}")
    return None
