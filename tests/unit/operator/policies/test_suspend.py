"""Suspend policy: runPolicy.suspend suspends the Jobs, and a run created suspended still gets its Jobs."""

from __future__ import annotations

from dataclasses import replace

from runyard_operator.policies import suspend
from runyard_operator.policies.model import Decision
from tests.unit.operator.views import FACTS, NOW, draft, job, pod, seen

SUSPENDED = replace(FACTS, suspend=True)


def test_not_suspended_is_no_verdict() -> None:
    decision = Decision()
    assert suspend.decide(FACTS, seen([job()]), draft(), decision, NOW) is None
    assert decision == Decision()


def test_running_jobs_are_suspended() -> None:
    decision = Decision()
    verdict = suspend.decide(SUSPENDED, seen([job(), job("ps", suspended=True)], [pod(0)]), draft(), decision, NOW)
    assert verdict is not None and verdict.phase == "Suspended"
    assert decision.suspend_jobs == {"r-node": True} and not decision.create_children


def test_a_run_created_suspended_gets_its_jobs_but_not_during_a_restart() -> None:
    decision = Decision()
    suspend.decide(SUSPENDED, seen([], phase=""), draft(), decision, NOW)
    assert decision.create_children
    decision = Decision()
    suspend.decide(SUSPENDED, seen([job(attempt=0)], attempt=1), draft(), decision, NOW)
    assert not decision.create_children
