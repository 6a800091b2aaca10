"""Stall policy: silent ranks (status.progress.silentRanks) make a Running run Stalled, and may restart the gang."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runyard_operator.policies import conditions as cond
from runyard_operator.policies import lifecycle as lc
from runyard_operator.policies import progress as pp
from runyard_operator.policies import stall
from runyard_operator.policies.model import Decision
from tests.unit.operator.views import FACTS, NOW, draft, job, pod, seen

WATCHED = replace(FACTS, stall_timeout_seconds=300)
RESTARTS = replace(WATCHED, restart_on_stall=True)
SILENT = [{"rank": 1, "pod": "r-node-1-abc", "node": "n1", "lastReportTime": "2026-11-26T11:50:00Z"}]


def progress(attempt: int = 0, silent: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"step": 40, "attempt": attempt, "summary": "40/?", "silentRanks": silent if silent is not None else SILENT}


def running_status(**extra: Any) -> dict[str, Any]:
    return {"phase": "Running", "restarts": 0, "observedGeneration": 3, **extra}


def test_silent_ranks_count_only_this_attempt_and_only_with_a_timeout() -> None:
    assert stall.silent_ranks(WATCHED, seen(), draft(progress=progress())) == SILENT
    assert stall.silent_ranks(WATCHED, seen(attempt=1), draft(progress=progress())) == []
    assert stall.silent_ranks(FACTS, seen(), draft(progress=progress())) == []


def test_a_running_run_with_silent_ranks_is_stalled_naming_them() -> None:
    decision = lc.decide(WATCHED, running_status(progress=progress()), [job()], [pod(0), pod(1)], NOW)
    assert decision.status["phase"] == "Running"
    stalled = cond.find(decision.status["conditions"], "Stalled")
    assert stalled is not None and stalled["status"] == "True" and stalled["reason"] == "NoProgress"
    assert stalled["message"] == "no progress report for 300s from rank 1 (r-node-1-abc on n1)"
    # Once the rank reports again the plugin writes no silent ranks: Stalled is the lifecycle's own again (False).
    after = lc.decide(WATCHED, decision.status | {"progress": progress(silent=[])}, [job()], [pod(0), pod(1)], NOW)
    assert cond.find(after.status["conditions"], "Stalled")["status"] == "False"  # type: ignore[index]


def test_restart_on_stall_restarts_the_gang_with_a_stalled_failure() -> None:
    decision = lc.decide(RESTARTS, running_status(progress=progress()), [job()], [pod(0), pod(1)], NOW)
    status = decision.status
    assert (status["phase"], status["restarts"]) == ("Restarting", 1)
    assert status["failure"]["category"] == "Stalled" and status["failure"]["reason"] == "Stalled"
    assert (status["failure"]["pod"], status["failure"]["node"], status["failure"]["rank"]) == ("r-node-1-abc", "n1", 1)
    assert decision.delete_jobs == ["r-node"]


def test_restart_on_stall_fails_the_run_past_the_backoff_limit() -> None:
    status = running_status(restarts=2, progress=progress(attempt=2))
    decision = lc.decide(RESTARTS, status, [job(attempt=2)], [pod(0, attempt=2), pod(1, attempt=2)], NOW)
    assert decision.status["phase"] == "Failed" and decision.status["failure"]["category"] == "Stalled"


def test_without_restart_on_stall_nothing_is_restarted() -> None:
    assert stall.decide(WATCHED, seen(phase="Running"), draft(progress=progress()), Decision()) is None


def report(pod_name: str, rank: int, at: float) -> pp.RankReport:
    return pp.RankReport(pod_name, "n", rank, 10, None, at, 0)


def test_silent_and_next_check_watch_only_running_pods() -> None:
    state = pp.fold(pp.fold(None, report("a", 0, 100.0)), report("b", 1, 250.0))
    assert state is not None
    running = frozenset({"a", "b"})
    assert pp.silent(state, 350.0, 300, running) == []
    assert pp.next_stall_check(state, 350.0, 300, running) == 50.0  # rank 0's report at 100 s
    assert [r.rank for r in pp.silent(state, 400.0, 300, running)] == [0]
    assert pp.silent(state, 400.0, 300, frozenset({"b"})) == []  # rank 0's pod ended: it is done, not silent
    assert pp.silent(state, 10_000.0, None, running) == [] and pp.next_stall_check(state, 0.0, None, running) is None
    rendered = pp.render(state, pp.silent(state, 400.0, 300, running))
    assert rendered["silentRanks"] == [{"rank": 0, "pod": "a", "node": "n", "lastReportTime": "1970-01-01T00:01:40Z"}]
    # The PROGRESS column says it, and the ETA column promises nothing.
    assert rendered["summary"] == "10/? stalled (1 silent)" and "remaining" not in rendered and "eta" not in rendered
