"""Local sweeps: a TrainingRunSweep's trials as local runs (`runyard sweep run --local`), the same proposals, budget
and parent run as on the cluster; `parallelism` trials at a time."""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from runyard import constants as c
from runyard import sweeps as sw
from runyard.api.sweeps import TrainingRunSweep
from runyard.exceptions import ValidationFailedError
from runyard.local import LocalRunResult, run_local
from runyard.validation import load_manifests


@dataclass
class LocalSweepResult:
    """Outcome of `run_sweep_local`."""

    name: str
    objective: str
    trials: list[sw.TrialRecord]
    results: dict[str, LocalRunResult] = field(default_factory=dict)
    best: sw.TrialRecord | None = None
    message: str = ""
    tracking_uri: str | None = None
    parent_run_id: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.best is not None


def load_sweep(source: TrainingRunSweep | Mapping[str, Any] | str | Path) -> TrainingRunSweep:
    if isinstance(source, TrainingRunSweep):
        return source
    if isinstance(source, Mapping):
        return TrainingRunSweep.model_validate(dict(source))
    docs = load_manifests(source)
    if len(docs) != 1:
        raise ValidationFailedError(f"{source}: expected one TrainingRunSweep, found {len(docs)} documents", [])
    try:
        return TrainingRunSweep.model_validate(docs[0])
    except ValueError as exc:
        raise ValidationFailedError(f"{source}: invalid TrainingRunSweep: {exc}", [str(exc)]) from None


def _history(tracking_uri: str, run_id: str | None, metric: str) -> tuple[tuple[int, float], ...]:
    if not run_id:
        return ()
    from runyard.tracking import mlflow_ops

    client = mlflow_ops.client_for(tracking_uri)
    points = client.get_metric_history(run_id, metric)
    return tuple(sorted((int(m.step), float(m.value)) for m in points))


def run_sweep_local(
    source: TrainingRunSweep | Mapping[str, Any] | str | Path,
    *,
    state_dir: str | Path = c.LOCAL_STATE_DIR,
    tracking_uri: str | None = None,
    cwd: str | Path | None = None,
    on_line: Callable[[str, str], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> LocalSweepResult:
    """Run every trial of a sweep as a local run, `parallelism` at a time, and return the trials and the best one.

    Trials log into one MLflow store (`tracking_uri`, else $MLFLOW_TRACKING_URI, else the embedded store under
    `state_dir`) as children of one parent run named after the sweep. Early stopping is not applied locally.
    """
    from runyard.tracking import mlflow_ops
    from runyard.tracking.local import artifact_location, default_tracking_uri

    sweep = load_sweep(source)
    spec, name = sweep.spec, sweep.metadata.name or "sweep"
    notice = on_notice or (lambda m: None)
    uri = tracking_uri or os.environ.get(c.ENV_MLFLOW_TRACKING_URI) or default_tracking_uri(Path(state_dir))
    client = mlflow_ops.client_for(uri)
    experiment = (spec.trial.tracking.experiment if spec.trial.tracking else None) or name
    # The sweep creates the experiment before any trial: its artifact location is where every trial's files go.
    experiment_id = mlflow_ops.ensure_experiment(client, experiment, artifact_location(Path(state_dir), uri))
    parent = client.create_run(experiment_id, run_name=name, tags={"runyard.sweep": name})
    parent_id = parent.info.run_id
    result = LocalSweepResult(
        name=name, objective=spec.objective.metric, trials=[], tracking_uri=uri, parent_run_id=parent_id
    )
    records: dict[int, sw.TrialRecord] = {}
    running: dict[cf.Future[LocalRunResult], int] = {}
    with cf.ThreadPoolExecutor(max_workers=spec.parallelism) as pool:
        while True:
            step = sw.plan(spec, list(records.values()))
            for index in step.create:
                params = sw.suggest(spec, index, list(records.values()))
                manifest = sw.trial_manifest(name, None, spec, index, params, parent_run_id=parent_id)
                trial = manifest["metadata"]["name"]
                notice(f"trial {trial}: {yaml.safe_dump(params, default_flow_style=True).strip()}")
                records[index] = sw.TrialRecord(index, trial, params)
                future = pool.submit(
                    run_local,
                    manifest,
                    state_dir=state_dir,
                    tracking_uri=uri,
                    tracking=True,
                    cwd=cwd,
                    on_line=on_line,
                    on_notice=on_notice,
                )
                running[future] = index
            if step.done or not running:
                result.message = step.message
                break
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                index = running.pop(future)
                record = records[index]
                try:
                    outcome = future.result()
                except Exception as exc:  # a trial that cannot start is a failed trial, not a failed sweep
                    notice(f"trial {record.name} could not run: {exc}")
                    records[index] = replace(record, state=sw.FAILED)
                    continue
                result.results[record.name] = outcome
                history = _history(uri, outcome.run_id, spec.objective.metric)
                value = history[-1][1] if history else outcome.metrics.get(spec.objective.metric)
                gpu_hours = outcome.gpu.gpu_hours if outcome.gpu is not None else 0.0
                records[index] = replace(
                    record,
                    state=sw.SUCCEEDED if outcome.succeeded else sw.FAILED,
                    value=value,
                    history=history,
                    gpu_hours=gpu_hours,
                )
                notice(
                    f"trial {record.name}: {'succeeded' if outcome.succeeded else 'failed'}, {spec.objective.metric}={value}"
                )
    result.trials = [records[i] for i in sorted(records)]
    result.best = sw.best(spec, result.trials)
    if result.best is not None:
        client.log_param(parent_id, "best_trial", result.best.name)
        for key, value in result.best.params.items():
            client.log_param(parent_id, f"best.{key}", str(value))
        if result.best.value is not None:
            client.log_metric(parent_id, f"best_{spec.objective.metric}", float(result.best.value))
    client.set_terminated(parent_id, "FINISHED" if result.best is not None else "FAILED")
    return result
