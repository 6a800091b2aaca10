"""Deadline policy: runPolicy.activeDeadlineSeconds, counted from the run's recorded startTime, fails the run."""

from __future__ import annotations

from datetime import datetime, timedelta

from runyard_operator.policies.draft import FailureInfo, StatusDraft
from runyard_operator.policies.model import FAILED, REASON_DEADLINE, RunFacts, Verdict


def deadline_of(facts: RunFacts, start: datetime | None) -> datetime | None:
    """When a run that started at `start` has been active too long; None without a start or a deadline."""
    if start is None or not facts.active_deadline_seconds:
        return None
    return start + timedelta(seconds=facts.active_deadline_seconds)


def decide(facts: RunFacts, draft: StatusDraft, now: datetime) -> Verdict | None:
    deadline = deadline_of(facts, draft.start_time)
    if deadline is None or now < deadline:
        return None
    message = f"run was active longer than activeDeadlineSeconds={facts.active_deadline_seconds}"
    draft.failure = FailureInfo(reason=REASON_DEADLINE, message=message)
    return Verdict(FAILED, REASON_DEADLINE, message)
