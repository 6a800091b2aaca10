"""Operator configuration (cluster-wide defaults for trackers, GPU metrics and artifacts), loaded from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SecretKeyRef(_Model):
    """A key of a Secret in the run's namespace; the value reaches pods only through `secretKeyRef`."""

    name: str
    key: str


class MLflowConfig(_Model):
    """Where the operator creates runs and what pods get as MLFLOW_TRACKING_URI.

    The operator authenticates with its own environment (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN from its
    Deployment); the Secret references below only reach pods, as `secretKeyRef`, so no Secret value ever passes
    through the operator.
    """

    tracking_uri: str = Field(description="Tracking server URI as seen from the operator.")
    pod_tracking_uri: str | None = Field(None, description="URI pods use, if different (e.g. a Service DNS name).")
    ui_url: str | None = Field(None, description="Base URL of the MLflow UI for status links.")
    username: SecretKeyRef | None = None
    password: SecretKeyRef | None = None
    token: SecretKeyRef | None = None
    system_metrics: bool = Field(
        False,
        description=(
            "Enable MLflow system metrics in pods (per-rank node id). Off by default: MLflow then refuses to start "
            "a run in images without psutil, which would crash training code that never asked for it."
        ),
    )
    system_metrics_interval: int | None = Field(
        None, ge=1, description="MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL in pods (seconds); MLflow's default if unset."
    )
    artifact_location: str | None = Field(
        None, description="Artifact root of experiments the operator creates; the server's default if unset."
    )


class TrackingConfig(_Model):
    """Cluster-wide tracking defaults; a run's `spec.tracking.trackers` overrides `defaultTrackers`."""

    default_trackers: list[str] = Field(
        default_factory=list,
        description="Trackers for runs that name none; empty means [mlflow] when `mlflow` is configured.",
    )
    mlflow: MLflowConfig | None = None
    extra_env: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Plain env per tracker (e.g. WANDB_BASE_URL), never credentials."
    )
    secret_env: dict[str, dict[str, SecretKeyRef]] = Field(
        default_factory=dict, description="Credential env per tracker, as Secret references."
    )
    sweep_interval_seconds: float = Field(
        60.0,
        gt=0,
        description="How often finished runs whose MLflow run still lacks its terminal status are re-checked.",
    )
    sweep_batch: int = Field(50, ge=1, description="Most MLflow runs checked per sweep (bounds load after restarts).")

    def effective_defaults(self) -> list[str]:
        if self.default_trackers:
            return list(self.default_trackers)
        return ["mlflow"] if self.mlflow else []


class OperatorConfig(_Model):
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    gpu_metrics: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, Any] = Field(default_factory=dict)


def load_config(path: str | None) -> OperatorConfig:
    if not path:
        return OperatorConfig()
    data = yaml.safe_load(Path(path).read_text()) or {}
    return OperatorConfig.model_validate(data)
