"""Deadline policy: activeDeadlineSeconds from the recorded startTime."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from runyard_operator.policies import deadline
from tests.unit.operator.views import FACTS, NOW, T0, draft


def test_no_deadline_or_no_start_never_fails() -> None:
    assert deadline.decide(FACTS, draft(startTime=T0), NOW) is None
    assert deadline.decide(replace(FACTS, active_deadline_seconds=1), draft(), NOW) is None
    assert deadline.deadline_of(FACTS, NOW) is None


def test_deadline_passed_fails_with_the_reason() -> None:
    facts = replace(FACTS, active_deadline_seconds=10)
    d = draft(startTime=T0)
    verdict = deadline.decide(facts, d, NOW)
    assert verdict is not None and (verdict.phase, verdict.reason) == ("Failed", "DeadlineExceeded")
    assert d.failure == {"reason": "DeadlineExceeded", "message": verdict.message}


def test_deadline_not_yet_passed() -> None:
    facts = replace(FACTS, active_deadline_seconds=60)
    assert deadline.decide(facts, draft(startTime=T0), NOW) is None
    assert deadline.deadline_of(facts, NOW - timedelta(seconds=30)) == NOW + timedelta(seconds=30)
