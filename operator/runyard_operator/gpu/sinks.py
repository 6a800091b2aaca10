"""Where per-run GPU series and summaries go: a MetricSink interface and its MLflow implementation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from runyard.gpu.telemetry import system_metric_keys
from runyard_operator.gpu.accounting import Point

logger = logging.getLogger(__name__)

MLFLOW_BATCH = 1000  # MlflowClient.log_batch accepts at most 1000 metrics per call


def mlflow_keys(point: Point) -> dict[str, float]:
    """MLflow's own system-metric names, with the node as node id (the names local runs log too)."""
    return system_metric_keys(point.node, point.gpu, point.utilization, point.memory_used_bytes, point.power_watts)


class MetricSink(Protocol):
    """Receives a run's GPU time series during the run and its summary at the end."""

    async def log_series(self, run_id: str, points: Sequence[Point], step: int) -> None: ...

    async def log_summary(self, run_id: str, summary: Mapping[str, float], when: float) -> None: ...


class MLflowSink:
    """Writes through `MlflowClient.log_batch` in a worker thread; failures are logged, never raised."""

    def __init__(self, tracking_uri: str, client: Any = None) -> None:
        self._uri = tracking_uri
        self._client = client

    def _get_client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self._uri)
        return self._client

    def _log(self, run_id: str, metrics: list[tuple[str, float, int, int]]) -> None:
        from mlflow.entities import Metric

        client = self._get_client()
        for i in range(0, len(metrics), MLFLOW_BATCH):
            chunk = metrics[i : i + MLFLOW_BATCH]
            client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in chunk])

    async def _send(self, run_id: str, metrics: list[tuple[str, float, int, int]]) -> None:
        if not metrics:
            return
        try:
            await asyncio.to_thread(self._log, run_id, metrics)
        except Exception as err:  # a tracker outage must not stop sampling
            logger.warning("gpu: logging %d metrics to MLflow run %s failed: %s", len(metrics), run_id, err)

    async def log_series(self, run_id: str, points: Sequence[Point], step: int) -> None:
        metrics = [(key, value, int(p.time * 1000), step) for p in points for key, value in mlflow_keys(p).items()]
        await self._send(run_id, metrics)

    async def log_summary(self, run_id: str, summary: Mapping[str, float], when: float) -> None:
        await self._send(run_id, [(k, float(v), int(when * 1000), 0) for k, v in summary.items()])
