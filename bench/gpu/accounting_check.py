"""GPU accounting against the truth at several scrape intervals: the agent's counters versus point gauges.

A truth trace (time, utilisation %, power W on a fine step) goes through the path a node takes: NVML's sample buffer
(a utilisation sample every 200 ms averaging the time since the one before, an energy counter in mJ), the node agent
(reads the buffer and the counter once a second; gpu/integrator.py, gpu/agent.py's exposition), a scrape every N
seconds (gpu/parser.py) and the run's accounting (gpu/accounting.py). Each figure is compared with the truth:

    utilisation  |error| <= 2 points     power  |error| <= 3 %     energy  |error| <= 2 %     idle time  within 10 %

`gauges` replays the same trace as a plain DCGM exporter would serve it (no busy/idle counters; its energy counter
is kept): the figures the accounting marks `estimated`. Traces: `synthetic` (idle, steady, bursts shorter and longer
than the scrape interval) or a trace saved by check_nvml.py (JSON lines; its samples are held until the next one).

    PYTHONPATH=sdk:operator python3 bench/gpu/accounting_check.py [--trace T.jsonl] [--intervals 1 5 15] [--json out]

Exit status 0 when every counter row meets the targets. tests/unit/gpu/test_accounting_check.py runs it in CI.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import accumulate, pairwise
from pathlib import Path

from runyard.gpu.integrator import IDLE_PERCENT, UtilizationIntegrator
from runyard.gpu.nvml import DeviceReading
from runyard_operator.gpu.accounting import PodRef, RunAccount, SampleIndex
from runyard_operator.gpu.agent import render
from runyard_operator.gpu.parser import parse_exposition
from runyard_operator.gpu.podresources import DeviceOwner

STEP = 0.05  # the truth's resolution, seconds
NVML_SAMPLE = 0.2  # NVML's utilisation sample period on recent GPUs (measured on an H200: 200 ms)
AGENT_INTERVAL = 1.0
UUID = "GPU-00000000-0000-0000-0000-000000000001"
OWNER = DeviceOwner("team", "r-node-0", "trainer", "nvidia.com/gpu", UUID)
TARGETS = {"utilization_points": 2.0, "power_pct": 3.0, "energy_pct": 2.0, "idle_pct": 10.0}


@dataclass(frozen=True)
class Trace:
    """Utilisation and power held for STEP seconds each, from t = 0."""

    name: str
    util: list[float]
    power: list[float]

    @property
    def end(self) -> float:
        return len(self.util) * STEP


def synthetic() -> Trace:
    """Idle, steady, bursts of 3.1 s (shorter than the default scrape) and of 40 s (longer), idle again: 300 s."""
    util: list[float] = []
    power: list[float] = []

    def hold(seconds: float, u: float, p: float) -> None:
        n = round(seconds / STEP)
        util.extend([u] * n)
        power.extend([p] * n)

    hold(40, 0.0, 70.0)
    hold(60, 97.0, 620.0)
    for _ in range(30):  # data-loader-bound training: 0.8 s of compute, 2.3 s waiting (a period off the 1 s agent grid)
        hold(0.8, 100.0, 650.0)
        hold(2.3, 0.0, 100.0)
    for _ in range(2):
        hold(20, 98.0, 600.0)
        hold(20, 0.0, 90.0)
    hold(30, 0.0, 70.0)
    return Trace("synthetic", util, power)


def load(path: Path) -> Trace:
    """A check_nvml.py trace: each sample's utilisation and power held until the next sample."""
    samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    points = [s for s in samples if s.get("type") == "sample" and s.get("util") is not None]
    util: list[float] = []
    power: list[float] = []
    for here, after in pairwise(points):
        n = max(round((after["t"] - here["t"]) / STEP), 1)
        util.extend([float(here["util"])] * n)
        power.extend([float(here["power_w"])] * n)
    return Trace(path.stem, util, power)


@dataclass(frozen=True)
class Figures:
    utilization: float
    idle_seconds: float
    power_watts: float
    energy_joules: float


def truth(trace: Trace) -> Figures:
    n = len(trace.util)
    return Figures(
        utilization=sum(trace.util) / n,
        idle_seconds=sum(STEP for u in trace.util if u < IDLE_PERCENT),
        power_watts=sum(trace.power) / n,
        energy_joules=sum(trace.power) * STEP,
    )


class Node:
    """NVML and the agent over a trace: what the agent's /metrics page says at any time."""

    def __init__(self, trace: Trace, counters: bool) -> None:
        self.trace = trace
        self.counters = counters
        self._util = [0.0, *accumulate(trace.util)]  # prefix sums on the STEP grid
        self._energy = [0.0, *accumulate(p * STEP for p in trace.power)]
        self._integrator = UtilizationIntegrator()
        self._page_time = -1.0
        self._page = ""
        self._buffer_times = [k * NVML_SAMPLE for k in range(1, int(trace.end / NVML_SAMPLE) + 1)]

    def _mean_util(self, start: float, end: float) -> float:
        i, j = round(start / STEP), round(end / STEP)
        return (self._util[j] - self._util[i]) / max(j - i, 1)

    def _energy_mj(self, t: float) -> float:
        return self._energy[min(round(t / STEP), len(self._energy) - 1)] * 1000.0

    def page(self, t: float) -> str:
        """The page the agent last rendered (it samples every AGENT_INTERVAL seconds)."""
        sampled_at = int(t / AGENT_INTERVAL) * AGENT_INTERVAL
        while self._page_time < sampled_at:
            self._page_time = self._page_time + AGENT_INTERVAL if self._page_time >= 0 else 0.0
            self._render(self._page_time)
        return self._page

    def _render(self, t: float) -> None:
        last = self._integrator.last_time or 0.0
        lo, hi = bisect.bisect_right(self._buffer_times, last + 1e-9), bisect.bisect_right(self._buffer_times, t + 1e-9)
        samples = [(ts, self._mean_util(ts - NVML_SAMPLE, ts)) for ts in self._buffer_times[lo:hi]]
        self._integrator.feed(samples)
        newest = self._buffer_times[hi - 1] if hi else 0.0
        reading = DeviceReading(
            index=0,
            uuid=UUID,
            name="NVIDIA H200",
            bus_id="00000000:01:00.0",
            timestamp=t,
            utilization_pct=self._mean_util(max(newest - NVML_SAMPLE, 0.0), newest) if hi else 0.0,
            memory_used_bytes=1 << 30,
            memory_total_bytes=140 << 30,
            power_watts=self.trace.power[min(round(t / STEP), len(self.trace.power) - 1)],
            energy_mj=int(self._energy_mj(t)),
        )
        counters = {UUID: self._integrator.counters} if self.counters else None
        self._page = render([reading], {UUID: OWNER}, "n0", counters)


def replay(trace: Trace, interval: float, counters: bool = True, offset: float = 0.37) -> Figures:
    """The run's accounting of one GPU held for the whole trace, scraped every `interval` seconds from `offset`."""
    node = Node(trace, counters)
    pod = PodRef("r-node-0", "uid-0", "n0", 1, 0.0)
    account = RunAccount("team", max_gap=max(3 * interval, 45.0))
    t = offset
    while t <= trace.end:
        samples = parse_exposition(node.page(t), now=t, node="n0")
        account.observe([pod], SampleIndex(samples), t)
        t += interval
    account.observe([], SampleIndex([]), trace.end)
    return Figures(
        utilization=account.avg_utilization or 0.0,
        idle_seconds=account.idle_seconds,
        power_watts=account.avg_power or 0.0,
        energy_joules=account.energy_mj / 1000.0,
    )


@dataclass(frozen=True)
class Row:
    trace: str
    source: str
    interval: float
    utilization: float
    utilization_error_points: float
    power_error_pct: float
    energy_error_pct: float
    idle_seconds: float
    idle_error_pct: float
    passed: bool


def pct(value: float, reference: float) -> float:
    return 100.0 * (value - reference) / reference if reference else 0.0


def compare(
    trace: str, source: str, interval: float, got: Figures, reference: Figures, idle_error: float | None = None
) -> Row:
    """One row: `got` against `reference`, each error against its target (`idle_error` replaces the plain %)."""
    util_err = got.utilization - reference.utilization
    power_err = pct(got.power_watts, reference.power_watts)
    energy_err = pct(got.energy_joules, reference.energy_joules)
    idle_err = pct(got.idle_seconds, reference.idle_seconds) if idle_error is None else idle_error
    passed = (
        abs(util_err) <= TARGETS["utilization_points"]
        and abs(power_err) <= TARGETS["power_pct"]
        and abs(energy_err) <= TARGETS["energy_pct"]
        and abs(idle_err) <= TARGETS["idle_pct"]
    )
    return Row(trace, source, interval, round(got.utilization, 2), round(util_err, 2), round(power_err, 2),
               round(energy_err, 2), round(got.idle_seconds, 1), round(idle_err, 1), passed)  # fmt: skip


def check(trace: Trace, intervals: Sequence[float] = (1.0, 5.0, 15.0)) -> tuple[Figures, list[Row]]:
    reference = truth(trace)
    rows = [
        compare(trace.name, source, interval, replay(trace, interval, counters=source == "counters"), reference)
        for source in ("counters", "gauges")
        for interval in intervals
    ]
    return reference, rows


def row_lines(rows: Sequence[Row], first: str = "trace") -> list[str]:
    """The rows as a Markdown table; `first` names the first column."""
    lines = [
        f"| {first} | source | scrape s | util % | util err (pts) | power err % | energy err % | idle s | idle err % | ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.trace} | {r.source} | {r.interval:g} | {r.utilization:.2f} | {r.utilization_error_points:+.2f} | "
            f"{r.power_error_pct:+.2f} | {r.energy_error_pct:+.2f} | {r.idle_seconds:.1f} | {r.idle_error_pct:+.1f} | "
            f"{'yes' if r.passed else 'no'} |"
        )
    return lines


def table(reference: Figures, rows: Sequence[Row]) -> str:
    truth_line = (
        f"truth: utilisation {reference.utilization:.2f} %, idle {reference.idle_seconds:.1f} s, "
        f"power {reference.power_watts:.1f} W, energy {reference.energy_joules:.0f} J"
    )
    return "\n".join([truth_line, *row_lines(rows)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trace", type=Path, action="append", help="check_nvml.py traces (default: synthetic)")
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 5.0, 15.0])
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args(argv)
    traces = [load(p) for p in args.trace] if args.trace else [synthetic()]
    ok = True
    out = []
    for trace in traces:
        reference, rows = check(trace, args.intervals)
        print(table(reference, rows))
        ok = ok and all(r.passed for r in rows if r.source == "counters")
        out += [asdict(r) for r in rows]
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
