"""Queue policy: missing Jobs are created; Kueue's suspended Jobs mean Queued; without a queue nothing stays suspended."""

from __future__ import annotations

from dataclasses import replace

from runyard_operator.policies import queue
from runyard_operator.policies.model import Decision
from tests.unit.operator.views import FACTS, NOW, draft, job, seen

QUEUE = replace(FACTS, queue_name="team-a")


def test_missing_jobs_are_created() -> None:
    decision = Decision()
    assert queue.decide(FACTS, seen([], phase="Pending"), draft(), decision, NOW) is None
    assert decision.create_children


def test_without_a_queue_suspended_jobs_are_resumed() -> None:
    decision = Decision()
    assert queue.decide(FACTS, seen([job(suspended=True)]), draft(), decision, NOW) is None
    assert decision.suspend_jobs == {"r-node": False} and not decision.create_children


def test_kueue_holding_every_job_is_queued() -> None:
    decision = Decision()
    verdict = queue.decide(QUEUE, seen([job(suspended=True)], phase="Pending"), draft(), decision, NOW)
    assert verdict is not None and verdict.phase == "Queued" and "team-a" in verdict.message
    assert decision.suspend_jobs == {}  # admission is Kueue's to give


def test_admitted_by_kueue_is_no_verdict() -> None:
    assert queue.decide(QUEUE, seen([job()], phase="Queued"), draft(), Decision(), NOW) is None
