"""Pod creation policy: refused pods wait until startTimeoutSeconds, a partial gang fails at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from runyard_operator.observe import Termination
from runyard_operator.policies import pod_creation
from runyard_operator.policies.model import Decision
from runyard_operator.timestamps import format_time
from tests.unit.operator.views import FACTS, NOW, draft, job, pod, seen

FACTS60 = replace(FACTS, start_timeout_seconds=60)
QUOTA = {"node": "exceeded quota: pods"}


def test_nothing_refused_nothing_to_say() -> None:
    assert pod_creation.decide(FACTS, seen([job()], [pod(0)]), draft(), Decision(), NOW, {}) is None


def test_refusal_waits_until_the_start_timeout_then_fails() -> None:
    created = job(active=0, created=format_time(NOW - timedelta(seconds=20)))
    decision = Decision()
    verdict = pod_creation.decide(FACTS60, seen([created], [], "Pending"), draft(), decision, NOW, QUOTA)
    assert verdict is not None and verdict.phase == "Pending" and "fails at 2026-11-26T12:00:40Z" in verdict.message
    assert decision.requeue_at == NOW + timedelta(seconds=40)
    d = draft()
    late = pod_creation.decide(
        FACTS60, seen([created], [], "Pending"), d, Decision(), NOW + timedelta(seconds=40), QUOTA
    )
    assert late is not None and late.phase == "Failed" and d.failure is not None
    assert d.failure["reason"] == "FailedCreate"


def test_a_partial_gang_fails_at_once() -> None:
    d = draft()
    verdict = pod_creation.decide(FACTS60, seen([job(active=1)], [pod(0)]), d, Decision(), NOW, QUOTA)
    assert verdict is not None and verdict.phase == "Failed"
    assert d.failure is not None and "partial gang" in d.failure["message"]


def test_a_pod_created_after_a_peer_finished_proves_a_sequential_gang() -> None:
    done = pod(0, "Succeeded", termination=Termination("trainer", 0, "Completed", "", "2026-11-26T11:59:00Z"))
    late = pod(1, created="2026-11-26T11:59:30Z")
    assert pod_creation.created_after_a_peer_finished([done, late]) == late
    # Whole seconds: created in the very second the peer finished is late too (seen under load in CI)...
    same_second = pod(1, created="2026-11-26T11:59:00Z")
    first = replace(done, created="2026-11-26T11:58:40Z")
    assert pod_creation.created_after_a_peer_finished([first, same_second]) == same_second
    # ...but not when the whole gang was created in that second.
    at_once = replace(done, created="2026-11-26T11:59:00Z")
    assert pod_creation.created_after_a_peer_finished([at_once, same_second]) is None
    d = draft()
    verdict = pod_creation.decide(FACTS, seen([job()], [done, late]), d, Decision(), NOW, {})
    assert verdict is not None and verdict.phase == "Failed" and "after a peer replica had finished" in verdict.message


def test_jobs_missing_pods_are_the_ones_whose_refusals_count() -> None:
    young = job(active=0, created=format_time(NOW - timedelta(seconds=2)))
    # No age threshold: the refusals come from a watch, so a Job refused at once is named at once.
    assert pod_creation.awaiting_pods(FACTS, [young], []) == [young]
    assert pod_creation.awaiting_pods(FACTS, [replace(young, suspended=True)], []) == []
    assert pod_creation.awaiting_pods(FACTS, [replace(young, complete=True)], []) == []
    assert pod_creation.awaiting_pods(FACTS, [young], [pod(0, owner_uid=young.uid), pod(1, owner_uid=young.uid)]) == []


def test_a_replica_recreated_after_a_peer_finished_in_a_running_gang_restarts_it() -> None:
    """Chaos found it: a pod deleted mid-run whose peer then finished looked like a quota's late pod (Failed, FailedCreate).
    A gang recorded as Running had all its replicas at once, so the late pod replaces a removed one: a disruption."""
    from runyard_operator.policies import lifecycle as lc

    done = pod(0, "Succeeded", termination=Termination("trainer", 0, "Completed", "", "2026-11-26T11:59:00Z"))
    replacement = pod(1, created="2026-11-26T11:59:30Z")
    previous = {"phase": "Running", "restarts": 0, "observedGeneration": 1, "startTime": "2026-11-26T11:58:00Z"}
    decision = lc.decide(FACTS, previous, [job()], [done, replacement], NOW)
    assert decision.status["phase"] == "Restarting" and decision.status["restarts"] == 1, decision.status
    assert decision.status["failure"]["reason"] == "Disrupted" and decision.delete_jobs == ["r-node"]
    # A gang that never ran together (a pods quota) still fails at once, as before.
    never = lc.decide(FACTS, {"phase": "Starting", "restarts": 0}, [job()], [done, replacement], NOW)
    assert never.status["phase"] == "Failed" and never.status["failure"]["reason"] == "FailedCreate"
