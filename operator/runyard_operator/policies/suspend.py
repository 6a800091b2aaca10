"""Suspend policy: runPolicy.suspend stops the replicas by suspending the run's Jobs (resuming is one patch)."""

from __future__ import annotations

from datetime import datetime

from runyard_operator.policies import stop
from runyard_operator.policies.draft import Observed, StatusDraft
from runyard_operator.policies.model import SUSPENDED, Decision, RunFacts, Verdict


def decide(facts: RunFacts, seen: Observed, draft: StatusDraft, decision: Decision, now: datetime) -> Verdict | None:
    if not facts.suspend:
        return None
    # A run created suspended still gets its (suspended) Jobs, so resuming is a single patch; Jobs whose replicas
    # the suspension ended are replaced, suspended, to resume from their checkpoint.
    stop.replace_stopped(facts, seen, draft, decision, stop.REASON_SUSPENDED, now)
    decision.suspend_jobs = {j.name: True for j in seen.current_jobs if not j.suspended}
    message = "runPolicy.suspend is true; replicas are stopped"
    if stop.resuming(draft, seen) or any(p.node for p in seen.current_pods):
        message += stop.resume_note(draft, "when the run resumes")
    return Verdict(SUSPENDED, "Suspended", message)
