"""A simulated one-GPU `pynvml` for hardware_check.py's dry run: utilisation follows the load's own busy/idle log.

The load appends "<unix time> <percent>" to $RUNYARD_SIM_GPU_STATE at each change. Like an H100/H200, utilisation is
sampled every 200 ms (the mean over the 200 ms before; kept 14 s in the sample buffer), power is 70 W + 5.5 W per
percent of the last 20 ms, and the energy counter integrates that power. Only what Runyard's reader and the check call.
"""

# ruff: noqa: N802 - nvidia-ml-py's function names

from __future__ import annotations

import os
import time
from bisect import bisect_right
from types import SimpleNamespace
from typing import Any

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_GPU_UTILIZATION_SAMPLES = 1
NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_ENABLE = 1
SAMPLE = 0.2
BUFFER = 14.0
IDLE_W, W_PER_PCT = 70.0, 5.5
UUID = "GPU-51301a7e-0000-4000-8000-000000000000"


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


def _log() -> tuple[list[float], list[float]]:
    times, values = [], []
    with open(os.environ["RUNYARD_SIM_GPU_STATE"]) as f:
        lines = f.read().splitlines()
    for line in lines:
        t, v = line.split()
        times.append(float(t))
        values.append(float(v))
    return times, values


def _integral(times: list[float], values: list[float], a: float, b: float) -> float:
    """∫ percent dt over [a, b], the log's values held until the next change."""
    total, i = 0.0, max(bisect_right(times, a) - 1, 0)
    while i < len(times) and times[i] < b:
        lo, hi = max(times[i], a), min(times[i + 1] if i + 1 < len(times) else b, b)
        total += values[i] * max(hi - lo, 0.0)
        i += 1
    return total


def _mean(a: float, b: float) -> float:
    times, values = _log()
    return _integral(times, values, a, b) / (b - a)


def nvmlInit() -> None:
    _log()


def nvmlShutdown() -> None:
    pass


def nvmlSystemGetDriverVersion() -> str:
    return "simulated"


def nvmlDeviceGetCount() -> int:
    return 1


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    return index


def nvmlDeviceGetUUID(handle: int) -> str:
    return UUID


def nvmlDeviceGetName(handle: int) -> str:
    return "Simulated GPU"


def nvmlDeviceGetPciInfo(handle: int) -> Any:
    return SimpleNamespace(busId=b"00000000:01:00.0")


def nvmlDeviceGetMemoryInfo(handle: int) -> Any:
    return SimpleNamespace(used=1 << 30, total=80 << 30, free=79 << 30)


def nvmlDeviceGetTemperature(handle: int, sensor: int) -> int:
    return 40


def nvmlDeviceGetMigMode(handle: int) -> Any:
    raise NVMLError(NVML_ERROR_NOT_SUPPORTED)


def nvmlDeviceGetUtilizationRates(handle: int) -> Any:
    k = int(time.time() / SAMPLE)
    return SimpleNamespace(gpu=round(_mean((k - 1) * SAMPLE, k * SAMPLE)), memory=0)


def nvmlDeviceGetSamples(handle: int, kind: int, since_us: int) -> tuple[int, list[Any]]:
    now = time.time()
    first = max(since_us / 1e6, now - BUFFER)
    k, samples = int(first / SAMPLE) + 1, []
    while k * SAMPLE <= now:
        value = round(_mean((k - 1) * SAMPLE, k * SAMPLE))
        samples.append(SimpleNamespace(timeStamp=int(k * SAMPLE * 1e6), sampleValue=SimpleNamespace(uiVal=value)))
        k += 1
    if not samples:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return 1, samples  # NVML_VALUE_TYPE_UNSIGNED_INT


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    now = time.time()
    return int(1000 * (IDLE_W + W_PER_PCT * _mean(now - 0.02, now)))


def nvmlDeviceGetTotalEnergyConsumption(handle: int) -> int:
    times, values = _log()
    now = time.time()
    joules = IDLE_W * (now - times[0]) + W_PER_PCT * _integral(times, values, times[0], now)
    return int(joules * 1000)
