"""Start-up policy: Pending (creating, unschedulable, stuck), Starting, Running; a stuck start fails after the timeout."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from runyard_operator.observe import PodView
from runyard_operator.policies import starting
from runyard_operator.policies.draft import StatusDraft
from runyard_operator.policies.model import Decision, RunFacts, Verdict
from tests.unit.operator.views import FACTS, NOW, draft, job, pod, seen


def decide(pods: list[PodView], facts: RunFacts = FACTS, now: datetime = NOW) -> tuple[Verdict, StatusDraft, Decision]:
    d, decision = draft(), Decision()
    return starting.decide(facts, seen([job()], pods, phase="Pending"), d, decision, now), d, decision


def test_no_pod_on_a_node_is_pending_creating() -> None:
    verdict, _, _ = decide([pod(0, "Pending", node="")])
    assert (verdict.phase, verdict.reason) == ("Pending", "Creating")


def test_unschedulable_is_pending_with_the_schedulers_message() -> None:
    waiting = pod(0, "Pending", node="", unschedulable_message="Unschedulable: 0/4 nodes: Insufficient nvidia.com/gpu")
    verdict, d, _ = decide([waiting, pod(1)])
    assert (verdict.phase, verdict.reason) == ("Pending", "Unschedulable")
    assert d.scheduling_message == verdict.message


def test_some_started_is_starting_all_started_is_running() -> None:
    verdict, _, _ = decide([pod(0), pod(1, "Pending", ready=False)])
    assert (verdict.phase, verdict.message) == ("Starting", "1/2 replicas started")
    verdict, _, _ = decide([pod(0), pod(1, "Succeeded")])
    assert (verdict.phase, verdict.message) == ("Running", "2/2 replicas started")


def test_running_names_at_most_three_replicas_that_are_not_ready() -> None:
    facts = replace(FACTS, replicas={"node": 5})
    verdict, _, _ = decide([pod(i, ready=False) for i in range(5)], facts)
    assert verdict.message == "5/5 replicas started; not ready: r-node-0-abc, r-node-1-abc, r-node-2-abc ..."


def test_stuck_start_is_pending_until_the_start_timeout_then_failed() -> None:
    facts = replace(FACTS, start_timeout_seconds=60)
    stuck = pod(0, "Pending", ready=False, waiting_reason="ErrImagePull", waiting_message="trainer: pull failed")
    verdict, _, decision = decide([stuck, pod(1)], facts)
    assert (verdict.phase, verdict.reason) == ("Pending", "ErrImagePull")
    assert decision.requeue_at == NOW + timedelta(seconds=30)
    verdict, d, _ = decide([stuck], facts, NOW + timedelta(seconds=30))
    assert verdict.phase == "Failed" and d.failure is not None and d.failure["index"] == 0
    assert starting.stuck([pod(0, "Pending", waiting_reason="ContainerCreating")]) is None
