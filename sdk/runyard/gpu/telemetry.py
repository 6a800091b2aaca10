"""GPU telemetry of local runs: the GPUs the replicas can see, read once a second with the node agent's NVML reader.

Utilisation and idle time come from NVML's sample buffer through the same integrator as the node agent
(runyard.gpu.integrator), energy from the GPU's own counter; each pass is handed to a callback as MLflow system
metrics (the names the operator uses for cluster runs), and `stop()` returns the run's summary. No NVML (no
nvidia-ml-py, no driver) or no visible GPU: `GPUTelemetry.start` returns None and nothing is logged.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runyard.gpu.integrator import UtilizationIntegrator, counter_delta
from runyard.gpu.nvml import DeviceReading, NVMLReader

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")

MetricLog = Callable[[int, Mapping[str, float]], None]  # (step: whole seconds since the start, metrics)


def system_metric_keys(
    node: str, gpu: str, utilization: float | None, memory_used_bytes: float | None, power_watts: float | None
) -> dict[str, float]:
    """MLflow's own system-metric names (mlflow/system_metrics/metrics/gpu_monitor.py), with the node as node id."""
    prefix = f"system/{_UNSAFE.sub('_', node) or 'unknown'}/gpu_{gpu}"
    out: dict[str, float] = {}
    if utilization is not None:
        out[f"{prefix}_utilization_percentage"] = utilization
    if memory_used_bytes is not None:
        out[f"{prefix}_memory_usage_megabytes"] = memory_used_bytes / 1e6  # MLflow uses MB, not MiB
    if power_watts is not None:
        out[f"{prefix}_power_usage_watts"] = power_watts
    return out


def visible_gpus(value: str | None) -> set[str] | None:
    """The GPUs CUDA_VISIBLE_DEVICES names (indices or UUIDs); None when unset (all of them)."""
    if value is None:
        return None
    names = {v.strip() for v in value.split(",") if v.strip()}
    return set() if "-1" in names else names


@dataclass
class _GPU:
    integrator: UtilizationIntegrator = field(default_factory=UtilizationIntegrator)
    energy_mj: float = 0.0
    last_energy_mj: float | None = None
    peak_memory_bytes: float | None = None


@dataclass(frozen=True)
class GPUTelemetrySummary:
    """A local run's GPU use: the figures `status.gpu` holds for cluster runs, from the run's wall-clock time."""

    gpus: int
    gpu_hours: float
    avg_utilization: float | None
    idle_gpu_hours: float
    peak_memory_bytes: float | None
    energy_kwh: float
    avg_power_watts: float | None

    def metrics(self) -> dict[str, float]:
        """The run-level metrics the operator logs at a cluster run's end (same names)."""
        out = {"gpu_hours": self.gpu_hours, "gpu_idle_hours": self.idle_gpu_hours, "gpu_energy_kwh": self.energy_kwh}
        extra = {
            "gpu_util_avg_pct": self.avg_utilization,
            "gpu_mem_peak_bytes": self.peak_memory_bytes,
            "gpu_power_avg_watts": self.avg_power_watts,
        }
        return out | {k: v for k, v in extra.items() if v is not None}


class GPUTelemetry:
    """Reads the visible GPUs every `interval` seconds in a daemon thread until `stop()`."""

    def __init__(
        self,
        reader: NVMLReader,
        *,
        node: str,
        visible: set[str] | None = None,
        interval: float = INTERVAL_SECONDS,
        log: MetricLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._node = node
        self._visible = visible
        self._interval = interval
        self._log = log
        self._clock = clock
        self._gpus: dict[str, _GPU] = {}
        self._started = clock()
        self._stopped: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def start(
        cls, *, node: str, cuda_visible_devices: str | None, log: MetricLog | None, nvml: Any = None, **kw: Any
    ) -> GPUTelemetry | None:
        """Begin sampling in a thread, or None when there is nothing to sample (no NVML, no driver, no visible GPU)."""
        visible = visible_gpus(cuda_visible_devices)
        reader = NVMLReader(nvml)
        try:
            telemetry = cls(reader, node=node, visible=visible, log=log, **kw)
            if not telemetry.sample():
                reader.close()
                return None
        except Exception as err:  # ImportError (no nvidia-ml-py), NVMLError (no driver): a CPU-only machine
            logger.debug("no GPU telemetry: %s", err)
            return None
        telemetry._thread = threading.Thread(target=telemetry._loop, name="runyard-gpu-telemetry", daemon=True)
        telemetry._thread.start()
        return telemetry

    def _mine(self, readings: list[DeviceReading]) -> list[DeviceReading]:
        whole = [r for r in readings if r.gi_id is None]
        if self._visible is None:
            return whole
        return [r for r in whole if str(r.index) in self._visible or r.uuid in self._visible]

    def sample(self) -> dict[str, float]:
        """One pass over the visible GPUs: fold it in, log it, and return the metrics it logged ({} without GPUs)."""
        since = {uuid: g.integrator.last_time or 0.0 for uuid, g in self._gpus.items()}
        metrics: dict[str, float] = {}
        for r in self._mine(self._reader.read(since)):
            gpu = self._gpus.setdefault(r.uuid, _GPU())
            gpu.integrator.feed(r.utilization_points())
            if r.memory_used_bytes is not None:
                gpu.peak_memory_bytes = max(gpu.peak_memory_bytes or 0.0, float(r.memory_used_bytes))
            if r.energy_mj is not None:
                if gpu.last_energy_mj is not None:
                    gpu.energy_mj += counter_delta(r.energy_mj, gpu.last_energy_mj)
                gpu.last_energy_mj = float(r.energy_mj)
            metrics |= system_metric_keys(
                self._node, str(r.index), r.utilization_pct, r.memory_used_bytes, r.power_watts
            )
        if metrics and self._log is not None:
            try:
                self._log(int(self._clock() - self._started), metrics)
            except Exception as err:  # a tracker hiccup must not end the sampling, nor the run
                logger.warning("GPU telemetry not logged: %s", err)
        return metrics

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sample()
            except Exception as err:  # the driver went away mid-run: stop quietly, keep what was read
                logger.warning("GPU telemetry stopped: %s", err)
                return

    def stop(self) -> GPUTelemetrySummary:
        """Stop sampling (after one last pass) and summarise the run's GPU use."""
        if self._stopped is None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=10)
            try:
                self.sample()
            except Exception as err:
                logger.debug("last GPU telemetry pass failed: %s", err)
            self._stopped = self._clock()
            self._reader.close()
        seconds = self._stopped - self._started
        gpus = list(self._gpus.values())
        busy = sum(g.integrator.counters.busy_seconds for g in gpus)
        sampled = sum(g.integrator.counters.sampled_seconds for g in gpus)
        idle = sum(g.integrator.counters.idle_seconds for g in gpus)
        energy_mj = sum(g.energy_mj for g in gpus)
        peaks = [g.peak_memory_bytes for g in gpus if g.peak_memory_bytes is not None]
        with_energy = [g for g in gpus if g.last_energy_mj is not None]
        return GPUTelemetrySummary(
            gpus=len(gpus),
            gpu_hours=len(gpus) * seconds / 3600,
            avg_utilization=100.0 * busy / sampled if sampled else None,
            # Idle time as a share of what was sampled, over the GPUs' whole wall-clock time.
            idle_gpu_hours=(idle / sampled) * len(gpus) * seconds / 3600 if sampled else 0.0,
            peak_memory_bytes=max(peaks) if peaks else None,
            energy_kwh=energy_mj / 3.6e9,
            avg_power_watts=(energy_mj / 1000.0) / (len(with_energy) * seconds)
            if with_energy and seconds > 0
            else None,
        )
