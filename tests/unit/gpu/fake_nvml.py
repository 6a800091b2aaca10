"""A stand-in for the `pynvml` module: two GPUs, one with MIG, errors shaped like nvidia-ml-py's."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801, N818 - nvidia-ml-py's name
    pass


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801, N818 - nvidia-ml-py's name
    pass


NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_GPU_UTILIZATION_SAMPLES = 1
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_ERROR_NOT_FOUND = 6


class NVMLError_NotFound(NVMLError):  # noqa: N801, N818 - nvidia-ml-py's name
    value = NVML_ERROR_NOT_FOUND


@dataclass
class FakeGPU:
    uuid: str
    util: int | None = 50
    used: int = 10 * 2**30
    total: int = 80 * 2**30
    power_mw: int = 300_000
    energy_mj: int = 1_000_000
    mig: list[dict[str, Any]] = field(default_factory=list)
    # NVML's utilisation sample buffer: (microseconds, percent); None: the GPU has none (nvmlDeviceGetSamples fails).
    samples: list[tuple[int, int]] | None = None


class FakeNVML:
    """Module-like object: attribute access mirrors pynvml's function names."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_DEVICE_MIG_ENABLE = NVML_DEVICE_MIG_ENABLE

    def __init__(self, gpus: list[FakeGPU], missing: bool = False) -> None:
        self.gpus = gpus
        self.missing = missing
        self.inits = 0

    def nvmlInit(self) -> None:  # noqa: N802
        if self.missing:
            raise NVMLError_LibraryNotFound("libnvidia-ml.so.1 not found")
        self.inits += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Any:  # noqa: N802
        return ("gpu", i)

    def _gpu(self, h: Any) -> FakeGPU:
        return self.gpus[h[1]]

    def nvmlDeviceGetUUID(self, h: Any) -> str:  # noqa: N802
        if h[0] == "mig":
            return str(self._gpu(h).mig[h[2]]["uuid"])
        return self._gpu(h).uuid

    def nvmlDeviceGetName(self, h: Any) -> str:  # noqa: N802
        if h[0] == "mig":
            return f"NVIDIA H100 80GB HBM3 MIG {self._gpu(h).mig[h[2]]['profile']}"
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:  # noqa: N802
        return SimpleNamespace(busId=f"00000000:{h[1]:02X}:00.0".encode())  # bytes, as nvidia-ml-py's struct fields

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:  # noqa: N802
        gpu = self._gpu(h)
        if gpu.util is None or gpu.mig:
            raise NVMLError_NotSupported("not supported on MIG-enabled GPUs")
        return SimpleNamespace(gpu=gpu.util, memory=10)

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:  # noqa: N802
        if h[0] == "mig":
            m = self._gpu(h).mig[h[2]]
            return SimpleNamespace(used=m["used"], total=m["total"], free=m["total"] - m["used"])
        gpu = self._gpu(h)
        return SimpleNamespace(used=gpu.used, total=gpu.total, free=gpu.total - gpu.used)

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:  # noqa: N802
        return self._gpu(h).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> int:  # noqa: N802
        return self._gpu(h).energy_mj

    def nvmlDeviceGetSamples(self, h: Any, kind: int, since_us: int) -> tuple[int, list[Any]]:  # noqa: N802
        """As nvidia-ml-py: (value type, samples newer than `since_us`); NOT_FOUND when none is newer."""
        buffer = self._gpu(h).samples
        if buffer is None or kind != NVML_GPU_UTILIZATION_SAMPLES:
            raise NVMLError_NotSupported("no sample buffer")
        newer = [
            SimpleNamespace(timeStamp=ts, sampleValue=SimpleNamespace(uiVal=value))
            for ts, value in buffer
            if ts > since_us
        ]
        if not newer:
            raise NVMLError_NotFound("no samples newer than the timestamp")
        return NVML_VALUE_TYPE_UNSIGNED_INT, newer

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:  # noqa: N802
        return 40

    def nvmlDeviceGetMigMode(self, h: Any) -> list[int]:  # noqa: N802
        if not self._gpu(h).mig:
            raise NVMLError_NotSupported("no MIG")
        return [1, 1]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any) -> int:  # noqa: N802
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, slot: int) -> Any:  # noqa: N802
        if slot >= len(self._gpu(h).mig):
            raise NVMLError("empty slot")
        return ("mig", h[1], slot)

    def nvmlDeviceGetGpuInstanceId(self, h: Any) -> int:  # noqa: N802
        return int(self._gpu(h).mig[h[2]]["gi"])
