"""bench/gpu/check_nvml.py's checks on synthetic traces (the GPU run itself happens on a GPU machine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.gpu import bench_gpu

ROOT = Path(__file__).resolve().parents[3]
GIB = 2**30


check = bench_gpu.load("check_nvml")


def synthetic(
    *, load_util: float = 99.0, energy_scale: float = 1.0, held_gib: float = 20.0, reset_at: float | None = None
) -> list[dict[str, Any]]:
    """0.5 s samples of idle/load/settle/memory/idle_after with a counter that integrates the power exactly."""
    rows: list[dict[str, Any]] = []
    t, energy_mj = 1000.0, 5e9
    base_mem = 1 * GIB
    prev_power = None
    for phase, seconds in check.DEFAULT_PHASES:
        for _ in range(int(seconds / 0.5)):
            power = 650.0 if phase == "load" else 75.0
            util = load_util if phase == "load" else 0.0
            mem = base_mem + (held_gib * GIB if phase == "memory" else 0) + (GIB // 4 if phase != "idle" else 0)
            if prev_power is not None:
                energy_mj += (prev_power + power) / 2 * 0.5 * 1000 * energy_scale
            if reset_at is not None and abs(t - reset_at) < 0.25:
                energy_mj = 0.0  # driver reload
            rows.append(
                {"t": t, "phase": phase, "util": util, "mem_used": mem, "power_w": power, "energy_mj": energy_mj}
            )
            prev_power = power
            t += 0.5
    return rows


def test_good_trace_passes() -> None:
    result = check.evaluate(synthetic(), 20 * GIB)
    assert result["ok"], check.table(result)
    names = {c["name"]: c for c in result["checks"]}
    assert names["energy_counter_vs_power_integral"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert names["utilization_under_load"]["value"] == pytest.approx(99.0)
    # The baseline is "settle", so memory that stayed resident after the load is not counted as allocated.
    assert names["memory_delta_vs_allocated"]["value"] == pytest.approx(0.0)
    assert result["load_minus_idle_power_w"] == pytest.approx(575.0)
    assert "PASS" in check.table(result)


@pytest.mark.parametrize(
    ("kwargs", "failing"),
    [
        ({"energy_scale": 1.2}, "energy_counter_vs_power_integral"),
        ({"load_util": 70.0}, "utilization_under_load"),
        ({"held_gib": 18.0}, "memory_delta_vs_allocated"),
    ],
)
def test_each_check_fails_on_its_own(kwargs: dict[str, Any], failing: str) -> None:
    result = check.evaluate(synthetic(**kwargs), 20 * GIB)
    assert not result["ok"]
    assert [c["name"] for c in result["checks"] if not c["ok"]] == [failing]


def test_counter_reset_is_a_new_segment() -> None:
    rows = synthetic(reset_at=1020.0)
    counted, resets = check.energy_delta_j(rows)
    assert resets == 1
    # Losing one 0.5 s interval of counting at the reset stays far inside the 10 % tolerance.
    assert check.evaluate(rows, 20 * GIB)["checks"][0]["ok"]
    assert counted < check.integrate_power_j(rows)


def test_replay_cli_round_trip(tmp_path: Path) -> None:
    trace = tmp_path / "nvml_trace.jsonl"
    check.write_trace(trace, {"allocated_bytes": 20 * GIB, "uuid": "GPU-x"}, synthetic())
    meta, rows = check.load_trace(trace)
    assert meta["uuid"] == "GPU-x" and len(rows) == len(synthetic())
    ok = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu/check_nvml.py"), "--replay", str(trace)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    check.write_trace(trace, {"allocated_bytes": 20 * GIB}, synthetic(load_util=10.0))
    bad = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu/check_nvml.py"), "--replay", str(trace)], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "FAIL" in bad.stdout
    assert bad.stdout.strip().splitlines()[-1].startswith("{")  # the JSON result is the last line


def test_nvml_module_imports_only_stdlib_and_pynvml() -> None:
    # The GPU host has no pydantic/kopf/aiohttp: importing the reader must not pull them in.
    code = (
        "import sys; sys.modules['pydantic'] = None; sys.modules['aiohttp'] = None; sys.modules['kopf'] = None; "
        "sys.modules['prometheus_client'] = None; sys.modules['runyard_operator'] = None; "
        "import runyard.gpu.nvml as m; print(m.NVMLReader.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "sdk")}
    )
    assert out.returncode == 0, out.stderr


def test_real_h100_trace_replays_and_passes() -> None:
    """The trace recorded by bench/gpu/check_nvml.py on a real H100 (2026-11-26) still passes every check."""
    trace = Path(__file__).parent / "fixtures" / "h100_nvml_trace.jsonl"
    meta, rows = check.load_trace(trace)
    assert len(rows) > 100
    result = check.evaluate(rows, int(meta["allocated_bytes"]))
    assert result["ok"], result
