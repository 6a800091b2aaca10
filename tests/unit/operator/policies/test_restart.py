"""Restart policy: after a gang restart, wait for the old Jobs to go, then for backoffSeconds x 2^(restarts-1)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from runyard_operator.policies import restart
from runyard_operator.policies.model import Decision
from tests.unit.operator.views import FACTS, NOW, draft, job, seen

BACKOFF = replace(FACTS, backoff_seconds=10)


def restarting_since(when: str) -> list[dict[str, str]]:
    return [{"type": "Restarting", "status": "True", "lastTransitionTime": when}]


def test_only_a_restarting_run_waits() -> None:
    assert restart.decide(BACKOFF, seen([], phase="Running", attempt=1), draft(), Decision(), NOW) is None


def test_waits_for_the_previous_attempts_jobs_even_while_they_are_deleted() -> None:
    for old in (job(attempt=0), job(attempt=0, deleting=True)):
        verdict = restart.decide(BACKOFF, seen([old], phase="Restarting", attempt=1), draft(), Decision(), NOW)
        assert verdict is not None and verdict.message == "waiting for the previous replicas to be removed"


def test_backoff_doubles_per_attempt_and_requeues() -> None:
    d = draft(conditions=restarting_since("2026-11-26T12:00:00Z"))
    decision = Decision()
    verdict = restart.decide(BACKOFF, seen(phase="Restarting", attempt=3), d, decision, NOW)
    assert verdict is not None and verdict.reason == "Backoff" and decision.requeue_at == NOW + timedelta(seconds=40)
    later = NOW + timedelta(seconds=40)
    assert restart.decide(BACKOFF, seen(phase="Restarting", attempt=3), d, Decision(), later) is None


def test_backoff_is_capped_at_an_hour() -> None:
    conditions = restarting_since("2026-11-26T12:00:00Z")
    assert restart.restart_at(replace(FACTS, backoff_seconds=3600), conditions, 5) == NOW + timedelta(hours=1)
    assert restart.restart_at(BACKOFF, [], 1) is None


def test_old_jobs_still_seen_after_a_few_seconds_are_checked_against_the_api() -> None:
    """A Job deleted while a watch was away is never reported deleted: past a short wait the caches are re-read."""
    old = seen([job(attempt=0)], phase="Restarting", attempt=1)
    fresh, decision = draft(conditions=restarting_since("2026-11-26T12:00:00Z")), Decision()
    restart.decide(BACKOFF, old, fresh, decision, NOW + timedelta(seconds=2))
    assert not decision.confirm_children and decision.requeue_at == NOW + timedelta(seconds=5)
    decision = Decision()
    restart.decide(BACKOFF, old, fresh, decision, NOW + timedelta(seconds=30))
    assert decision.confirm_children and decision.requeue_at == NOW + timedelta(seconds=35)
