"""Restart policy: after a gang restart, wait for the old replicas to go, then for the doubling backoff."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from runyard_operator.policies.draft import Observed, StatusDraft
from runyard_operator.policies.model import RESTARTING, Decision, RunFacts, Verdict
from runyard_operator.timestamps import format_time, parse_time

MAX_BACKOFF_SECONDS = 3600
CONFIRM_AFTER_SECONDS = 5.0  # how long the old replicas may take to go before the caches are checked against the API


def _restarting_since(conditions: Sequence[Mapping[str, Any]]) -> datetime | None:
    return next(
        (
            parse_time(c.get("lastTransitionTime"))
            for c in conditions
            if c.get("type") == "Restarting" and c.get("status") == "True"
        ),
        None,
    )


def restart_at(facts: RunFacts, conditions: Sequence[Mapping[str, Any]], attempt: int) -> datetime | None:
    """When a gang restart may create the new replicas: the Restarting transition plus the doubling backoff."""
    since = _restarting_since(conditions)
    if since is None or attempt < 1:
        return None
    return since + timedelta(seconds=min(facts.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))


def decide(facts: RunFacts, seen: Observed, draft: StatusDraft, decision: Decision, now: datetime) -> Verdict | None:
    """Restarting while a previous attempt's Job remains or the backoff runs; None once the next attempt may start."""
    if seen.phase_before != RESTARTING:
        return None
    if seen.stale_jobs or any(j.attempt != seen.attempt for j in seen.jobs):
        since = _restarting_since(draft.conditions or [])
        if since is not None and now - since >= timedelta(seconds=CONFIRM_AFTER_SECONDS):
            # Deleting a gang takes seconds; past that, make sure the old Jobs are not only in a cache, and look again
            # a little later (a Job that is gone sends no event, so nothing else would wake this run).
            decision.confirm_children = True
            decision.requeue_by(now + timedelta(seconds=CONFIRM_AFTER_SECONDS))
        elif since is not None:
            decision.requeue_by(since + timedelta(seconds=CONFIRM_AFTER_SECONDS))
        return Verdict(RESTARTING, "GangRestart", "waiting for the previous replicas to be removed")
    when = restart_at(facts, draft.conditions or [], seen.attempt)
    if when is not None and now < when:
        decision.requeue_at = when
        return Verdict(RESTARTING, "Backoff", f"restarting at {format_time(when)}")
    return None
