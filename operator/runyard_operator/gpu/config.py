"""Typed `gpuMetrics` section of the operator configuration (parsed from OperatorConfig.gpu_metrics)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ExporterEndpoints(_Model):
    """Where the per-node exporters (DCGM exporter or the Runyard agent) listen."""

    namespace: str = Field("gpu-operator", description="Namespace of the exporter's Service.")
    service: str = Field("nvidia-dcgm-exporter", description="Service whose EndpointSlices list one pod per node.")
    port_name: str | None = Field(None, description="EndpointSlice port name (default: the first port).")
    port: int | None = Field(None, description="Port number overriding the EndpointSlice's.")
    scheme: Literal["http", "https"] = "http"
    path: str = "/metrics"
    endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="Static node name -> metrics URL; wins over discovery (tests, external exporters).",
    )
    refresh_seconds: float = Field(60.0, gt=0, description="How often EndpointSlices are listed again.")


class PrometheusSource(_Model):
    """A Prometheus server that scrapes the DCGM exporter."""

    url: str = Field(description="Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.")
    honor_labels: bool = Field(
        False,
        description="True when the ServiceMonitor sets honorLabels (pod/namespace kept); false: exported_pod/exported_namespace.",
    )
    bearer_token_file: str | None = Field(None, description="File with a bearer token for the API.")
    lookback_seconds: float | None = Field(
        None, description="Range of raw samples read per query (default: 4 x interval, at least 60 s)."
    )


class IdleDetection(_Model):
    """When a running run's GPUs count as idle (condition GPUsIdle and an Event)."""

    enabled: bool = True
    threshold_percent: float = Field(5.0, ge=0, le=100, description="Average utilisation below this is idle.")
    after_seconds: float = Field(1800.0, ge=0, description="How long utilisation must stay below the threshold.")


class GPUMetricsConfig(_Model):
    """Per-run GPU metrics: which source, how often, and where results go."""

    enabled: bool = True
    source: Literal["dcgm", "prometheus", "agent"] = Field(
        "dcgm",
        description="dcgm: scrape DCGM exporters; prometheus: query Prometheus; agent: scrape runyard-gpu-agent.",
    )
    interval_seconds: float = Field(15.0, ge=0.2, le=300, description="Sampling period of the operator-wide loop.")
    status_interval_seconds: float = Field(60.0, ge=0, description="Least time between two status.gpu writes of a run.")
    timeout_seconds: float = Field(10.0, gt=0, description="HTTP timeout of one scrape or query.")
    max_gap_seconds: float | None = Field(
        None, description="Samples further apart are a gap, not averaged over (default: 3 x interval)."
    )
    max_concurrency: int = Field(32, ge=1, description="Concurrent scrapes per sampling round.")
    log_to_tracker: bool = Field(True, description="Send per-GPU series and the summary to the run's MLflow run.")
    retain_finished_seconds: float = Field(
        600.0, ge=0, description="How long a finished run keeps its /metrics series."
    )
    dcgm: ExporterEndpoints = Field(default_factory=ExporterEndpoints)
    agent: ExporterEndpoints = Field(
        default_factory=lambda: ExporterEndpoints(namespace="runyard-system", service="runyard-gpu-agent")
    )
    prometheus: PrometheusSource | None = None
    idle: IdleDetection = Field(default_factory=IdleDetection)

    @model_validator(mode="after")
    def _prometheus_needs_url(self) -> GPUMetricsConfig:
        if self.source == "prometheus" and self.prometheus is None:
            raise ValueError("source prometheus needs a `prometheus: {url: ...}` section")
        return self

    @property
    def gap_seconds(self) -> float:
        return self.max_gap_seconds if self.max_gap_seconds is not None else 3 * self.interval_seconds

    @property
    def endpoints(self) -> ExporterEndpoints:
        return self.agent if self.source == "agent" else self.dcgm


def parse_gpu_config(raw: Any) -> GPUMetricsConfig | None:
    """The typed config, or None when the section is absent or disabled."""
    if isinstance(raw, GPUMetricsConfig):
        cfg = raw
    elif not raw:
        return None
    else:
        cfg = GPUMetricsConfig.model_validate(raw)
    return cfg if cfg.enabled else None
