"""The chaos and fuzz suite: faults during work and hostile input, with a tried/handled/lost table at the end.

`make test` runs the quick tier (a few runs per scenario); `make chaos` runs the full one (RUNYARD_CHAOS_SCALE=full).
Each scenario records what it tried and how each run ended; the table is printed after the session and, with
RUNYARD_CHAOS_REPORT=<file>, written as JSON (docs/chaos.md holds the last full run's table).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

FULL = os.environ.get("RUNYARD_CHAOS_SCALE", "quick") == "full"


def scale(quick: int, full: int) -> int:
    return full if FULL else quick


@dataclass
class Outcome:
    """One scenario: how many runs (or specs) it tried, how many ended as they must, which were lost or wrong."""

    scenario: str
    tried: int = 0
    handled: int = 0
    lost: list[str] = field(default_factory=list)  # runs that vanished, ended wrongly or stayed stuck
    foreign_touched: list[str] = field(default_factory=list)
    operator_crashes: int = 0


_OUTCOMES: list[Outcome] = []


@pytest.fixture
def outcome(request: pytest.FixtureRequest) -> Iterator[Outcome]:
    result = Outcome(request.node.name)
    yield result
    _OUTCOMES.append(result)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _OUTCOMES:
        return
    terminalreporter.write_sep("-", f"chaos summary ({'full' if FULL else 'quick'} tier)")
    terminalreporter.write_line(
        f"{'scenario':72} {'tried':>6} {'handled':>8} {'lost':>5} {'foreign':>8} {'crashes':>8}"
    )
    for o in _OUTCOMES:
        terminalreporter.write_line(
            f"{o.scenario[:72]:72} {o.tried:>6} {o.handled:>8} {len(o.lost):>5} {len(o.foreign_touched):>8} "
            f"{o.operator_crashes:>8}"
        )
    path = os.environ.get("RUNYARD_CHAOS_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump([asdict(o) for o in _OUTCOMES], out, indent=2)
