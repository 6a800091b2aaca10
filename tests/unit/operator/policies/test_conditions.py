"""The one condition helper: stable transition times, the lifecycle's set, plugins' conditions merged by type."""

from __future__ import annotations

from datetime import timedelta

from runyard_operator.policies import conditions as cond
from tests.unit.operator.views import NOW


def test_condition_keeps_its_transition_time_until_its_status_flips() -> None:
    first = cond.condition("GPUsIdle", "True", "LowUtilization", "idle", 2, NOW)
    assert first["lastTransitionTime"] == "2026-11-26T12:00:00Z" and first["observedGeneration"] == 2
    later = NOW + timedelta(minutes=5)
    assert cond.condition("GPUsIdle", "True", "LowUtilization", "still", 2, later, first)["lastTransitionTime"] == (
        "2026-11-26T12:00:00Z"
    )
    assert cond.condition("GPUsIdle", "False", "GPUsActive", "", 2, later, first)["lastTransitionTime"] == (
        "2026-11-26T12:05:00Z"
    )


def test_merge_is_a_map_list_keyed_by_type() -> None:
    base = [{"type": "Running", "status": "True"}, {"type": "GPUsIdle", "status": "False"}]
    merged = cond.merge(base, [{"type": "GPUsIdle", "status": "True"}, {"type": "Custom", "status": "True"}])
    assert merged == [
        {"type": "Running", "status": "True"},
        {"type": "GPUsIdle", "status": "True"},
        {"type": "Custom", "status": "True"},
    ]
    assert base[1]["status"] == "False"  # the input is not changed


def test_compute_carries_plugin_conditions_and_keeps_times() -> None:
    first = cond.compute([], "Running", "Running", "2/2", 1, NOW)
    assert {c["type"] for c in first} == {"Running", "Succeeded", "Failed", "Ready"}
    foreign = {"type": "GPUsIdle", "status": "True", "reason": "Idle", "lastTransitionTime": "x"}
    second = cond.compute([*first, foreign], "Succeeded", "Succeeded", "done", 1, NOW + timedelta(minutes=1))
    by_type = {c["type"]: c for c in second}
    assert by_type["GPUsIdle"] == foreign
    assert by_type["Ready"]["lastTransitionTime"] == "2026-11-26T12:00:00Z"  # True in both phases
    assert by_type["Running"]["status"] == "False" and by_type["Running"]["reason"] == "NotRunning"
    assert by_type["Succeeded"]["lastTransitionTime"] == "2026-11-26T12:01:00Z"
    assert {"Running", "Reconciling", "Stalled"} <= cond.LIFECYCLE_TYPES
