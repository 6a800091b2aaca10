"""Plugins' status contributions: merged fields and conditions, Events kept for the write, acknowledged precisely."""

from __future__ import annotations

from runyard_operator.plugins import PluginContext, StatusContributions

IDLE = {"type": "GPUsIdle", "status": "True", "reason": "LowUtilization"}
ACTIVE = {"type": "GPUsIdle", "status": "False", "reason": "GPUsActive"}


def test_later_contributions_replace_fields_and_conditions_by_type_and_add_events() -> None:
    store = StatusContributions()
    store.contribute("u", fields={"gpu": {"samples": 1}}, conditions=[IDLE], events=[("Warning", "GPUsIdle", "a")])
    store.contribute("u", fields={"gpu": {"samples": 2}}, conditions=[ACTIVE], events=[("Normal", "GPUsActive", "b")])
    pending = store.pending("u")
    assert pending is not None
    status = {"phase": "Running", "gpu": {"samples": 0}, "conditions": [{"type": "Running", "status": "True"}]}
    merged = pending.apply(status)
    assert merged["gpu"] == {"samples": 2} and merged["phase"] == "Running"
    assert merged["conditions"] == [{"type": "Running", "status": "True"}, ACTIVE]
    assert status["gpu"] == {"samples": 0}  # the input is left alone
    assert [e[1] for e in pending.event_list()] == ["GPUsIdle", "GPUsActive"]
    assert store.pending("other") is None


def test_written_drops_only_what_the_write_carried() -> None:
    store = StatusContributions()
    store.contribute("u", fields={"gpu": {"samples": 1}, "artifacts": {"files": 1}}, events=[("Normal", "A", "")])
    taken = store.pending("u")
    assert taken is not None
    store.contribute("u", fields={"gpu": {"samples": 2}}, conditions=[IDLE], events=[("Normal", "B", "")])
    store.written("u", taken)
    rest = store.pending("u")
    assert rest is not None
    assert rest.apply({}) == {"gpu": {"samples": 2}, "conditions": [IDLE]} and rest.event_list() == [
        ("Normal", "B", "")
    ]
    store.written("u", rest)
    assert store.pending("u") is None and len(store) == 0
    store.contribute("u", fields={"x": 1})
    store.forget("u")
    assert store.pending("u") is None


def test_the_context_records_and_wakes_the_run() -> None:
    woken: list[tuple[str, str]] = []
    ctx = PluginContext(kube=None, runs=list, pods_of=lambda uid: [], reconcile=woken.append)  # type: ignore[arg-type]
    ctx.contribute(("team", "r"), "u", fields={"gpu": {}})
    assert woken == [("team", "r")] and ctx.status.pending("u") is not None
