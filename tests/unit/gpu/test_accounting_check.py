"""bench/gpu/accounting_check.py in CI: the accounting from the agent's counters meets the targets at every scrape
interval, on a synthetic trace (idle, steady, bursts shorter and longer than the interval) and on a trace recorded on
an H100; the gauge path (a plain DCGM exporter) is what depends on the interval, and says so (`estimated`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.gpu import bench_gpu

ROOT = Path(__file__).resolve().parents[3]


ac = bench_gpu.load("accounting_check")
TRACES = {
    "synthetic": ac.synthetic,
    "h100": lambda: ac.load(ROOT / "tests" / "unit" / "gpu" / "fixtures" / "h100_nvml_trace.jsonl"),
}


@pytest.mark.parametrize("name", sorted(TRACES))
def test_counters_meet_the_targets_whatever_the_scrape_interval(name: str) -> None:
    reference, rows = ac.check(TRACES[name](), (1.0, 5.0, 15.0))
    counters = [r for r in rows if r.source == "counters"]
    assert all(r.passed for r in counters), ac.table(reference, rows)
    if name == "synthetic":
        # The intervals see the same counters: their figures do not move with the interval at all.
        assert len({(r.utilization, r.idle_seconds, r.power_error_pct) for r in counters}) == 1
        # Point gauges miss idle stretches between reads, more the longer the interval (the finding).
        gauges = {r.interval: r for r in rows if r.source == "gauges"}
        assert gauges[15.0].idle_error_pct < gauges[1.0].idle_error_pct < -10, ac.table(reference, rows)


def test_the_gauge_path_is_marked_estimated_and_the_counter_path_is_not() -> None:
    trace = ac.synthetic()
    for counters, estimated in ((True, False), (False, True)):
        node = ac.Node(trace, counters)
        account = ac.RunAccount("team")
        pod = ac.PodRef("r-node-0", "uid-0", "n0", 1, 0.0)
        for t in (10.37, 25.37, 40.37):
            account.observe([pod], ac.SampleIndex(ac.parse_exposition(node.page(t), now=t, node="n0")), t)
        assert account.estimated is estimated
        assert ("estimated" in account.summary(41.0)) is estimated


def test_the_command_prints_the_table_and_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert ac.main(["--intervals", "15", "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert "| synthetic | counters | 15 |" in out and "| synthetic | gauges | 15 |" in out
    assert (tmp_path / "rows.json").read_text().count('"source"') == 2
