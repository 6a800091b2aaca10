"""Distributed XGBoost on scikit-learn's digits data: CPU, Rabit collective, per-round MLflow metrics, one model.

Runs in every `node` replica with Kubeflow Trainer v2's XGBoost env contract (names and values as its xgboost plugin
injects them):

- DMLC_TRACKER_URI   host of replica 0, which runs the Rabit tracker (`127.0.0.1` locally)
- DMLC_TRACKER_PORT  the tracker's port (29500)
- DMLC_NUM_WORKER    how many workers join (the tracker waits for exactly that many)
- DMLC_TASK_ID       this worker's index (0 .. DMLC_NUM_WORKER-1)

XGBoost itself reads none of these from the environment: `collective.init()` takes them as arguments only (without
them it silently trains alone), and only the tracker needs the worker count. So this script passes them on, and the
worker with task id 0 also starts the tracker. Without DMLC_NUM_WORKER it trains as a single process.

Every worker trains on its own shard of the rows; histograms are all-reduced, so all workers build the same trees,
and evaluation metrics are global (computed over every worker's validation shard). The script checks that: rank 0
broadcasts its model's sha256 and every rank compares it with its own (exit 1 when they differ).

Metrics (through `runyard.log_metrics`, i.e. the run's MLflow run when MLFLOW_RUN_ID is set): rank 0 logs the global
`train_mlogloss`, `valid_mlogloss` and `valid_merror` per round; every rank logs its own `rank_<r>/round_seconds`.

Artifacts: rank 0 writes `$RUNYARD_ARTIFACT_DIR/checkpoints/round-<n>.json` every `--checkpoint-every` rounds and
`model.json` at the end; every rank writes `rank-<r>.json` (its shard size, model digest, final metrics).
`$RUNYARD_RESUME_FROM` (a checkpoint, resolved by `runyard.context()`) continues training from that checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import xgboost as xgb
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from xgboost import collective
from xgboost.tracker import RabitTracker

import runyard


def say(text: str) -> None:
    # One write per line: launchers forward every rank's stdout through one pipe, and print()'s separate write of
    # the newline lets another rank's output land in the middle of a line.
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("RUNYARD_EXAMPLE_ROUNDS", "30")))
    parser.add_argument("--max-depth", type=int, default=4)
    parser.add_argument("--eta", type=float, default=0.3)
    # 0 lets XGBoost pick (it honours OMP_NUM_THREADS and the container's CPU quota); set it when several workers
    # share a machine, or they oversubscribe its cores.
    parser.add_argument("--nthread", type=int, default=int(os.environ.get("RUNYARD_EXAMPLE_NTHREAD", "0")))
    parser.add_argument("--checkpoint-every", type=int, default=10)
    # How long a worker keeps trying to reach the tracker: replica 0 may start (pull its image) long after the
    # others, and XGBoost's own retries (dmlc_retry=3) give up after about 6 seconds.
    parser.add_argument(
        "--tracker-wait", type=float, default=float(os.environ.get("RUNYARD_EXAMPLE_TRACKER_WAIT", "300"))
    )
    return parser.parse_args()


class RoundLogger(xgb.callback.TrainingCallback):
    """Per-round metrics into the run's tracker; rounds are numbered from the start of training, resumed or not."""

    def __init__(self, rank: int, first_round: int) -> None:
        self.rank = rank
        self.first_round = first_round
        self.last = time.perf_counter()
        self.final: dict[str, float] = {}

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, Any]]) -> bool:
        now = time.perf_counter()
        step = self.first_round + epoch
        # XGBoost reduces metrics over all workers, so each rank sees the same global values: rank 0 logs them once.
        latest = {f"{data}_{name}": float(vals[-1]) for data, log in evals_log.items() for name, vals in log.items()}
        self.final = latest
        metrics: dict[str, float] = {f"rank_{self.rank}/round_seconds": now - self.last}
        if self.rank == 0:
            metrics.update(latest)
        runyard.log_metrics(metrics, step=step)
        self.last = now
        return False  # False: keep training


class Checkpoints(xgb.callback.TrainingCallback):
    """Rank 0 saves the model every `every` rounds (all ranks hold the same model, one copy is enough)."""

    def __init__(self, directory: Path, every: int, first_round: int) -> None:
        self.directory = directory
        self.every = every
        self.first_round = first_round

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, Any]]) -> bool:
        done = self.first_round + epoch + 1
        if self.every > 0 and done % self.every == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            model.save_model(self.directory / f"round-{done}.json")
        return False


def start_tracker(num_workers: int, port: int) -> RabitTracker:
    """The Rabit tracker, in replica 0's process: it only brokers the workers' ring, then waits for their shutdown.

    It binds 0.0.0.0, because DMLC_TRACKER_URI is the name the *other* replicas use to reach replica 0 (in a
    cluster a DNS name that may not resolve inside replica 0 yet). Ranks are assigned by sorting the task ids
    (`sortby="task"`), so rank = DMLC_TASK_ID (see join); the default sorts by the workers' IP addresses.
    """
    tracker = RabitTracker(n_workers=num_workers, host_ip="0.0.0.0", port=port, sortby="task")
    tracker.start()
    return tracker


def join(task_id: int, deadline: float) -> None:
    """Join the collective, retrying until the tracker answers or `deadline` (time.monotonic()) passes."""
    args: dict[str, Any] = {
        "dmlc_communicator": "rabit",
        "dmlc_tracker_uri": os.environ["DMLC_TRACKER_URI"],
        "dmlc_tracker_port": int(os.environ["DMLC_TRACKER_PORT"]),  # must be an int: a string is rejected
        # Task ids are compared as strings ("10" < "2"); zero-padding makes the tracker's order numeric.
        "dmlc_task_id": f"{task_id:06d}",
    }
    while True:
        try:
            collective.init(**args)
            return
        except xgb.core.XGBoostError as err:
            if time.monotonic() >= deadline:
                raise
            # The message is a chain of "- [file:line|time]: reason" lines, then a C++ backtrace; keep the last reason.
            reasons = [line.split("]: ", 1)[-1] for line in str(err).splitlines() if line.startswith("- [")]
            reason = reasons[-1] if reasons else err
            say(f"task {task_id}: tracker not reachable yet ({reason}); retrying")
            time.sleep(2)


def shard(rank: int, world_size: int) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    digits = load_digits()  # 1797 8x8 images shipped inside scikit-learn: no download
    x_train, x_valid, y_train, y_valid = train_test_split(
        digits.data, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    # Row split: rank r keeps every world_size-th row; validation is sharded too (XGBoost aggregates the metrics).
    return (
        xgb.DMatrix(x_train[rank::world_size], label=y_train[rank::world_size]),
        xgb.DMatrix(x_valid[rank::world_size], label=y_valid[rank::world_size]),
    )


def main() -> int:
    args = parse_args()
    num_workers = int(os.environ.get("DMLC_NUM_WORKER", "1"))
    task_id = int(os.environ.get("DMLC_TASK_ID", "0"))
    distributed = num_workers > 1
    tracker = None
    if distributed:
        if task_id == 0:
            tracker = start_tracker(num_workers, int(os.environ["DMLC_TRACKER_PORT"]))
        join(task_id, time.monotonic() + args.tracker_wait)
    rank, world_size = collective.get_rank(), collective.get_world_size()
    if distributed and (world_size != num_workers or not collective.is_distributed()):
        say(f"task {task_id}: joined a world of {world_size}, expected {num_workers}")
        return 1
    say(f"task {task_id}: rank {rank}/{world_size} on {collective.get_processor_name()}")

    artifact_dir = Path(os.environ.get("RUNYARD_ARTIFACT_DIR", "artifacts"))
    dtrain, dvalid = shard(rank, world_size)
    params = {
        "objective": "multi:softprob",
        "num_class": 10,
        "eval_metric": ["mlogloss", "merror"],
        "tree_method": "hist",  # the distributed CPU algorithm (histograms all-reduced across workers)
        "max_depth": args.max_depth,
        "eta": args.eta,
        "nthread": args.nthread,
        "seed": 0,
    }
    resume = runyard.context().resume_from_path()
    first_round = 0
    start_model: xgb.Booster | None = None
    if resume is not None and resume.is_file():
        start_model = xgb.Booster(model_file=str(resume))
        first_round = start_model.num_boosted_rounds()
        say(f"rank {rank}: resumed from {resume} after round {first_round}")
    round_logger = RoundLogger(rank, first_round)
    callbacks: list[xgb.callback.TrainingCallback] = [round_logger]
    if rank == 0:
        callbacks.append(Checkpoints(artifact_dir / "checkpoints", args.checkpoint_every, first_round))
    say(f"rank {rank}: {dtrain.num_row()} training rows, rounds {first_round + 1}..{args.rounds}")
    started = time.perf_counter()
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=max(0, args.rounds - first_round),
        evals=[(dtrain, "train"), (dvalid, "valid")],
        xgb_model=start_model,
        callbacks=callbacks,
        verbose_eval=False,
    )
    elapsed = time.perf_counter() - started

    # All ranks must hold the same model: compare each rank's digest with rank 0's.
    digest = hashlib.sha256(bytes(booster.save_raw("json"))).hexdigest()
    rank0_digest = collective.broadcast(digest, 0) if distributed else digest
    same = digest == rank0_digest
    final = round_logger.final
    say(
        f"rank {rank}: {booster.num_boosted_rounds()} rounds in {elapsed:.2f}s, "
        f"valid_merror {final.get('valid_merror', float('nan')):.4f} "
        f"valid_mlogloss {final.get('valid_mlogloss', float('nan')):.4f}, "
        f"model sha256 {digest[:16]} {'matches rank 0' if same else 'DIFFERS from rank 0'}"
    )
    artifact_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"rank": rank, "task_id": task_id, "world_size": world_size}
    summary.update({"train_rows": int(dtrain.num_row()), "model_sha256": digest, "matches_rank0": same})
    summary.update({"seconds": elapsed, "final": final})
    (artifact_dir / f"rank-{rank}.json").write_text(json.dumps(summary, indent=1))
    if rank == 0:
        booster.save_model(artifact_dir / "model.json")
        say(f"rank 0: saved {artifact_dir / 'model.json'}")

    if distributed:
        collective.finalize()
    if tracker is not None:
        # Every worker has finalized (shut down) once training ends, so this returns at once; the bound only
        # stops a lost worker from keeping replica 0 alive forever.
        tracker.wait_for(timeout=60)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
