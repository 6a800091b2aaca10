"""Progress and ETA from the ranks' reports: fold a report into a run's state, render status.progress, pace writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runyard.constants import MAX_SILENT_RANKS
from runyard_operator.timestamps import format_time

# The rate is measured over about this much recent time: long enough to smooth a noisy loop, short enough to follow a
# change of speed (a larger batch after a restart, a slower phase of training).
RATE_WINDOW_SECONDS = 300.0


@dataclass(frozen=True)
class RankReport:
    """One accepted report: which process (pod and global rank) reached which step, when (Unix time)."""

    pod: str
    node: str
    rank: int
    step: int
    total: int | None
    at: float
    attempt: int

    @property
    def rank_key(self) -> str:
        return f"{self.pod}/{self.rank}"


@dataclass(frozen=True)
class RankSeen:
    rank: int
    pod: str
    node: str
    step: int
    at: float


@dataclass(frozen=True)
class RunProgress:
    """What the operator knows of one run's progress in its current attempt (memory only; status holds the result)."""

    attempt: int
    total: int | None = None
    ranks: dict[str, RankSeen] = field(default_factory=dict)
    # (time, lead step) samples of the last RATE_WINDOW_SECONDS, oldest first, plus the one just before the window.
    samples: tuple[tuple[float, int], ...] = ()
    last_report: float = 0.0

    @property
    def lead_step(self) -> int:
        """Global rank 0's step (the one that usually logs), else the furthest rank's."""
        zero = [r.step for r in self.ranks.values() if r.rank == 0]
        if zero:
            return max(zero)
        return max((r.step for r in self.ranks.values()), default=0)

    @property
    def rate(self) -> float | None:
        """Steps per second over the window; None until two samples at least a second apart show a change."""
        if len(self.samples) < 2:
            return None
        (t0, s0), (t1, s1) = self.samples[0], self.samples[-1]
        if t1 - t0 < 1.0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)


def fold(state: RunProgress | None, report: RankReport) -> RunProgress | None:
    """The state after `report`; None when the report is from an older attempt than the state (a stopping replica)."""
    if state is None or report.attempt > state.attempt:
        # A new attempt starts over (a resumed gang may report lower steps); what the code said the total is stays.
        state = RunProgress(attempt=report.attempt, total=state.total if state else None)
    elif report.attempt < state.attempt:
        return None
    seen = RankSeen(report.rank, report.pod, report.node, report.step, report.at)
    # A rank's replacement pod (replicas recreated after a suspension, same attempt) supersedes the stopped one: it
    # resumed from a checkpoint, so its lower step is the truth now.
    kept = {k: r for k, r in state.ranks.items() if r.rank != report.rank or r.pod == report.pod}
    if len(kept) < len(state.ranks):
        state = replace(state, samples=())
    ranks = {**kept, report.rank_key: seen}
    total = report.total if report.total is not None else state.total
    updated = replace(state, ranks=ranks, total=total, last_report=max(state.last_report, report.at))
    lead = updated.lead_step
    samples = state.samples
    if not samples or samples[-1][1] != lead:
        samples = (*samples, (report.at, lead))
    # Keep one sample older than the window so the rate always spans (about) the whole window.
    cutoff = report.at - RATE_WINDOW_SECONDS
    while len(samples) > 2 and samples[1][0] <= cutoff:
        samples = samples[1:]
    return replace(updated, samples=samples)


def humanize(seconds: float) -> str:
    """`45s`, `12m30s`, `3h05m`, `2d04h`: as short as kubectl's ages, precise enough for an ETA."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def silent(state: RunProgress, now: float, timeout: float | None, running: frozenset[str]) -> list[RankSeen]:
    """Ranks that reported in this attempt and have been silent for `timeout` seconds while their pod runs."""
    if timeout is None:
        return []
    quiet = [r for r in state.ranks.values() if r.pod in running and now - r.at >= timeout]
    return sorted(quiet, key=lambda r: (r.rank, r.pod))


def next_stall_check(state: RunProgress, now: float, timeout: float | None, running: frozenset[str]) -> float | None:
    """Seconds until the next rank could turn silent (None: nothing to watch)."""
    if timeout is None:
        return None
    due = [r.at + timeout - now for r in state.ranks.values() if r.pod in running and now - r.at < timeout]
    return max(0.0, min(due)) if due else None


def render(state: RunProgress, quiet: Sequence[RankSeen] = ()) -> dict[str, Any]:
    """status.progress for `state` (camelCase, as the CRD has it); ETA and time left are as of the lead step's report."""
    step, total, rate = state.lead_step, state.total, state.rate
    out: dict[str, Any] = {
        "step": step,
        "lastReportTime": format_time(state.last_report),
        "reportingRanks": len(state.ranks),
        "attempt": state.attempt,
    }
    if rate is not None:
        out["stepsPerSecond"] = round(rate, 4)
    if total:
        percent = min(100, int(step * 100 // total))
        out |= {"totalSteps": total, "percent": percent, "summary": f"{percent}%({step}/{total})"}
        if rate is not None and step < total:
            left = (total - step) / rate
            # From when the lead step was reached, not from a later report of another rank.
            since = state.samples[-1][0] if state.samples else state.last_report
            out |= {"eta": format_time(since + left), "remaining": humanize(left)}
        elif step >= total:
            out["remaining"] = "0s"
    else:
        out["summary"] = f"{step}/?"
    if quiet:
        out["silentRanks"] = [
            {"rank": r.rank, "pod": r.pod, "node": r.node, "lastReportTime": format_time(r.at)}
            for r in quiet[:MAX_SILENT_RANKS]
        ]
        # `kubectl get tr` shows PROGRESS and ETA only: a stalled run says so there, and promises no end time.
        out["summary"] += f" stalled ({len(quiet)} silent)"
        out.pop("eta", None)
        out.pop("remaining", None)
    return out


def write_delay(last_write: float | None, now: float, min_interval: float) -> float:
    """Seconds to wait before the next status.progress write (0: write now): at most one per `min_interval`."""
    if last_write is None:
        return 0.0
    return max(0.0, last_write + min_interval - now)
