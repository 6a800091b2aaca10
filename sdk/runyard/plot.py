"""Plot a tracked run's metrics per step (loss and accuracy by default) to a PNG, reading them back from MLflow."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["load_history", "plot_metrics", "plot_run_dir"]

DEFAULT_METRICS = ("loss", "accuracy")
# GPU telemetry (runyard.gpu.telemetry for local runs, the operator's GPU plugin for cluster runs), per node and GPU.
GPU_UTILIZATION = re.compile(r"^system/[^/]+/gpu_\d+(_mig\d+)?_utilization_percentage$")


def load_history(tracking_uri: str, run_id: str, metrics: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) pairs of each metric of an MLflow run, sorted by step; metrics never logged are left out."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    history: dict[str, list[tuple[int, float]]] = {}
    for key in metrics:
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        if points:
            history[key] = points
    return history


def plot_metrics(
    tracking_uri: str,
    run_id: str,
    output: str | Path,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    title: str | None = None,
) -> Path:
    """Write a PNG with one panel per metric (value per step), and one of GPU utilisation per second when the run
    logged GPU telemetry, and return its path.

    Args:
        tracking_uri: MLflow tracking URI of the run.
        run_id: MLflow run id.
        output: PNG path; parent directories are created.
        metrics: metric keys to plot, one panel each; per-rank variants (`rank_<r>/<key>`) are drawn faintly
            in the same panel when they exist.
        title: figure title; default the run id.

    Returns:
        The PNG's path.

    Raises:
        ValueError: none of the metrics was logged in the run.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    all_keys = sorted(client.get_run(run_id).data.metrics)
    wanted = {key: [k for k in all_keys if k.endswith(f"/{key}") and k.startswith("rank_")] for key in metrics}
    gpu_keys = [k for k in all_keys if GPU_UTILIZATION.match(k)]
    history = load_history(tracking_uri, run_id, [*metrics, *(k for ks in wanted.values() for k in ks), *gpu_keys])
    shown = [key for key in metrics if key in history]
    if not shown:
        raise ValueError(f"run {run_id} has none of the metrics {', '.join(metrics)} (it has: {', '.join(all_keys)})")
    gpus = [k for k in gpu_keys if k in history]
    rows = len(shown) + (1 if gpus else 0)
    fig, axes = panels(rows)
    if gpus:
        # GPU telemetry is logged per second of the run, not per training step: its own panel and axis, last.
        ax = axes[-1, 0]
        for key in gpus:
            seconds, values = zip(*history[key], strict=True)
            ax.plot(seconds, values, linewidth=1.2, label=key.removeprefix("system/"))
        ax.set_ylabel("GPU utilisation %")
        ax.set_xlabel("seconds")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    for ax, key in zip(axes[: len(shown), 0], shown, strict=True):
        for rank_key in wanted[key]:
            if rank_key in history:
                steps, values = zip(*history[rank_key], strict=True)
                ax.plot(steps, values, linewidth=0.8, alpha=0.4, label=rank_key)
        steps, values = zip(*history[key], strict=True)
        ax.plot(steps, values, linewidth=1.8, label=key)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[len(shown) - 1, 0].set_xlabel("step")
    return save(fig, title or f"MLflow run {run_id}", output)


def panels(rows: int, *, sharex: bool = False) -> tuple[Any, Any]:
    """A headless figure of `rows` stacked panels (CI and `make demo` have no display): (figure, axes[rows, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, 1, figsize=(8, 3 * rows), sharex=sharex, squeeze=False)


def save(fig: Any, title: str, output: str | Path) -> Path:
    """Title, lay out and write `fig` as a PNG (parent directories created), then free it; returns the path."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_run_dir(
    run_dir: str | Path, output: str | Path | None = None, *, metrics: Sequence[str] = DEFAULT_METRICS
) -> Path:
    """Plot a local run from its directory (`.runyard/runs/<name>-<timestamp>/`, which records the MLflow ids).

    The PNG goes to `<run_dir>/metrics.png` unless `output` says otherwise.

    Raises:
        ValueError: the run was not tracked, or logged none of the metrics.
        FileNotFoundError: `run_dir` is not a local run's directory.
    """
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "result.json").read_text())
    if not info.get("run_id") or not info.get("tracking_uri"):
        raise ValueError(f"{run_dir}: the run was not tracked in MLflow; nothing to plot")
    return plot_metrics(
        info["tracking_uri"],
        info["run_id"],
        output or run_dir / "metrics.png",
        metrics=metrics,
        title=f"{info.get('name', run_dir.name)}: MLflow run {info['run_id']}",
    )
