"""Stall policy: ranks silent past runPolicy.stallTimeoutSeconds make a Running run Stalled, and may restart the gang.

The silent ranks are a durable fact: the progress plugin records them in `status.progress.silentRanks` (for the
attempt in `status.progress.attempt`), and every decision reads them from there, so an operator restart neither forgets
nor invents a stall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runyard_operator.policies import conditions as cond
from runyard_operator.policies.draft import FailureInfo, Observed, StatusDraft
from runyard_operator.policies.failure import restart_or_fail
from runyard_operator.policies.model import RUNNING, Decision, RunFacts, Verdict

REASON_STALLED = "Stalled"
REASON_NO_PROGRESS = "NoProgress"
STALLED = "Stalled"


def silent_ranks(facts: RunFacts, seen: Observed, draft: StatusDraft) -> list[Mapping[str, Any]]:
    """This attempt's silent ranks as status.progress records them (none without stall detection)."""
    progress = draft.other.get("progress") or {}
    if facts.stall_timeout_seconds is None or progress.get("attempt") != seen.attempt:
        return []
    return list(progress.get("silentRanks") or [])


def describe(ranks: Sequence[Mapping[str, Any]], timeout: int | None) -> str:
    """`no progress report for 300s from rank 1 (pod p on node n), rank 3 (...)`."""
    parts = [f"rank {r.get('rank')} ({r.get('pod')} on {r.get('node') or 'an unknown node'})" for r in ranks[:4]]
    more = f" and {len(ranks) - 4} more" if len(ranks) > 4 else ""
    return f"no progress report for {timeout}s from {', '.join(parts)}{more}"


def decide(facts: RunFacts, seen: Observed, draft: StatusDraft, decision: Decision) -> Verdict | None:
    """With restartOnStall, a Running run with silent ranks restarts the gang (or fails past backoffLimit)."""
    if not facts.restart_on_stall or seen.phase_before != RUNNING:
        return None
    silent = silent_ranks(facts, seen, draft)
    if not silent:
        return None
    first = silent[0]
    failure = FailureInfo(reason=REASON_STALLED, message=describe(silent, facts.stall_timeout_seconds))
    failure |= {"pod": str(first.get("pod")), "rank": int(first.get("rank") or 0)}
    if first.get("node"):
        failure["node"] = str(first["node"])
    return restart_or_fail(facts, seen, draft, decision, failure, REASON_STALLED, retryable=True)


def condition(
    facts: RunFacts,
    seen: Observed,
    draft: StatusDraft,
    previous: Sequence[Mapping[str, Any]],
    phase: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Stalled=True (reason NoProgress, naming the ranks) for a Running run with silent ranks; None otherwise (the
    lifecycle's own Stalled, True only when Failed, stands)."""
    silent = silent_ranks(facts, seen, draft)
    if phase != RUNNING or not silent:
        return None
    message = describe(silent, facts.stall_timeout_seconds)
    return cond.condition(
        STALLED, "True", REASON_NO_PROGRESS, message, facts.generation, now, cond.find(previous, STALLED)
    )
