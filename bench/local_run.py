"""What tracking a local run costs: `runyard run --local` of an example beside the same script under plain torchrun.

Usage: .venv/bin/python bench/local_run.py [--runs 3] [--example examples/pytorch-ddp.yaml] (needs `make
install-examples` for torch). Each round runs, in one directory, one after the other:

- `torchrun --nproc-per-node N script`: the issue's baseline (one agent, N ranks, nothing logged);
- `torchrun` as the run's own layout (one agent per node replica, `--nnodes`), still nothing logged;
- the baseline with MLflow by hand: the run created first in a store of its own, its id handed to every rank, system
  metrics on; the same script then logs what it logs under Runyard (MLflow's own cost, the floor);
- `runyard run --local --no-tracking`: Runyard's launcher, the same layout, no tracker;
- `runyard run --local`: the same, tracked in the embedded MLflow store (the run's params, every rank's metrics per
  step, system metrics, the manifest and the artifacts linked to the run).

Medians of wall time and of CPU (user + system of every process below the command). The tracking overhead is the
tracked run minus the untracked one; the launcher's is the untracked run minus torchrun in the same layout. Appends a
section to bench/RESULTS.md and writes bench/results/<time>-local-run.json. Not asserted in tests: it depends on the
machine; run it on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from runyard.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BASE = "torchrun --nproc-per-node N (baseline)"
LAYOUT = "torchrun, one agent per node replica (the run's layout)"
HAND = "torchrun + MLflow by hand (the floor)"
UNTRACKED = "runyard run --local --no-tracking"
TRACKED = "runyard run --local (MLflow)"


def _timed(argv: list[str] | list[list[str]], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of all descendants) of one command or of commands run together."""
    commands = argv if argv and isinstance(argv[0], list) else [argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # type: ignore[arg-type]
        for cmd in commands
    ]
    for proc, cmd in zip(procs, commands, strict=True):
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{err.decode()[-3000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def cases(spec: dict[str, Any], example: Path) -> dict[str, Any]:
    """The four commands for the example's spec: a PyTorch run of `node` replicas with nprocPerNode ranks each."""
    script_argv = spec["spec"]["command"][1:]  # ["python", "examples/pytorch/x.py", ...] -> the script and its args
    nodes = int(spec["spec"]["replicas"]["node"]["replicas"])
    per_node = int(spec["spec"].get("nprocPerNode") or 1)
    torchrun = [str(BIN / "torchrun")]
    port = free_port()
    layout = [
        [
            *torchrun,
            f"--nnodes={nodes}",
            f"--node-rank={i}",
            f"--nproc-per-node={per_node}",
            "--master-addr=127.0.0.1",
            f"--master-port={port}",
            *script_argv,
        ]
        for i in range(nodes)
    ]
    runyard = [str(BIN / "runyard"), "run", "--local", str(example)]
    # What a user would write to get the same run without Runyard: create the MLflow run first (in a store of its
    # own, next to Runyard's), hand its id to every rank, system metrics on. The floor of tracking with MLflow.
    create = (
        "import mlflow, sys; c = mlflow.MlflowClient(sys.argv[1]); "
        "e = c.get_experiment_by_name('hand') or c.create_experiment('hand'); "
        "e = e.experiment_id if hasattr(e, 'experiment_id') else e; print(c.create_run(e).info.run_id)"
    )
    by_hand = (
        f"set -e; uri=sqlite:///$PWD/hand.db; "
        f'run=$({BIN / "python"} -c "{create}" $uri); '
        f"MLFLOW_TRACKING_URI=$uri MLFLOW_RUN_ID=$run MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true "
        f"{' '.join(torchrun)} --nproc-per-node={nodes * per_node} {' '.join(script_argv)}"
    )
    return {
        BASE: [*torchrun, f"--nproc-per-node={nodes * per_node}", *script_argv],
        LAYOUT: layout,
        HAND: ["bash", "-c", by_hand],
        UNTRACKED: [*runyard, "--no-tracking"],
        TRACKED: runyard,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--example", default="examples/pytorch-ddp.yaml")
    parser.add_argument("--no-record", action="store_true", help="print only; do not touch bench/RESULTS.md")
    args = parser.parse_args()
    example = Path(args.example)
    spec = yaml.safe_load((ROOT / example).read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RUNYARD_"))}
    env |= {e["name"]: e["value"] for e in spec["spec"].get("env", [])}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    samples: dict[str, dict[str, list[float]]] = {}
    first_store: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory(prefix="runyard-local-bench-") as tmp:
        cwd = Path(tmp)
        (cwd / "examples").symlink_to(ROOT / "examples")
        # Round 0 is not counted: it fills the page cache (torch's libraries) and creates the MLflow store, which a
        # project pays once; its tracked run is reported apart.
        for round_ in range(args.runs + 1):
            for label, argv in cases(spec, example).items():
                wall, cpu = _timed(argv, cwd, env)
                shutil.rmtree(cwd / "artifacts", ignore_errors=True)
                print(f"round {round_}: {label:<56} wall {wall:6.2f} s  cpu {cpu:6.2f} s", flush=True)
                if round_ == 0:
                    if label == TRACKED:
                        first_store = (wall, cpu)
                    continue
                got = samples.setdefault(label, {"wall": [], "cpu": []})
                got["wall"].append(wall)
                got["cpu"].append(cpu)
    medians = {k: {m: statistics.median(v) for m, v in s.items()} for k, s in samples.items()}
    base, layout, hand, untracked, tracked = (medians[k] for k in (BASE, LAYOUT, HAND, UNTRACKED, TRACKED))
    rows = [(k, m["wall"], m["cpu"]) for k, m in medians.items()]
    derived = {
        "tracking overhead (tracked - untracked)": {m: tracked[m] - untracked[m] for m in ("wall", "cpu")},
        "launcher overhead (untracked - torchrun in the run's layout)": {
            m: untracked[m] - layout[m] for m in ("wall", "cpu")
        },
        "MLflow's own cost by hand (by hand - baseline)": {m: hand[m] - base[m] for m in ("wall", "cpu")},
        "Runyard's tracking beyond MLflow's (tracking overhead - MLflow's own)": {
            m: (tracked[m] - untracked[m]) - (hand[m] - base[m]) for m in ("wall", "cpu")
        },
        "tracked run / baseline": {m: tracked[m] / base[m] for m in ("wall", "cpu")},
    }
    lines = ["| command | wall s (median) | CPU s (median) |", "|---|---|---|"]
    lines += [f"| {k} | {w:.2f} | {c:.2f} |" for k, w, c in rows]
    lines += [
        f"| {k} | {v['wall']:.2f}{'x' if '/' in k else ''} | {v['cpu']:.2f}{'x' if '/' in k else ''} |"
        for k, v in derived.items()
    ]
    if first_store:
        lines.append(
            f"| first tracked run in a new directory (creates the MLflow store) | {first_store[0]:.2f} | "
            f"{first_store[1]:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.no_record:
        return
    stamp = datetime.now(UTC)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    out = ROOT / "bench" / "results" / f"{stamp:%Y%m%dT%H%M%SZ}-local-run.json"
    out.write_text(json.dumps({"example": str(example), "runs": args.runs, "samples": samples, "derived": derived}))
    with (ROOT / "bench" / "RESULTS.md").open("a") as results:
        results.write(
            f"\n## Local run tracking overhead ({stamp:%Y-%m-%d %H:%M} UTC, {args.example}, median of {args.runs}, "
            f"commit {commit.strip()})\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
