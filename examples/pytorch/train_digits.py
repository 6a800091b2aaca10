"""PyTorch DDP on scikit-learn's bundled digits data: CPU, gloo, MLflow metrics per step, a checkpoint per epoch.

Runs under torchrun (`runyard run --local`, or a Runyard pod) and unchanged as a Kubeflow-style script: the process
group comes from `init_method="env://"`, i.e. WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT. Without WORLD_SIZE it
trains as a single process.

Metrics: rank 0 logs the global (all-reduced) `loss` and `accuracy` per step and `val_accuracy` per epoch; every rank
also logs its own `rank_<r>/loss` and `rank_<r>/accuracy`, so one MLflow run holds every rank's view. MLflow is used
only when MLFLOW_RUN_ID is set (Runyard sets it); each rank joins that run with `mlflow.start_run(run_id=...)`.

Artifacts: rank 0 writes `$RUNYARD_ARTIFACT_DIR/checkpoints/step-<global step>.pt` after each epoch and `model.pt`
at the end; `$RUNYARD_RESUME_FROM` (a checkpoint, a run's directory or store URI, resolved by `runyard.context()`)
resumes at exactly that step (the sampler's order is seeded per epoch, so the batches already trained are skipped).

Checkpoint-aware stop: a suspension, a Kueue preemption, the run's deletion or its deadline sends SIGTERM;
`runyard.should_stop()` turns it into a flag. The ranks agree on it in the same all-reduce as the loss (so all stop
after the same step), rank 0 saves `step-<n>.pt`, and the process exits 143 ("stopped", not "finished").

Fault drills, on the run's first attempt only: with RUNYARD_EXAMPLE_KILL_AT_EPOCH=<n> the last rank SIGKILLs itself
when epoch <n> starts, which a Runyard gang restart recovers from the newest checkpoint; with
RUNYARD_EXAMPLE_HANG_AT_EPOCH=<n> it hangs there instead (a hung collective: every rank goes silent while its process
lives), which `runPolicy.stallTimeoutSeconds` with `restartOnStall` turns into the same restart.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import runyard


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("RUNYARD_EXAMPLE_EPOCHS", "5")))
    parser.add_argument("--lr", type=float, default=float(os.environ.get("RUNYARD_EXAMPLE_LR", "0.05")))
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--backend", default=os.environ.get("RUNYARD_EXAMPLE_BACKEND", "gloo"))
    # Seconds each step waits on top of its work: makes a short run long enough to preempt in a test.
    parser.add_argument("--step-delay", type=float, default=float(os.environ.get("RUNYARD_EXAMPLE_STEP_DELAY", "0")))
    return parser.parse_args()


class Tracker:
    """MLflow when the launcher created a run for us (MLFLOW_RUN_ID), else nothing."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.mlflow: Any = None
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if run_id:
            import mlflow

            # Every rank joins the one run; the launcher (Runyard) gives it its final status.
            mlflow.start_run(run_id=run_id)
            self.mlflow = mlflow

    def log(self, step: int, global_metrics: dict[str, float], local_metrics: dict[str, float]) -> None:
        if self.mlflow is None:
            return
        metrics = {f"rank_{self.rank}/{k}": v for k, v in local_metrics.items()}
        if self.rank == 0:
            metrics.update(global_metrics)
        self.mlflow.log_metrics(metrics, step=step)


def data(rank: int, world_size: int, batch_size: int) -> tuple[DataLoader[Any], torch.Tensor, torch.Tensor]:
    digits = load_digits()  # 1797 8x8 images shipped inside scikit-learn: no download
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    train = TensorDataset(x_train, y_train)
    sampler: DistributedSampler[Any] = DistributedSampler(
        train, num_replicas=world_size, rank=rank, shuffle=True, seed=0, drop_last=True
    )
    return DataLoader(train, batch_size=batch_size, sampler=sampler), x_test, y_test


def save_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> Path:
    """`step-<n>.pt`, written under a temporary name first: the sync sidecar never uploads half a checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:06d}.pt"
    partial = path.with_name(path.name + ".partial")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, partial)
    partial.rename(path)
    return path


def main() -> None:
    args = parse_args()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world_size > 1
    if distributed:
        dist.init_process_group(backend=args.backend, init_method="env://")
    torch.manual_seed(0)
    artifact_dir = Path(os.environ.get("RUNYARD_ARTIFACT_DIR", "artifacts"))
    checkpoints = artifact_dir / "checkpoints"

    loader, x_test, y_test = data(rank, world_size, args.batch_size)
    model: nn.Module = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    step = 0
    resume = runyard.context().resume_from_path()
    if resume is not None and resume.is_file():
        state = torch.load(resume, map_location="cpu")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        print(f"rank {rank}: resumed from {resume} at step {step}", flush=True)
    first_epoch, skip = divmod(step, len(loader))
    ddp = DistributedDataParallel(model) if distributed else model
    loss_fn = nn.CrossEntropyLoss()
    tracker = Tracker(rank)
    runyard.should_stop()  # from here on SIGTERM sets a flag instead of ending the process
    print(f"rank {rank}/{world_size}: {len(loader)} steps per epoch, {args.epochs} epochs", flush=True)

    kill_at = int(os.environ.get("RUNYARD_EXAMPLE_KILL_AT_EPOCH", "0"))
    hang_at = int(os.environ.get("RUNYARD_EXAMPLE_HANG_AT_EPOCH", "0"))
    first_attempt = os.environ.get("RUNYARD_RESTART_ATTEMPT", "0") == "0"
    for epoch in range(first_epoch, args.epochs):
        if kill_at and epoch + 1 == kill_at and first_attempt and rank == world_size - 1:
            print(f"rank {rank}: fault drill, SIGKILL at the start of epoch {kill_at}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if hang_at and epoch + 1 == hang_at and first_attempt and rank == world_size - 1:
            print(f"rank {rank}: fault drill, hanging at the start of epoch {hang_at}", flush=True)
            while True:  # the other ranks wait for it in their next all-reduce: no rank reports progress any more
                time.sleep(3600)
        assert isinstance(loader.sampler, DistributedSampler)
        loader.sampler.set_epoch(epoch)
        ddp.train()
        stopping = False
        for batch, (xb, yb) in enumerate(loader):
            if epoch == first_epoch and batch < skip:
                continue  # trained before the checkpoint this run resumed from
            optimizer.zero_grad()
            logits = ddp(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            optimizer.step()
            # The third value is this rank's stop flag: after the sum, every rank knows whether any was asked to stop.
            local = torch.tensor(
                [loss.item(), (logits.argmax(1) == yb).float().mean().item(), float(runyard.should_stop())]
            )
            total = local.clone()
            if distributed:
                dist.all_reduce(total)  # sum over ranks, then mean
                total[:2] /= world_size
            stopping = total[2].item() > 0
            tracker.log(
                step,
                {"loss": total[0].item(), "accuracy": total[1].item()},
                {"loss": local[0].item(), "accuracy": local[1].item()},
            )
            step += 1
            # status.progress and the PROGRESS/ETA columns (sent at most every few seconds, whatever the loop's pace)
            runyard.report_progress(step, total=args.epochs * len(loader))
            if stopping:
                break
            if args.step_delay:
                time.sleep(args.step_delay)
        if stopping:
            if rank == 0:
                path = save_checkpoint(checkpoints, model, optimizer, step)
                print(f"rank 0: stop requested: saved {path} at step {step}", flush=True)
            if distributed:
                dist.destroy_process_group()
            sys.exit(143)
        ddp.eval()
        with torch.no_grad():
            val_accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(
            f"rank {rank}: epoch {epoch + 1}/{args.epochs} loss {total[0]:.4f} val_accuracy {val_accuracy:.4f}",
            flush=True,
        )
        if rank == 0:
            tracker.log(step - 1, {"val_accuracy": val_accuracy, "epoch": float(epoch + 1)}, {})
            save_checkpoint(checkpoints, model, optimizer, step)

    if rank == 0:
        artifact_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), artifact_dir / "model.pt")
        print(f"rank 0: saved {artifact_dir / 'model.pt'}", flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
