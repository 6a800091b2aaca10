"""MLflow: every rank joins the one run the operator (or the local runner) created, through MLFLOW_RUN_ID."""

from __future__ import annotations

from typing import ClassVar

from runyard import constants as c
from runyard.trackers.base import TEMPLATE_RANK_LABEL, Rank, TrackerProfile, TrackingPlan


class MLflow(TrackerProfile):
    """Renders the run's coordinates; creating and finishing the run is a lifecycle's job, not the profile's."""

    name = "mlflow"
    id_env = c.ENV_MLFLOW_RUN_ID
    credential_env: ClassVar[tuple[str, ...]] = (
        c.ENV_MLFLOW_TRACKING_USERNAME,
        c.ENV_MLFLOW_TRACKING_PASSWORD,
        c.ENV_MLFLOW_TRACKING_TOKEN,
    )
    reserved_env: ClassVar[tuple[str, ...]] = (
        c.ENV_MLFLOW_RUN_ID,
        c.ENV_MLFLOW_EXPERIMENT_ID,
        c.ENV_MLFLOW_SYSTEM_METRICS_NODE_ID,
    )

    # status_id stays None: status.tracking.mlflow carries the run id next to its experiment.

    def common_env(self, plan: TrackingPlan) -> dict[str, str]:
        m = plan.mlflow
        if m is None:
            return {}
        env = {
            c.ENV_MLFLOW_TRACKING_URI: m.tracking_uri,
            c.ENV_MLFLOW_EXPERIMENT_ID: m.experiment_id,
            c.ENV_MLFLOW_RUN_ID: m.run_id,
            c.ENV_MLFLOW_SYSTEM_METRICS: "true" if m.system_metrics else "false",
        }
        if m.system_metrics and m.system_metrics_interval:
            env[c.ENV_MLFLOW_SYSTEM_METRICS_INTERVAL] = str(m.system_metrics_interval)
        return env

    def rank_env(self, plan: TrackingPlan, rank: Rank | None) -> dict[str, str]:
        if plan.mlflow is None or not plan.mlflow.system_metrics:
            return {}
        # System metrics land under `system/<node id>/...`: one series per rank in the one run.
        return {c.ENV_MLFLOW_SYSTEM_METRICS_NODE_ID: rank.label if rank else TEMPLATE_RANK_LABEL}
