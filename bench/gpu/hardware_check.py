#!/usr/bin/env python3
"""Issue 17's hardware check: the real agent's counters on a real GPU, scraped at 1, 5 and 15 s, against a 20 Hz truth.

`record` runs, on one GPU: a fake kubelet PodResources socket that gives GPU 0 to one pod; the node agent
(`python -m runyard_operator.gpu.agent`, NVML's sample buffer read once a second) in its own process; a scraper that
saves every /metrics page; an independent 20 Hz NVML sampler (utilisation, power, energy counter); and a bf16 matmul
load in its own process, in three phase mixes, each with 10 s idle before and after: steady (30 s busy), short bursts
(0.8 s busy / 2.3 s waiting, 12 times: shorter than the default scrape) and long bursts (20 s busy, 20 s idle, 20 s
busy: longer). Everything goes to one JSON-lines trace (about 3 min 10 s).

`evaluate` replays a trace through the operator's parser and `RunAccount` at each scrape interval, as the agent serves
it (counters) and as a plain DCGM exporter would (gauges), per phase mix and whole; truth is the 20 Hz sampler
(utilisation, idle time below 5 %) and the energy counter (energy, average power). Pass: every counter row within
2 points / 3 % / 2 % / 10 % of idle time, and the agent's CPU at most 1 % of one core per GPU.

    # on a GPU machine (torch with CUDA, nvidia-ml-py, grpcio, aiohttp, prometheus-client), from the repo root:
    PYTHONPATH=sdk:operator python3 bench/gpu/hardware_check.py record --out hw_trace.jsonl
    PYTHONPATH=sdk:operator python3 bench/gpu/hardware_check.py evaluate hw_trace.jsonl --json hw_result.json
    # anywhere, a dry run of the whole pipeline on a simulated GPU (bench/gpu/simnvml):
    PYTHONPATH=sdk:operator python3 bench/gpu/hardware_check.py record --simulate --out /tmp/sim.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accounting_check import Figures, Row, compare, pct, row_lines

from runyard.gpu.integrator import IDLE_PERCENT
from runyard.ports import free_port
from runyard_operator.gpu.accounting import PodRef, RunAccount, SampleIndex
from runyard_operator.gpu.parser import parse_exposition

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SIM_DIR = HERE / "simnvml"
SIM_STATE_ENV = "RUNYARD_SIM_GPU_STATE"
REF_HZ = 20.0
NODE, NAMESPACE, POD, CONTAINER = "n0", "team", "r-node-0", "trainer"
AGENT_CORE_PCT = 1.0  # the agent's own CPU per GPU, percent of one core (the accuracy targets are accounting_check's)
# The operator's reads in the replay: the pod's start reaches it (kubelet status, watch) and its early round reads
# about a second later; the pod's end reaches it through the kubelet, the Job controller and the run's completion, and
# its final read comes about two seconds after the end. Regular rounds run on its own cadence, here offset 0.61 of one.
HEAD_READ_SECONDS = 1.0
TAIL_READ_SECONDS = 2.0
ROUND_PHASE = 0.61
INSTANT_POWER_FIELD = 186  # NVML_FI_DEV_POWER_INSTANT (mW); nvmlDeviceGetPowerUsage averages over ~1 s on Hopper


def schedule() -> list[tuple[str, list[tuple[float, bool]]]]:
    """Phase mixes as (name, [(seconds, busy), ...]); each starts and ends idle, as a pod's allocation does."""
    return [
        ("steady", [(10.0, False), (30.0, True), (10.0, False)]),
        ("short_bursts", [(10.0, False), *[(0.8, True), (2.3, False)] * 12, (10.0, False)]),
        ("long_bursts", [(10.0, False), (20.0, True), (20.0, False), (20.0, True), (10.0, False)]),
    ]


# --- the load (its own process) ---------------------------------------------------------------------------------


def workload(simulate: bool) -> None:
    """Print each phase's start as a JSON line; compute (or, simulated, mark the GPU busy) on the schedule."""
    if simulate:
        state = Path(os.environ[SIM_STATE_ENV])

        def busy_for(seconds: float) -> None:
            with state.open("a") as f:
                f.write(f"{time.time()} 100\n")
            time.sleep(seconds)
            with state.open("a") as f:
                f.write(f"{time.time()} 0\n")

    else:
        torch: Any = importlib.import_module("torch")
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        c = torch.empty_like(a)
        torch.cuda.synchronize()

        def busy_for(seconds: float) -> None:
            end = time.time() + seconds
            while time.time() < end:
                for _ in range(8):  # ~1.4 ms each at ~790 TFLOP/s: the clock is checked every ~11 ms
                    torch.matmul(a, b, out=c)
                torch.cuda.synchronize()

    for name, steps in schedule():
        print(json.dumps({"type": "phase", "t": time.time(), "name": name}), flush=True)
        for seconds, busy in steps:
            if busy:
                busy_for(seconds)
            else:
                time.sleep(seconds)
    print(json.dumps({"type": "phase", "t": time.time(), "name": "end"}), flush=True)


# --- recording --------------------------------------------------------------------------------------------------


def _nvml(simulate: bool) -> Any:
    if simulate:
        sys.path.insert(0, str(SIM_DIR))
    return importlib.import_module("pynvml")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _every(period: float, stop: threading.Event, fn: Callable[[float], None]) -> None:
    """Call fn(now) every `period` seconds on a fixed grid (no drift) until `stop`."""
    next_at = time.monotonic()
    while not stop.is_set():
        fn(time.time())
        next_at += period
        stop.wait(max(next_at - time.monotonic(), 0.0))


def _reference(nv: Any, handle: Any) -> Callable[[float], dict[str, Any]]:
    def instant_mw() -> float | None:
        try:
            (value,) = nv.nvmlDeviceGetFieldValues(handle, [INSTANT_POWER_FIELD])
            return float(value.value.uiVal) if value.nvmlReturn == 0 else None
        except Exception:
            return None

    def read(now: float) -> dict[str, Any]:
        mw = instant_mw()
        return {
            "type": "ref",
            "t": now,
            "util": float(nv.nvmlDeviceGetUtilizationRates(handle).gpu),
            "power_w": (mw if mw is not None else float(nv.nvmlDeviceGetPowerUsage(handle))) / 1000.0,
            "instant": mw is not None,
            "energy_mj": int(nv.nvmlDeviceGetTotalEnergyConsumption(handle)),
        }

    return read


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def record(out: Path, simulate: bool) -> int:
    from runyard_operator.gpu import podresources as pr

    grpc: Any = importlib.import_module("grpc")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT / "sdk", ROOT / "operator"))}
    tmp = Path(tempfile.mkdtemp(prefix="hwcheck-"))
    if simulate:
        env[SIM_STATE_ENV] = os.environ[SIM_STATE_ENV] = str(tmp / "gpu-state")
        (tmp / "gpu-state").write_text(f"{time.time()} 0\n")
        env["PYTHONPATH"] = os.pathsep.join([str(SIM_DIR), env["PYTHONPATH"]])
    nv = _nvml(simulate)
    nv.nvmlInit()
    handle = nv.nvmlDeviceGetHandleByIndex(0)
    uuid = _text(nv.nvmlDeviceGetUUID(handle))
    meta: dict[str, Any] = {
        "type": "meta",
        "gpu": _text(nv.nvmlDeviceGetName(handle)),
        "uuid": uuid,
        "driver": _text(nv.nvmlSystemGetDriverVersion()),
        "gpus": int(nv.nvmlDeviceGetCount()),
        "simulated": simulate,
        "ref_hz": REF_HZ,
    }
    listing = {
        "pod_resources": [
            {
                "name": POD,
                "namespace": NAMESPACE,
                "containers": [
                    {"name": CONTAINER, "devices": [{"resource_name": pr.GPU_RESOURCE, "device_ids": [uuid]}]}
                ],
            }
        ]
    }
    kubelet = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pr.add_lister(kubelet, lambda request, context: pr.response_from_json(json.dumps(listing)))
    socket_path = str(tmp / "kubelet.sock")
    kubelet.add_insecure_port(f"unix://{socket_path}")
    kubelet.start()
    port = free_port()
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runyard_operator.gpu.agent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--node-name",
            NODE,
            "--pod-resources-socket",
            socket_path,
            "--interval",
            "1",
        ],
        env=env,
    )
    records: list[dict[str, Any]] = []
    lock = threading.Lock()

    def keep(item: dict[str, Any]) -> None:
        with lock:
            records.append(item)

    def scrape(now: float) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            keep({"type": "page", "t": now, "text": resp.read().decode()})

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and b"runyard_gpu_busy_seconds_total" not in _get(port):
            time.sleep(0.5)
        cpu0, wall0 = _cpu_seconds(agent.pid), time.monotonic()
        reference = _reference(nv, handle)
        stop = threading.Event()
        threads = [
            threading.Thread(target=_every, args=(1 / REF_HZ, stop, lambda now: keep(reference(now))), daemon=True),
            threading.Thread(target=_every, args=(1.0, stop, scrape), daemon=True),
        ]
        for t in threads:
            t.start()
        load = subprocess.run(
            [sys.executable, __file__, "workload", *(["--simulate"] if simulate else [])],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        time.sleep(3)  # the pages after the load ends carry its last seconds
        stop.set()
        for t in threads:
            t.join()
        meta["agent_cpu_seconds"] = _cpu_seconds(agent.pid) - cpu0
        meta["agent_wall_seconds"] = time.monotonic() - wall0
        if load.returncode != 0:
            print(load.stderr, file=sys.stderr)
            return load.returncode
        records += [json.loads(line) for line in load.stdout.splitlines() if line.startswith("{")]
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
        kubelet.stop(None)
        nv.nvmlShutdown()
    records.sort(key=lambda r: (r["t"], r["type"]))
    out.write_text("\n".join(json.dumps(r) for r in [meta, *records]) + "\n")
    print(f"wrote {out}: {len(records)} records", file=sys.stderr)
    return 0


def _get(port: int) -> bytes:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return bytes(resp.read())
    except OSError:
        return b""


# --- evaluation -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    meta: dict[str, Any]
    phases: list[tuple[str, float]]  # (name, start), the last is ("end", t)
    ref: list[dict[str, Any]]
    pages: list[tuple[float, str]]


def load(path: Path) -> Trace:
    """A trace `record` wrote (gzipped where its name ends in .gz)."""
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    items = [json.loads(line) for line in text.splitlines() if line.strip()]
    return Trace(
        meta=next(i for i in items if i["type"] == "meta"),
        phases=[(i["name"], i["t"]) for i in items if i["type"] == "phase"],
        ref=[i for i in items if i["type"] == "ref"],
        pages=[(i["t"], i["text"]) for i in items if i["type"] == "page"],
    )


def windows(trace: Trace) -> Iterator[tuple[str, float, float]]:
    """Each phase mix as if one pod held the GPU for exactly that phase, then the whole load as one allocation."""
    for (name, start), (_, end) in pairwise(trace.phases):
        yield name, start, end
    yield "whole", trace.phases[0][1], trace.phases[-1][1]


def _energy_at(ref: Sequence[dict[str, Any]], t: float) -> float:
    """The energy counter (mJ) at t, interpolated between the reference's readings."""
    times = [r["t"] for r in ref]
    i = min(max(bisect_right(times, t), 1), len(ref) - 1)
    a, b = ref[i - 1], ref[i]
    return float(a["energy_mj"] + (b["energy_mj"] - a["energy_mj"]) * (t - a["t"]) / (b["t"] - a["t"]))


def truth(trace: Trace, start: float, end: float) -> Figures:
    """Utilisation and idle time from the 20 Hz sampler (each reading held until the next); energy from the counter."""
    busy = idle = 0.0
    for here, after in pairwise(trace.ref):
        lo, hi = max(here["t"], start), min(after["t"], end)
        if hi > lo:
            busy += here["util"] * (hi - lo)
            idle += (hi - lo) if here["util"] < IDLE_PERCENT else 0.0
    energy = (_energy_at(trace.ref, end) - _energy_at(trace.ref, start)) / 1000.0
    return Figures(busy / (end - start), idle, energy / (end - start), energy)


def _as_dcgm_exporter(page: str) -> str:
    return "\n".join(line for line in page.splitlines() if "runyard_gpu_" not in line) + "\n"


def replay(trace: Trace, start: float, end: float, interval: float, counters: bool, edges: bool = True) -> Figures:
    """The run's accounting of the window as the operator reads it: an early round `HEAD_READ_SECONDS` after the pod
    starts, regular rounds every `interval` s on the operator's own cadence (never lined up with the pod), and a final
    read `TAIL_READ_SECONDS` after the end. Each read gets the page the agent served then, stamped when it was served.
    `edges=False` leaves out the early and the final read (the operator before them: both edges extrapolated)."""
    pod = PodRef(POD, "uid-0", NODE, 1, start)
    account = RunAccount(NAMESPACE, max_gap=max(3 * interval, 45.0))
    times = [t for t, _ in trace.pages]

    def read(t: float) -> SampleIndex:
        i = bisect_right(times, t)
        if not i:
            return SampleIndex([])
        served, page = trace.pages[i - 1]
        return SampleIndex(parse_exposition(page if counters else _as_dcgm_exporter(page), now=served, node=NODE))

    head = start + HEAD_READ_SECONDS if edges else start
    regular = [start + ROUND_PHASE * interval + k * interval for k in range(int((end - start) / interval) + 1)]
    early = {min(head, end)} if edges else set()
    for t in sorted(early | {r for r in regular if head < r <= end}):
        account.observe([pod], read(t), t)
    account.finish(read(end + TAIL_READ_SECONDS) if edges else SampleIndex([]), end)
    return Figures(account.avg_utilization or 0.0, account.idle_seconds, account.avg_power or 0.0,
                   account.energy_mj / 1000.0)  # fmt: skip


def _idle_error(value: float, reference: float, span: float) -> float:
    # A window with (almost) no idle time: measure the error against the window instead of against ~0 s.
    return pct(value, reference) if reference >= 0.05 * span else 100.0 * (value - reference) / span


def evaluate(trace: Trace, intervals: Sequence[float] = (1.0, 5.0, 15.0)) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    for name, start, end in windows(trace):
        ref = truth(trace, start, end)
        for source in ("counters", "gauges"):
            for interval in intervals:
                got = replay(trace, start, end, interval, source == "counters")
                idle_err = _idle_error(got.idle_seconds, ref.idle_seconds, end - start)
                rows.append(compare(name, source, interval, got, ref, idle_err))
    meta = trace.meta
    wall = float(meta.get("agent_wall_seconds") or 0.0)
    core_pct = (
        100.0 * float(meta.get("agent_cpu_seconds") or 0.0) / wall / max(int(meta.get("gpus", 1)), 1) if wall else None
    )
    summary = {
        "gpu": meta.get("gpu"),
        "driver": meta.get("driver"),
        "simulated": meta.get("simulated"),
        "agent_core_pct_per_gpu": round(core_pct, 3) if core_pct is not None else None,
        "agent_cost_ok": core_pct is not None and core_pct <= AGENT_CORE_PCT,
        "counters_ok": all(r.passed for r in rows if r.source == "counters"),
        "reference_samples": len(trace.ref),
        "pages": len(trace.pages),
    }
    return rows, summary


def table(trace: Trace, rows: Sequence[Row], summary: dict[str, Any]) -> str:
    lines = []
    for name, start, end in windows(trace):
        ref = truth(trace, start, end)
        lines.append(f"truth {name} ({end - start:.0f} s): utilisation {ref.utilization:.2f} %, idle "
                     f"{ref.idle_seconds:.1f} s, power {ref.power_watts:.1f} W, energy {ref.energy_joules:.0f} J")  # fmt: skip
    lines += row_lines(rows, first="window")
    lines.append(json.dumps(summary))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the load, the agent and the 20 Hz reference; write the trace")
    rec.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "hw_trace.jsonl")
    rec.add_argument("--simulate", action="store_true", help="a simulated GPU (bench/gpu/simnvml), no CUDA")
    ev = sub.add_parser("evaluate", help="replay a trace through the accounting at each scrape interval")
    ev.add_argument("trace", type=Path)
    ev.add_argument("--intervals", type=float, nargs="+", default=[1.0, 5.0, 15.0])
    ev.add_argument("--json", type=Path, help="write the rows and the summary here")
    work = sub.add_parser("workload", help=argparse.SUPPRESS)
    work.add_argument("--simulate", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "workload":
        workload(args.simulate)
        return 0
    if args.command == "record":
        return record(args.out, args.simulate)
    trace = load(args.trace)
    rows, summary = evaluate(trace, args.intervals)
    print(table(trace, rows, summary))
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "summary": summary}, indent=1))
    return 0 if summary["counters_ok"] and summary["agent_cost_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
