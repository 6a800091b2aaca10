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
    """Where the operator creates runs and what pods get as MLFLOW_TRACKING_URI."""

    tracking_uri: str = Field(description="Tracking server URI as seen from the operator.")
    pod_tracking_uri: str | None = Field(None, description="URI pods use, if different (e.g. a Service DNS name).")
    ui_url: str | None = Field(None, description="Base URL of the MLflow UI for status links.")
    username: SecretKeyRef | None = None
    password: SecretKeyRef | None = None
    token: SecretKeyRef | None = None
    system_metrics: bool = Field(True, description="Enable MLflow system metrics in pods (per-rank node id).")


class TrackingConfig(_Model):
    default_trackers: list[str] = Field(default_factory=list, description="Trackers for runs that name none.")
    mlflow: MLflowConfig | None = None
    extra_env: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Plain env per tracker (e.g. WANDB_BASE_URL), never credentials."
    )
    secret_env: dict[str, dict[str, SecretKeyRef]] = Field(
        default_factory=dict, description="Credential env per tracker, as Secret references."
    )


class OperatorConfig(_Model):
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    gpu_metrics: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, Any] = Field(default_factory=dict)


def load_config(path: str | None) -> OperatorConfig:
    if not path:
        return OperatorConfig()
    data = yaml.safe_load(Path(path).read_text()) or {}
    return OperatorConfig.model_validate(data)
