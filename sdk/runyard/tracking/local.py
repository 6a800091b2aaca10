"""Tracking for local runs (`runyard run --local`): one MLflow run created before any rank starts, env per rank.

Without any configuration the run goes into an embedded store, `sqlite:///<state_dir>/mlflow.db` with artifacts
under `<state_dir>/mlartifacts`, so tracking works on a fresh machine. The experiment and run are created here,
in the parent, before ranks start: concurrent first use of one sqlite file races on schema migrations.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runyard import constants as c
from runyard.api.v1alpha1 import TrainingRun
from runyard.trackers.mlflow import MLflow
from runyard.tracking import env as tenv
from runyard.tracking import mlflow_ops
from runyard.tracking.mlflow_ops import TerminalStatus
from runyard.tracking.tags import run_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Local runs track into MLflow when the run names no tracker: it is the one backend that works offline.
LOCAL_DEFAULT_TRACKERS: tuple[str, ...] = (MLflow.name,)


def default_tracking_uri(state_dir: Path) -> str:
    """`sqlite:///<absolute state_dir>/mlflow.db` (four slashes for an absolute path)."""
    return f"sqlite:///{Path(state_dir).resolve() / c.LOCAL_MLFLOW_DB}"


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def artifact_location(state_dir: Path, uri: str) -> str | None:
    """Where a new experiment in a local store keeps its artifacts: under `state_dir`, never MLflow's default
    `./mlruns` of whatever directory the command ran in. None for a remote server (it has its own root)."""
    return (Path(state_dir).resolve() / c.LOCAL_MLFLOW_ARTIFACTS).as_uri() if _is_local_store(uri) else None


def run_url(tracking_uri: str, experiment_id: str, run_id: str, ui_url: str | None = None) -> str:
    """A link to the run: `<ui>/#/experiments/<exp>/runs/<run>`, or how to serve a local store and where to look."""
    base = ui_url or (tracking_uri if tracking_uri.startswith(("http://", "https://")) else None)
    path = f"#/experiments/{experiment_id}/runs/{run_id}"
    if base:
        return f"{base.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {tracking_uri}  # then open http://127.0.0.1:5000/{path}"


@dataclass
class LocalTracking:
    """The tracked run of one local execution; hand `env` and `rank_env(...)` to every rank process."""

    plan: tenv.TrackingPlan
    tracking_uri: str | None
    experiment_id: str | None
    run_id: str | None
    url: str | None
    env: dict[str, str] = field(default_factory=dict)
    _finished: bool = False

    @property
    def ids(self) -> dict[str, str]:
        """Ids of the run in every selected tracker (MLflow included)."""
        ids = tenv.tracker_ids(self.plan)
        if self.run_id:
            ids["mlflow"] = self.run_id
        return ids

    def rank_env(self, role: str, index: int, global_rank: int) -> dict[str, str]:
        """Per-rank additions (MLFLOW_SYSTEM_METRICS_NODE_ID, WANDB_X_LABEL, RUNYARD_TENSORBOARD_DIR...)."""
        return tenv.rank_env(self.plan, tenv.Rank(role, index, global_rank))

    def _client(self) -> MlflowClient:
        assert self.tracking_uri is not None
        return mlflow_ops.client_for(self.tracking_uri)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log metrics into the run (MLflow) at `step`, now; without an MLflow run, nothing."""
        if not self.run_id or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self._client().log_batch(self.run_id, metrics=batch)

    def finish(self, status: TerminalStatus) -> None:
        """Give the MLflow run its terminal status (FINISHED, FAILED or KILLED); later calls change it again."""
        if status not in mlflow_ops.TERMINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(mlflow_ops.TERMINAL_STATUSES)}, not {status!r}")
        self._finished = True
        if self.run_id:
            mlflow_ops.terminate(self._client(), self.run_id, status)

    def final_metrics(self) -> dict[str, float]:
        """Latest value of every metric the ranks logged (empty without MLflow)."""
        if not self.run_id:
            return {}
        return mlflow_ops.latest_metrics(self._client(), self.run_id)


def start_local_tracking(
    run: TrainingRun,
    *,
    state_dir: Path,
    tracking_uri: str | None = None,
    trackers: Sequence[str] | None = None,
    output_dir: Path | None = None,
    system_metrics: bool = True,
) -> LocalTracking:
    """Create the experiment and run (MLflow) and render the env every rank gets.

    Tracking URI: `tracking_uri`, else env MLFLOW_TRACKING_URI, else the embedded sqlite store in `state_dir`.
    Trackers: `trackers`, else `spec.tracking.trackers`, else MLflow. Per-rank directories (TensorBoard, W&B,
    outputs) go under `output_dir` (default `state_dir`). A run without `metadata.uid` gets a fresh one.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    uid = run.metadata.uid or str(uuid.uuid4())
    if trackers is not None:
        chosen = tenv.normalize_trackers(trackers)
    else:
        chosen = tenv.selected_trackers(run, LOCAL_DEFAULT_TRACKERS)
    out = str(Path(output_dir).resolve() if output_dir else state_dir)

    uri: str | None = None
    experiment_id = run_id = url = None
    target: tenv.MLflowTarget | None = None
    if MLflow.name in chosen:
        uri = tracking_uri or os.environ.get(c.ENV_MLFLOW_TRACKING_URI) or default_tracking_uri(state_dir)
        artifacts = artifact_location(state_dir, uri)
        client = mlflow_ops.client_for(uri)
        params = dict(run.spec.tracking.params or {}) if run.spec.tracking else {}
        ref = mlflow_ops.ensure_run(
            client,
            experiment=tenv.experiment_name(run),
            uid=uid,
            run_name=tenv.tracker_run_name(run),
            tags=run_tags(run, uid),
            params=params,
            artifact_location=artifacts,
        )
        experiment_id, run_id = ref.experiment_id, ref.run_id
        url = run_url(uri, experiment_id, run_id)
        target = tenv.MLflowTarget(uri, experiment_id, run_id, system_metrics=system_metrics)
    plan = tenv.plan_for(run, chosen, run_uid=uid, mlflow=target, output_dir=out)
    return LocalTracking(
        plan=plan,
        tracking_uri=uri,
        experiment_id=experiment_id,
        run_id=run_id,
        url=url,
        env=tenv.common_env(plan),
    )
