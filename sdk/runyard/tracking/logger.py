"""A small buffered metric logger that writes to the run's MLflow run with `log_batch` (flushed on size, interval, exit).

Code without any tracker gets tracking with `runyard.log_metrics({...}, step=...)`; code that already uses MLflow
needs nothing from here, because MLFLOW_TRACKING_URI / MLFLOW_RUN_ID are set in every rank.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from runyard import constants as c

logger = logging.getLogger(__name__)

# MLflow accepts at most 1000 metrics per log_batch call.
MAX_BATCH = 1000


class MetricLogger:
    """Buffers metrics and sends them in batches; thread-safe; a no-op (with one warning) without MLflow run."""

    def __init__(
        self,
        *,
        run_id: str | None = None,
        tracking_uri: str | None = None,
        max_buffer: int = 200,
        flush_interval: float = 10.0,
        key_prefix: str = "",
    ) -> None:
        self.run_id = run_id or os.environ.get(c.ENV_MLFLOW_RUN_ID) or None
        self.tracking_uri = tracking_uri or os.environ.get(c.ENV_MLFLOW_TRACKING_URI) or None
        self.max_buffer = max(1, min(max_buffer, MAX_BATCH))
        self.flush_interval = flush_interval
        self.key_prefix = key_prefix
        self._buffer: list[Any] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._client: Any = None
        self._closed = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if self.run_id is None:
            logger.warning("runyard MetricLogger: no MLFLOW_RUN_ID in the environment; metrics are dropped")
        atexit.register(self.close)

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Queue `metrics` (name -> number) at `step` (default 0) with the current time."""
        if not self.enabled or self._closed:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(f"{self.key_prefix}{k}", float(v), now, step or 0) for k, v in metrics.items()]
        with self._lock:
            self._buffer.extend(items)
            full = len(self._buffer) >= self.max_buffer
            due = time.monotonic() - self._last_flush >= self.flush_interval
        self._ensure_thread()
        if full or due:
            self.flush()

    def _ensure_thread(self) -> None:
        # A daemon thread flushes quiet periods, so the tail of a slow loop does not wait for exit.
        if self._thread is None and self.flush_interval > 0:
            self._thread = threading.Thread(target=self._loop, name="runyard-metric-logger", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._wake.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # the training loop must never die for a tracker outage
                logger.warning("runyard MetricLogger: flush failed", exc_info=True)

    def flush(self) -> None:
        """Send everything buffered now (blocking)."""
        with self._lock:
            batch, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
        if not batch or self.run_id is None:
            return
        # Sending happens outside the buffer lock, so the training loop never waits on the network.
        with self._send_lock:
            if self._client is None:
                from mlflow import MlflowClient

                self._client = MlflowClient(tracking_uri=self.tracking_uri)
            for start in range(0, len(batch), MAX_BATCH):
                self._client.log_batch(self.run_id, metrics=batch[start : start + MAX_BATCH])

    def close(self) -> None:
        """Flush and stop; called at interpreter exit too."""
        if self._closed:
            return
        self._wake.set()
        try:
            self.flush()
        finally:
            self._closed = True
            atexit.unregister(self.close)


_default: MetricLogger | None = None
_default_lock = threading.Lock()


def default_logger() -> MetricLogger:
    """The process-wide logger `log_metrics` uses (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MetricLogger()
        return _default


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log `metrics` to this run's tracker through the process-wide MetricLogger (buffered); `step` is also this
    process's progress report (see runyard.progress)."""
    default_logger().log(metrics, step=step)
    if step is not None:
        from runyard.progress import report_progress

        report_progress(step)
