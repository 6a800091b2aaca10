"""Clean-up policy: cleanPodPolicy at the end, ttlSecondsAfterFinished afterwards."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from runyard_operator.policies import cleanup
from runyard_operator.policies.model import Decision
from tests.unit.operator.views import FACTS, NOW, draft, job, pod, seen


@pytest.mark.parametrize(("policy", "deleted"), [("All", ["r-node", "r-ps"]), ("Running", ["r-ps"]), ("None", [])])
def test_clean_pod_policy(policy: str, deleted: list[str]) -> None:
    jobs = [job(complete=True, active=0), job("ps")]
    live = [pod(0, role="ps", uid="ps0")]
    assert cleanup.jobs_to_clean(replace(FACTS, clean_pod_policy=policy), jobs, live) == deleted


def test_a_failed_job_is_left_to_the_job_controller() -> None:
    assert cleanup.jobs_to_clean(FACTS, [job(failed_condition=True)], [pod(0)]) == []


def test_on_end_stops_creating_and_starts_the_ttl() -> None:
    decision = Decision(create_children=True, delete_jobs=["stale"])
    cleanup.on_end(replace(FACTS, ttl_seconds_after_finished=60), seen([job()], [pod(0)]), decision, NOW)
    assert not decision.create_children and decision.delete_jobs == ["stale", "r-node"]
    assert decision.requeue_at == NOW + timedelta(seconds=60)


def test_after_end_keeps_the_status_and_deletes_the_run_once_the_ttl_expired() -> None:
    facts = replace(FACTS, ttl_seconds_after_finished=60)
    d = draft(phase="Succeeded", completionTime="2026-11-26T11:59:30Z", gpus=8, conditions=[{"type": "Ready"}])
    decision = Decision()
    cleanup.after_end(facts, seen([], phase="Succeeded"), d, decision, NOW)
    assert (d.gpus, d.ready_replicas, d.conditions) == (0, 0, [{"type": "Ready"}])
    assert not decision.delete_run and decision.requeue_at == NOW + timedelta(seconds=30)
    decision = Decision()
    cleanup.after_end(facts, seen([], phase="Succeeded"), d, decision, NOW + timedelta(seconds=30))
    assert decision.delete_run
