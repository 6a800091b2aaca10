"""Success policy: every replica of the success roles completed, by the Job's condition or the pods themselves."""

from __future__ import annotations

from dataclasses import replace

from runyard_operator.policies import success
from tests.unit.operator.views import FACTS, job, pod, seen


def test_all_indexes_succeeded_before_the_jobs_complete_condition() -> None:
    verdict = success.decide(FACTS, seen([job(active=0)], [pod(0, "Succeeded"), pod(1, "Succeeded")]))
    assert verdict is not None and verdict.phase == "Succeeded"


def test_one_index_left_is_not_success() -> None:
    assert success.decide(FACTS, seen([job()], [pod(0, "Succeeded"), pod(1)])) is None


def test_a_complete_job_is_success_whatever_the_pods_show() -> None:
    assert success.decide(FACTS, seen([job(complete=True)], [])) is not None


def test_only_the_success_roles_count() -> None:
    tf = replace(FACTS, replicas={"chief": 1, "ps": 1}, success_roles=("chief",))
    chief = pod(0, "Succeeded", role="chief")
    assert success.decide(tf, seen([job("chief", active=0), job("ps")], [chief, pod(0, role="ps")])) is not None
    assert success.decide(replace(tf, success_roles=()), seen([], [chief])) is None
