"""Typed `artifacts` section of the operator configuration (parsed from OperatorConfig.artifacts)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from runyard import constants as c
from runyard.api.v1alpha1 import ARTIFACT_STORE_PATTERN


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class S3Defaults(_Model):
    """Connection defaults for `s3://` stores; a run's `spec.artifacts.s3` wins field by field."""

    endpoint: str | None = Field(None, description="Endpoint URL as pods reach it (S3-compatible stores).")
    operator_endpoint: str | None = Field(
        None, description="Endpoint URL the operator uses, when it reaches the store under another name than pods."
    )
    region: str | None = Field(None, description="Region of the buckets.")
    credentials_secret: str | None = Field(
        None,
        description=(
            "Secret in each run's namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, for runs that name "
            "none; pods get its keys as env (secretKeyRef). The operator never reads it: it lists manifests with "
            "its own AWS environment (env from its Deployment, workload identity). Unset: the pods' service "
            "account."
        ),
    )


class LogArchiveConfig(_Model):
    """The archive of every rank's log when an attempt ends (s3:// stores; docs/artifacts.md)."""

    enabled: bool = Field(True, description="Archive each rank's log at a gang restart and at the run's end.")
    max_bytes_per_rank: int = Field(
        c.DEFAULT_LOG_ARCHIVE_MAX_BYTES,
        ge=4096,
        description="Bytes kept of one rank's log: a longer log keeps its beginning and its end, marked where cut.",
    )
    timeout_seconds: float = Field(
        c.DEFAULT_LOG_ARCHIVE_TIMEOUT_SECONDS,
        gt=0,
        le=600,
        description="Time one attempt's archive may take (the attempt's Jobs are deleted after it); ranks not "
        "read by then are recorded as such.",
    )


class ArtifactsConfig(_Model):
    """Cluster-wide artifact settings."""

    enabled: bool = Field(True, description="Turn the artifacts plugin off entirely.")
    default_store: str | None = Field(
        None,
        pattern=ARTIFACT_STORE_PATTERN,
        description="Store for runs whose spec names none (`pvc://CLAIM/prefix` or `s3://bucket/prefix`).",
    )
    s3: S3Defaults = Field(default_factory=S3Defaults)
    sync_interval_seconds: int = Field(
        c.DEFAULT_ARTIFACT_SYNC_INTERVAL, ge=1, description="Default seconds between two sidecar sync passes."
    )
    sidecar_image: str = Field(
        c.DEFAULT_ARTIFACT_SYNC_IMAGE,
        min_length=1,
        description="Image of the sync sidecar: python with boto3 and the runyard SDK, a non-root numeric USER.",
    )
    log_to_tracker: bool = Field(True, description="Log the artifact location and manifest to the run's MLflow run.")
    logs: LogArchiveConfig = Field(default_factory=LogArchiveConfig)


def parse_artifacts_config(data: dict[str, Any] | None) -> ArtifactsConfig:
    """Validate the free-form `artifacts` dict of OperatorConfig."""
    return ArtifactsConfig.model_validate(data or {})
