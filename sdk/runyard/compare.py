"""Runs side by side: params, final and best metrics, image, command, git commit, GPU-hours, energy and duration.

A `RunRecord` is what one run says about itself: a cluster TrainingRun (its spec and status) or a local run (its
directory's trainingrun.yaml and result.json), completed from its MLflow run (params, metrics, the git tags).
`table` lays records out with one column per run, `plot_overlay` draws chosen metrics of every run in one PNG. Only
`with_mlflow` and `plot_overlay` read MLflow; the rest is pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from runyard import constants as c
from runyard.api import TrainingRun

__all__ = [
    "RunRecord",
    "best_of",
    "plot_overlay",
    "record_from_cluster",
    "record_from_local",
    "records_json",
    "table",
    "with_mlflow",
]

# A metric whose last name part matches is better when lower (loss, error rates, perplexity, times); others higher.
_LOWER_IS_BETTER = re.compile(r"(loss|error|err|perplexity|ppl|mse|mae|rmse|wer|cer|time|latency|seconds)", re.I)
# System metrics (GPU telemetry) and per-rank copies are not the run's own results: left out of the table.
_NOT_RESULTS = re.compile(r"^(system/|rank_\d+/)")
MAX_BEST = 30  # metric histories read per run for the best value


@dataclass(frozen=True)
class RunRecord:
    """One run, as compared: where it came from and what it says."""

    name: str
    source: str  # "cluster" (namespace/name) or "local" (a run directory)
    outcome: str | None = None
    framework: str | None = None
    image: str | None = None
    command: str | None = None
    git_commit: str | None = None
    duration_seconds: float | None = None
    gpu_hours: float | None = None
    energy_kwh: float | None = None
    tracking_uri: str | None = None
    run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def best_of(key: str, values: Sequence[float]) -> float:
    """The best of a metric's values: the lowest for losses, errors and times, else the highest."""
    lower = bool(_LOWER_IS_BETTER.search(key.rsplit("/", 1)[-1]))
    return min(values) if lower else max(values)


def _command(command: Sequence[str] | None, args: Sequence[str] | None) -> str | None:
    words = [*(command or ()), *(args or ())]
    return " ".join(words) if words else None


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def record_from_cluster(run: TrainingRun) -> RunRecord:
    """What a TrainingRun's spec and status say (MLflow is read by `with_mlflow`)."""
    status = run.status
    gpu = status.gpu if status else None
    mlflow = status.tracking.mlflow if status and status.tracking else None
    annotations = run.metadata.annotations or {}
    return RunRecord(
        name=f"{run.metadata.namespace or 'default'}/{run.name}",
        source="cluster",
        outcome=status.phase.value if status and status.phase else None,
        framework=run.spec.framework,
        image=run.spec.image,
        command=_command(run.spec.command, run.spec.args),
        git_commit=annotations.get(c.ANNOTATION_GIT_COMMIT),
        duration_seconds=_seconds(status.start_time, status.completion_time) if status else None,
        gpu_hours=gpu.gpu_hours if gpu else None,
        energy_kwh=gpu.energy_kwh if gpu else None,
        run_id=mlflow.run_id if mlflow else None,
    )


def record_from_local(run_dir: str | Path) -> RunRecord:
    """What a local run's directory says: trainingrun.yaml, result.json (outcome, duration, MLflow ids, GPU use)."""
    import yaml

    base = Path(run_dir)
    info = json.loads((base / "result.json").read_text())
    spec_file = base / "trainingrun.yaml"
    run = TrainingRun.model_validate(yaml.safe_load(spec_file.read_text())) if spec_file.is_file() else None
    gpu = info.get("gpu") or {}
    outcome = "Succeeded" if info.get("succeeded") else ("Failed" if "succeeded" in info else None)
    annotations = (run.metadata.annotations or {}) if run else {}
    return RunRecord(
        name=base.name,  # <name>-<timestamp>: distinct per run, short enough for a column header
        source="local",
        outcome=outcome,
        framework=info.get("framework") or (run.spec.framework if run else None),
        image=run.spec.image if run else None,
        command=_command(run.spec.command, run.spec.args) if run else None,
        git_commit=annotations.get(c.ANNOTATION_GIT_COMMIT),
        duration_seconds=info.get("duration_seconds"),
        gpu_hours=gpu.get("gpu_hours"),
        energy_kwh=gpu.get("energy_kwh"),
        tracking_uri=info.get("tracking_uri"),
        run_id=info.get("run_id"),
    )


def with_mlflow(record: RunRecord, tracking_uri: str | None = None, metrics: Sequence[str] | None = None) -> RunRecord:
    """The record completed from its MLflow run: params, final metrics, best values, the git commit tag."""
    uri = record.tracking_uri or tracking_uri
    if not record.run_id or not uri:
        return record
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    data = client.get_run(record.run_id).data
    final = {k: float(v) for k, v in sorted(data.metrics.items()) if not _NOT_RESULTS.match(k)}
    if metrics:
        final = {k: v for k, v in final.items() if k in metrics}
    best = {}
    for key in list(final)[:MAX_BEST]:
        values = [m.value for m in client.get_metric_history(record.run_id, key)]
        if values:
            best[key] = best_of(key, values)
    return replace(
        record,
        tracking_uri=uri,
        params=dict(sorted(data.params.items())),
        final=final,
        best=best,
        git_commit=record.git_commit or data.tags.get(c.TAG_MLFLOW_GIT_COMMIT),
        image=record.image or data.tags.get(c.TAG_K8S_IMAGE),
    )


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def table(records: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """Headers (`field`, then one per run) and rows: what the runs are, what they cost, their params and metrics.

    A row whose values differ between runs is marked with `*` before its name: the place to look first.
    """
    headers = ["field", *(r.name for r in records)]
    rows: list[list[str]] = []

    def row(name: str, values: Sequence[str]) -> None:
        differs = len(set(values)) > 1
        rows.append([("* " if differs else "  ") + name, *values])

    row("outcome", [r.outcome or "-" for r in records])
    row("framework", [r.framework or "-" for r in records])
    row("image", [r.image or "-" for r in records])
    row("command", [r.command or "-" for r in records])
    row("git commit", [(r.git_commit or "-")[:12] for r in records])
    row("duration", [_duration(r.duration_seconds) for r in records])
    row("GPU-hours", [_number(r.gpu_hours) for r in records])
    row("energy kWh", [_number(r.energy_kwh) for r in records])
    for key in sorted({k for r in records for k in r.params}):
        row(f"param {key}", [r.params.get(key, "-") for r in records])
    for key in sorted({k for r in records for k in r.final}):
        row(f"final {key}", [_number(r.final.get(key)) for r in records])
        row(f"best {key}", [_number(r.best.get(key)) for r in records])
    return headers, rows


def plot_overlay(records: Sequence[RunRecord], metrics: Sequence[str], output: str | Path) -> Path:
    """One panel per metric with every run's curve (value per step), into one PNG; returns its path.

    Raises:
        ValueError: no run logged any of the metrics.
    """
    from mlflow import MlflowClient

    from runyard.plot import panels, save

    curves: dict[str, list[tuple[str, list[tuple[int, float]]]]] = {m: [] for m in metrics}
    for record in records:
        if not record.run_id or not record.tracking_uri:
            continue
        client = MlflowClient(tracking_uri=record.tracking_uri)
        for key in metrics:
            points = sorted((m.step, m.value) for m in client.get_metric_history(record.run_id, key))
            if points:
                curves[key].append((record.name, points))
    shown = [m for m in metrics if curves[m]]
    if not shown:
        raise ValueError(f"no run logged any of {', '.join(metrics)}")
    fig, axes = panels(len(shown), sharex=True)
    for ax, key in zip(axes[:, 0], shown, strict=True):
        for name, points in curves[key]:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, linewidth=1.4, label=name)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("step")
    return save(fig, "runyard compare", output)


def records_json(records: Sequence[RunRecord]) -> str:
    """The records as a JSON list (`runyard compare -o json`)."""
    return json.dumps([r.to_dict() for r in records], indent=2, sort_keys=False)
