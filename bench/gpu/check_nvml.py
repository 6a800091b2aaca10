#!/usr/bin/env python3
"""Check the agent's NVML sampling path on a real GPU: idle -> matmul load -> memory hold -> idle, then verify the readings.

Run from the repo root: `PYTHONPATH=sdk python3 bench/gpu/check_nvml.py [--out trace.jsonl]`. Needs torch with CUDA
and nvidia-ml-py; imports nothing of Runyard but `runyard.gpu.nvml` (stdlib + nvidia-ml-py only).
`--replay trace.jsonl` re-runs the checks on a saved trace without a GPU.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

try:
    from runyard.gpu.nvml import NVMLReader
except ImportError:  # run without PYTHONPATH: the module lives in sdk/ of this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk"))
    from runyard.gpu.nvml import NVMLReader

GIB = 2**30
# "settle" (after load, caches emptied) is the memory baseline: cuBLAS kernels loaded lazily during the load stay resident.
DEFAULT_PHASES = (("idle", 10.0), ("load", 20.0), ("settle", 2.0), ("memory", 10.0), ("idle_after", 10.0))
ENERGY_TOLERANCE = 0.10  # energy counter vs integrated power
UTIL_MIN = 90.0  # mean utilisation under matmul load, percent
MEMORY_TOLERANCE = 0.05  # memory delta vs bytes allocated
WARMUP_SECONDS = 2.0  # first seconds of a phase: clocks ramp up, the 1 s power average lags


# --- checks (pure; the unit test replays synthetic traces through them) -----------------------------------


def integrate_power_j(samples: Sequence[dict[str, Any]]) -> float:
    """Trapezoid integral of power (W) over time (s), in joules."""
    total = 0.0
    for a, b in itertools.pairwise(samples):
        if a.get("power_w") is None or b.get("power_w") is None:
            continue
        total += (a["power_w"] + b["power_w"]) / 2 * (b["t"] - a["t"])
    return total


def energy_delta_j(samples: Sequence[dict[str, Any]]) -> tuple[float, int]:
    """Energy counter increase (mJ -> J) over the trace, summing segments across counter resets; and the reset count."""
    total, resets, prev = 0.0, 0, None
    for s in samples:
        value = s.get("energy_mj")
        if value is None:
            continue
        if prev is not None:
            if value >= prev:
                total += value - prev
            else:
                resets += 1
                total += value  # the driver reloaded: the counter restarted from 0
        prev = value
    return total / 1000.0, resets


def _phase(samples: Iterable[dict[str, Any]], name: str, skip: float = 0.0) -> list[dict[str, Any]]:
    rows = [s for s in samples if s.get("phase") == name]
    if rows and skip:
        start = rows[0]["t"]
        rows = [s for s in rows if s["t"] - start >= skip]
    return rows


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def evaluate(
    samples: Sequence[dict[str, Any]],
    allocated_bytes: int,
    *,
    energy_tolerance: float = ENERGY_TOLERANCE,
    util_min: float = UTIL_MIN,
    memory_tolerance: float = MEMORY_TOLERANCE,
    warmup: float = WARMUP_SECONDS,
) -> dict[str, Any]:
    """The checks, a per-phase table and an overall verdict, as JSON-ready data."""
    checks: list[dict[str, Any]] = []

    integrated = integrate_power_j(samples)
    counted, resets = energy_delta_j(samples)
    energy_err = abs(counted - integrated) / integrated if integrated > 0 else None
    checks.append(
        {
            "name": "energy_counter_vs_power_integral",
            "value": energy_err,
            "target": f"<= {energy_tolerance:.0%}",
            "ok": energy_err is not None and energy_err <= energy_tolerance,
            "detail": {"counter_j": counted, "integral_j": integrated, "counter_resets": resets},
        }
    )

    load_util = _mean(s.get("util") for s in _phase(samples, "load", warmup))
    checks.append(
        {
            "name": "utilization_under_load",
            "value": load_util,
            "target": f">= {util_min:g}%",
            "ok": load_util is not None and load_util >= util_min,
        }
    )

    baseline = _median(s.get("mem_used") for s in _phase(samples, "settle")) or _median(
        s.get("mem_used") for s in _phase(samples, "idle")
    )
    held = _median(s.get("mem_used") for s in _phase(samples, "memory", 1.0))
    delta = held - baseline if held is not None and baseline is not None else None
    mem_err = abs(delta - allocated_bytes) / allocated_bytes if delta is not None and allocated_bytes else None
    checks.append(
        {
            "name": "memory_delta_vs_allocated",
            "value": mem_err,
            "target": f"<= {memory_tolerance:.0%}",
            "ok": mem_err is not None and mem_err <= memory_tolerance,
            "detail": {
                "baseline_bytes": baseline,
                "held_bytes": held,
                "delta_bytes": delta,
                "allocated_bytes": allocated_bytes,
            },
        }
    )

    phases: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(s.get("phase") for s in samples):
        rows = _phase(samples, str(name))
        phases[str(name)] = {
            "samples": len(rows),
            "seconds": rows[-1]["t"] - rows[0]["t"] if len(rows) > 1 else 0.0,
            "util_mean": _mean(s.get("util") for s in rows),
            "power_mean_w": _mean(s.get("power_w") for s in rows),
            "mem_used_max_gib": max((s["mem_used"] for s in rows if s.get("mem_used") is not None), default=0) / GIB,
        }
    idle_power = phases.get("idle", {}).get("power_mean_w")
    load_power = phases.get("load", {}).get("power_mean_w")
    return {
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
        "phases": phases,
        # Informational: shows the load was real, without failing smaller GPUs on a fixed watt margin.
        "load_minus_idle_power_w": load_power - idle_power
        if load_power is not None and idle_power is not None
        else None,
    }


def table(result: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = [f"{'phase':<12}{'samples':>8}{'seconds':>9}{'util %':>9}{'power W':>10}{'mem max GiB':>13}"]
    for name, p in result["phases"].items():
        lines.append(
            f"{name:<12}{p['samples']:>8}{fmt(p['seconds']):>9}{fmt(p['util_mean']):>9}"
            f"{fmt(p['power_mean_w']):>10}{fmt(p['mem_used_max_gib']):>13}"
        )
    lines.append("")
    lines.append(f"{'check':<36}{'value':>10}  {'target':<10}result")
    for c in result["checks"]:
        lines.append(f"{c['name']:<36}{fmt(c['value']):>10}  {c['target']:<10}{'PASS' if c['ok'] else 'FAIL'}")
    lines.append(f"overall: {'PASS' if result['ok'] else 'FAIL'}")
    return "\n".join(lines)


def load_trace(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    meta: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("type") == "meta":
            meta = row
        else:
            samples.append(row)
    return meta, samples


def write_trace(path: Path, meta: dict[str, Any], samples: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write(json.dumps({"type": "meta", **meta}) + "\n")
        for s in samples:
            f.write(json.dumps({"type": "sample", **s}) + "\n")


# --- the real run ---------------------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Reads the chosen GPU through NVMLReader every `interval` seconds, tagging rows with the current phase."""

    def __init__(self, reader: NVMLReader, uuid: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.reader, self.uuid, self.interval = reader, uuid, interval
        self.phase = "setup"
        self.rows: list[dict[str, Any]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            for r in self.reader.read():
                if r.uuid == self.uuid and r.gi_id is None:
                    self.rows.append(
                        {
                            "t": r.timestamp,
                            "phase": self.phase,
                            "util": r.utilization_pct,
                            "mem_used": r.memory_used_bytes,
                            "mem_total": r.memory_total_bytes,
                            "power_w": r.power_watts,
                            "energy_mj": r.energy_mj,
                            "temp_c": r.temperature_c,
                        }
                    )
            next_at += self.interval
            self.stop_event.wait(max(next_at - time.monotonic(), 0.0))


def _pick_device(reader: NVMLReader, torch: Any, index: int) -> Any:
    """The NVML reading of torch's cuda:`index` (matched by UUID, so CUDA_VISIBLE_DEVICES remapping is harmless)."""
    readings = [r for r in reader.read() if r.gi_id is None]
    props = torch.cuda.get_device_properties(index)
    uuid = str(getattr(props, "uuid", "") or "")
    for r in readings:
        if uuid and r.uuid.removeprefix("GPU-") == uuid.removeprefix("GPU-"):
            return r
    return readings[index]


def _busy(torch: Any, seconds: float) -> None:
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(20):  # enough queued work between syncs that the GPU never waits on Python
            a = torch.matmul(a, b)
            a = a / a.abs().amax().clamp(min=1)
        torch.cuda.synchronize()
    del a, b


def run_check(args: argparse.Namespace, say: Callable[[str], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device")
    torch.cuda.set_device(args.device)
    torch.zeros(1, device="cuda")  # create the CUDA context before the idle baseline, so it is not counted
    torch.cuda.synchronize()
    reader = NVMLReader()
    reader.open()
    device = _pick_device(reader, torch, args.device)
    total = device.memory_total_bytes or 0
    allocated = int(min(args.mem_gib * GIB, 0.5 * total)) if total else int(args.mem_gib * GIB)
    meta = {
        "uuid": device.uuid,
        "name": device.name,
        "memory_total_bytes": total,
        "allocated_bytes": allocated,
        "interval": args.interval,
        "phases": dict(DEFAULT_PHASES),
        "torch": torch.__version__,
    }
    say(f"GPU {device.index} {device.name} {device.uuid}; allocating {allocated / GIB:.1f} GiB in the memory phase")
    sampler = Sampler(reader, device.uuid, args.interval)
    sampler.start()
    try:
        for name, seconds in DEFAULT_PHASES:
            seconds *= args.scale
            say(f"phase {name}: {seconds:.0f}s")
            sampler.phase = name
            if name == "load":
                _busy(torch, seconds)
                torch.cuda.synchronize()
                torch.cuda.empty_cache()  # release matmul buffers so the memory phase measures only its own block
            elif name == "memory":
                block = torch.empty(allocated, dtype=torch.uint8, device="cuda")
                block.fill_(1)  # touch every page
                torch.cuda.synchronize()
                time.sleep(seconds)
                del block
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            else:
                time.sleep(seconds)
    finally:
        sampler.stop_event.set()
        sampler.join(timeout=5)
        reader.close()
    return meta, sampler.rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    default_out = Path(os.environ["OUT"]) / "nvml_trace.jsonl" if os.environ.get("OUT") else Path("nvml_trace.jsonl")
    p.add_argument("--out", type=Path, default=default_out, help="JSON-lines trace to write (replay fixture).")
    p.add_argument("--replay", type=Path, help="Check a saved trace instead of running on a GPU.")
    p.add_argument("--device", type=int, default=0, help="torch CUDA device index.")
    p.add_argument("--interval", type=float, default=0.5, help="Sampling period in seconds (0.5-1).")
    p.add_argument(
        "--mem-gib", type=float, default=20.0, help="GiB to hold in the memory phase (at most half the GPU)."
    )
    p.add_argument("--scale", type=float, default=1.0, help="Multiply every phase duration (e.g. 2 for a longer run).")
    args = p.parse_args(argv)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.replay:
        meta, samples = load_trace(args.replay)
    else:
        meta, samples = run_check(args, say)
        write_trace(args.out, meta, samples)
        say(f"trace: {args.out} ({len(samples)} samples)")
    result = evaluate(samples, int(meta.get("allocated_bytes") or 0))
    result["device"] = {k: meta.get(k) for k in ("uuid", "name", "memory_total_bytes", "torch")}
    print(table(result))
    print(json.dumps(result, default=str))
    if not args.replay:
        (args.out.parent / "nvml_result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
