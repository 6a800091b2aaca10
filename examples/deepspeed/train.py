"""DeepSpeed data-parallel training on scikit-learn's digits data: CPU, gloo, ZeRO stage 1, fp32, MLflow metrics.

Runs under any of DeepSpeed's launchers, and the process group comes from whichever env that launcher gives:
- `deepspeed --num_gpus N train.py` (one host) and the pdsh launcher start the ranks through
  `deepspeed.launcher.launch`, which sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (and passes
  `--local_rank`, which the parser accepts and ignores);
- `deepspeed --launcher openmpi --hostfile H train.py` (Runyard's launcher + SSH workers) runs `mpirun`, which sets
  only OMPI_COMM_WORLD_*; `deepspeed.init_distributed` then finds rank, world size and rank 0's address through
  mpi4py (`mpi_discovery`: MASTER_ADDR = rank 0's `hostname -I`, MASTER_PORT = the port passed in).
Without a launcher it trains as a single process.

On CPU, DeepSpeed's accelerator (DS_ACCELERATOR=cpu, or detected when torch sees no GPU) picks the `ccl` backend if
oneccl_bindings_for_pytorch is installed and `gloo` otherwise. The optimizer is plain torch SGD: DeepSpeed's own
CPU optimizers (DeepSpeedCPUAdam) are C++ ops it would compile on first use. `zero_allow_untested_optimizer` in
ds_config.json lets ZeRO shard a torch optimizer's state.

Metrics (through `runyard.log_metrics`, i.e. the run's MLflow run when MLFLOW_RUN_ID is set): rank 0 logs the global,
all-reduced `loss` and `accuracy` per step and `val_accuracy` per epoch; every rank logs `rank_<r>/loss` and
`rank_<r>/accuracy`. At the end every rank checks that its weights equal the average over ranks (exit 1 if not).

Artifacts: every rank calls `engine.save_checkpoint` into `$RUNYARD_ARTIFACT_DIR/checkpoints` each epoch (a
collective: rank 0 writes the model states and `latest`, and under ZeRO each rank its optimizer shard, into its own
artifact directory); rank 0 also writes `model.pt`, a plain state_dict that loads without DeepSpeed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import deepspeed
import deepspeed.comm as dist
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import runyard

DEFAULT_CONFIG = Path(__file__).with_name("ds_config.json")


def say(text: str) -> None:
    # One write per line: launchers forward every rank's stdout through one pipe, and print()'s separate write of
    # the newline lets another rank's output land in the middle of a line.
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("RUNYARD_EXAMPLE_EPOCHS", "5")))
    parser.add_argument("--lr", type=float, default=float(os.environ.get("RUNYARD_EXAMPLE_LR", "0.05")))
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="DeepSpeed config (JSON)")
    parser.add_argument("--zero-stage", type=int, default=None, help="override the config's ZeRO stage (0 or 1)")
    # deepspeed.launcher.launch appends --local_rank=<n>; the env (LOCAL_RANK) says the same, so it is unused.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def data(rank: int, world_size: int, batch_size: int) -> tuple[DataLoader[Any], torch.Tensor, torch.Tensor]:
    digits = load_digits()  # 1797 8x8 images shipped inside scikit-learn: no download
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    train = TensorDataset(x_train, y_train)
    # Our own sampler rather than deepspeed.initialize(training_data=...): its loader never reshuffles per epoch.
    sampler: DistributedSampler[Any] = DistributedSampler(
        train, num_replicas=world_size, rank=rank, shuffle=True, seed=0, drop_last=True
    )
    return DataLoader(train, batch_size=batch_size, sampler=sampler), x_test, y_test


def weights_agree(model: nn.Module, world_size: int) -> bool:
    """True when this rank's weights equal the mean over all ranks, i.e. data parallelism kept the replicas in step."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    mean = flat.clone()
    dist.all_reduce(mean)
    mean /= world_size
    return bool(torch.allclose(flat, mean, atol=1e-6))


def skip_shm_comm_op() -> None:
    """Keep DeepSpeed's CPU backend from JIT-compiling its shared-memory all-reduce op when it starts.

    On the CPU accelerator, DeepSpeed's torch backend builds `deepspeed_shm_comm` (C++, via ninja and the torch
    extension cache) in `init_distributed`: about a minute on a small machine, and a crash where the image has no
    C++ compiler. Only `inference_all_reduce` uses it; training all-reduces through gloo. Marking the op
    incompatible makes DeepSpeed skip it. RUNYARD_EXAMPLE_DS_SHM_COMM=1 keeps it (an image that pre-built it with
    DS_BUILD_SHM_COMM=1, or one with a compiler).
    """
    if os.environ.get("RUNYARD_EXAMPLE_DS_SHM_COMM") == "1":
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def main() -> int:
    args = parse_args()
    config = json.loads(args.config.read_text())
    if args.zero_stage is not None:
        config.setdefault("zero_optimization", {})["stage"] = args.zero_stage
    skip_shm_comm_op()
    # No backend named: the accelerator's choice (gloo on CPU without oneccl, nccl on CUDA) unless overridden.
    # Under mpirun, MPI discovery sets MASTER_PORT to `distributed_port` (the launcher's --master_port never
    # reaches the ranks), so a MASTER_PORT in the pods' env is passed on; 29500 otherwise, as DeepSpeed's default.
    deepspeed.init_distributed(
        dist_backend=os.environ.get("RUNYARD_EXAMPLE_BACKEND") or None,
        distributed_port=int(os.environ.get("MASTER_PORT", "29500")),
    )
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.manual_seed(0)  # the same initial weights on every rank
    artifact_dir = Path(os.environ.get("RUNYARD_ARTIFACT_DIR", "artifacts"))

    loader, x_test, y_test = data(rank, world_size, int(config["train_micro_batch_size_per_gpu"]))
    model: nn.Module = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    loss_fn = nn.CrossEntropyLoss()
    say(
        f"rank {rank}/{world_size} (local {local_rank}): backend {torch.distributed.get_backend()}, master "
        f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}, "
        f"ZeRO stage {engine.zero_optimization_stage()}, {len(loader)} steps per epoch, {args.epochs} epochs"
    )

    step = 0
    for epoch in range(args.epochs):
        assert isinstance(loader.sampler, DistributedSampler)
        loader.sampler.set_epoch(epoch)
        engine.train()
        for xb, yb in loader:
            logits = engine(xb)
            loss = loss_fn(logits, yb)
            engine.backward(loss)  # the engine all-reduces (and, under ZeRO, partitions) the gradients
            engine.step()
            local = torch.tensor([loss.item(), (logits.argmax(1) == yb).float().mean().item()])
            total = local.clone()
            dist.all_reduce(total)  # sum over ranks, then mean
            total /= world_size
            metrics = {f"rank_{rank}/loss": local[0].item(), f"rank_{rank}/accuracy": local[1].item()}
            if rank == 0:
                metrics.update({"loss": total[0].item(), "accuracy": total[1].item()})
            runyard.log_metrics(metrics, step=step)
            step += 1
        engine.eval()
        with torch.no_grad():
            val_accuracy = (engine(x_test).argmax(1) == y_test).float().mean().item()
        say(f"rank {rank}: epoch {epoch + 1}/{args.epochs} loss {total[0]:.4f} val_accuracy {val_accuracy:.4f}")
        if rank == 0:
            runyard.log_metrics({"val_accuracy": val_accuracy, "epoch": float(epoch + 1)}, step=step - 1)
        # Collective: every rank must call it, even those that write nothing.
        engine.save_checkpoint(str(artifact_dir / "checkpoints"), tag=f"epoch-{epoch + 1}")

    same = weights_agree(engine.module, world_size)
    say(f"rank {rank}: weights {'agree' if same else 'DIFFER'} across {world_size} ranks")
    if rank == 0:
        artifact_dir.mkdir(parents=True, exist_ok=True)
        torch.save(engine.module.state_dict(), artifact_dir / "model.pt")
        say(f"rank 0: saved {artifact_dir / 'model.pt'}")
    dist.barrier()
    dist.destroy_process_group()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
