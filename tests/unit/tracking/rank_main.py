"""A training rank for tests: logs into every tracker the injected env selects, with plain client calls."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import runyard


def main() -> int:
    ctx = runyard.context()
    label = ctx.rank_label or f"rank-{ctx.rank}"
    step_base = 10 * ctx.rank
    if "mlflow" in ctx.trackers:
        import mlflow

        # No arguments: MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID / MLFLOW_RUN_ID make this join the shared run.
        with mlflow.start_run():
            mlflow.log_metric(f"rank_marker/{label}", 1.0)
            mlflow.log_metric("loss", 1.0 / (ctx.rank + 1), step=step_base)
            note = Path(os.environ.get("RANK_TMP", ".")) / f"{label}.txt"
            note.write_text(f"hello from {label}\n")
            mlflow.log_artifact(str(note), artifact_path="ranks")
            # Long enough for MLflow's system-metrics sampler to log once (tests set a 1 s interval).
            time.sleep(float(os.environ.get("RANK_SLEEP", "0")))
    if "tensorboard" in ctx.trackers:
        from torch.utils.tensorboard import SummaryWriter

        assert ctx.tensorboard_dir is not None
        writer = SummaryWriter(str(ctx.tensorboard_dir))
        writer.add_scalar("loss", 0.5 + ctx.rank, step_base)
        writer.close()
    if "wandb" in ctx.trackers:
        import wandb

        run = wandb.init()
        run.log({"loss": 0.25 + ctx.rank})
        run.finish()
    if "comet" in ctx.trackers:
        import comet_ml

        experiment = comet_ml.start()
        experiment.log_metric("loss", 0.75 + ctx.rank)
        experiment.end()
    if os.environ.get("RANK_USE_LOGGER"):
        runyard.log_metrics({f"logger/{label}": float(ctx.rank)}, step=1)
    print(f"{label} done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
