"""Operator configuration (cluster-wide defaults for trackers, GPU metrics and artifacts), loaded from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from runyard_operator.policies.admission import NamespacePolicy, PodPolicy


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

    @field_validator("tracking_uri", "pod_tracking_uri", "ui_url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        # A password in the URI would reach every pod's env and the runs' status in plain text.
        if value and urlsplit(value).password is not None:
            raise ValueError(
                "must not contain credentials (user:password@): use `username`/`password` Secret references for "
                "pods and MLFLOW_TRACKING_USERNAME/PASSWORD in the operator's own environment"
            )
        return value


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


class NamespacesConfig(_Model):
    """Where the operator acts: never in the excluded namespaces; only in labelled ones when `matchLabels` is set."""

    exclude: list[str] = Field(
        default_factory=lambda: ["kube-system", "kube-public", "kube-node-lease"],
        description="Namespaces whose runs are refused (their ServiceAccounts are the cluster's own).",
    )
    exclude_own: bool = Field(
        True,
        description="Also refuse runs in the operator's own namespace ($POD_NAMESPACE), where its ServiceAccount lives.",
    )
    match_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Opt-in: only namespaces with all these labels may run TrainingRuns (e.g. runyard.dev/enabled).",
    )


class PodPolicyConfig(_Model):
    """Host-level powers pod templates (spec.podTemplate, spec.volumes) may request; all off by default."""

    allow_privileged: bool = False
    allow_host_namespaces: bool = Field(False, description="hostNetwork, hostPID and hostIPC.")
    allow_privilege_escalation: bool = False
    allowed_host_paths: list[str] = Field(default_factory=list, description="hostPath prefixes pods may mount.")
    allowed_capabilities: list[str] = Field(default_factory=list, description="Capabilities pods may add.")


class ProgressConfig(_Model):
    """The progress endpoint ranks report to (runyard.log_metrics(step=...)); off while `url` is unset."""

    url: str | None = Field(
        None,
        description="URL pods POST reports to, as they reach the operator (e.g. a Service DNS name and /v1/progress).",
    )
    port: int = Field(8082, ge=1, le=65535, description="Port the operator serves the endpoint on.")
    write_interval_seconds: float = Field(
        30.0, ge=1.0, description="At most one status.progress write per run per this many seconds."
    )
    report_interval_seconds: float = Field(
        10.0, ge=0.5, description="How often a rank may send a report (RUNYARD_PROGRESS_INTERVAL in pods)."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL with a host, got {value!r}")
        if parts.password is not None:
            raise ValueError("must not carry credentials: pods authenticate with a projected ServiceAccount token")
        return value


class OperatorConfig(_Model):
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    gpu_metrics: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, Any] = Field(default_factory=dict)
    namespaces: NamespacesConfig = Field(default_factory=NamespacesConfig)
    pod_policy: PodPolicyConfig = Field(default_factory=PodPolicyConfig)
    progress: ProgressConfig = Field(default_factory=ProgressConfig)

    def namespace_policy(self, own_namespace: str | None) -> NamespacePolicy:
        excluded = set(self.namespaces.exclude)
        if self.namespaces.exclude_own and own_namespace:
            excluded.add(own_namespace)
        return NamespacePolicy(frozenset(excluded), dict(self.namespaces.match_labels))

    def pod_policy_rules(self) -> PodPolicy:
        p = self.pod_policy
        return PodPolicy(
            allow_privileged=p.allow_privileged,
            allow_host_namespaces=p.allow_host_namespaces,
            allow_privilege_escalation=p.allow_privilege_escalation,
            allowed_host_paths=tuple(p.allowed_host_paths),
            allowed_capabilities=tuple(p.allowed_capabilities),
        )


class ConfigError(Exception):
    """The configuration file cannot be read or does not validate; the message names each field and problem."""


def load_config(path: str | None) -> OperatorConfig:
    if not path:
        return OperatorConfig()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return OperatorConfig.model_validate(data)
    except OSError as err:
        raise ConfigError(f"config {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path}: invalid YAML: {err}") from None
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()[:10]
        )
        raise ConfigError(f"config {path}: {problems}") from None
