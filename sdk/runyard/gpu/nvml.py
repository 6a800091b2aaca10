"""NVML reader for the node agent and bench/gpu/check_nvml.py; depends on nothing but nvidia-ml-py and the stdlib."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

# nvmlValueType_t -> the nvmlValue_t union member holding it (NVML_VALUE_TYPE_DOUBLE = 0, ...).
_VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


@dataclass(slots=True)
class DeviceReading:
    """One GPU (or, with `gi_id` set, one MIG GPU instance of GPU `uuid`) at `timestamp`, in SI-ish units."""

    index: int
    uuid: str
    name: str
    bus_id: str
    timestamp: float
    utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_watts: float | None = None
    energy_mj: int | None = None
    temperature_c: float | None = None
    gi_id: int | None = None
    mig_profile: str = ""
    mig_uuid: str = ""
    # NVML's buffered utilisation samples newer than the `since` asked for: (seconds, percent). None: no buffer
    # (MIG instances, GPUs or drivers without it); the agent integrates its own polls of `utilization_pct` then.
    utilization_samples: list[tuple[float, float]] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def utilization_points(self) -> list[tuple[float, float]]:
        """What to integrate: NVML's buffered samples, else this reading's own poll (none without utilisation)."""
        if self.utilization_samples is not None:
            return self.utilization_samples
        return [(self.timestamp, self.utilization_pct)] if self.utilization_pct is not None else []


def _text(value: Any) -> str:
    # nvidia-ml-py returns str from functions but bytes from struct char fields (e.g. pciInfo.busId).
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NVMLReader:
    """Reads every GPU through NVML; each unsupported query becomes None instead of an error."""

    def __init__(self, nvml: Any | None = None, clock: Callable[[], float] = time.time) -> None:
        self._nvml = nvml
        self._clock = clock
        self._open = False

    @property
    def nvml(self) -> Any:
        if self._nvml is None:
            self._nvml = importlib.import_module("pynvml")  # the module nvidia-ml-py installs
        return self._nvml

    def open(self) -> None:
        if not self._open:
            self.nvml.nvmlInit()
            self._open = True

    def close(self) -> None:
        if self._open:
            self.nvml.nvmlShutdown()
            self._open = False

    def __enter__(self) -> NVMLReader:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _try(self, fn: Callable[..., Any], *args: Any) -> Any:
        error = getattr(self.nvml, "NVMLError", Exception)
        try:
            return fn(*args)
        except error:
            return None

    def read(self, since: Mapping[str, float] | None = None) -> list[DeviceReading]:
        """Every GPU and MIG instance now; with `since` (GPU UUID -> seconds), also each GPU's buffered utilisation
        samples newer than that (all of the buffer for a GPU not named)."""
        self.open()
        nv = self.nvml
        out: list[DeviceReading] = []
        for i in range(nv.nvmlDeviceGetCount()):
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            reading = self._device(i, handle)
            if since is not None:
                reading.utilization_samples = self._utilization_samples(handle, since.get(reading.uuid, 0.0))
            out.append(reading)
            out.extend(self._mig_instances(i, handle, reading))
        return out

    def _utilization_samples(self, handle: Any, since: float) -> list[tuple[float, float]] | None:
        """NVML's utilisation sample buffer after `since` (seconds); [] when nothing is newer, None when unsupported."""
        nv = self.nvml
        kind = getattr(nv, "NVML_GPU_UTILIZATION_SAMPLES", 1)
        try:
            value_type, samples = nv.nvmlDeviceGetSamples(handle, kind, int(since * 1_000_000))
        except AttributeError:
            return None  # an nvidia-ml-py without nvmlDeviceGetSamples
        except getattr(nv, "NVMLError", Exception) as err:
            # NVML_ERROR_NOT_FOUND: no sample newer than `since` (the buffer is there, nothing new in it).
            if getattr(err, "value", None) == getattr(nv, "NVML_ERROR_NOT_FOUND", 6):
                return []
            return None
        field_name = _VALUE_FIELDS.get(int(value_type), "uiVal")
        return [(int(s.timeStamp) / 1_000_000, float(getattr(s.sampleValue, field_name))) for s in samples]

    def _device(self, index: int, handle: Any) -> DeviceReading:
        nv = self.nvml
        now = self._clock()
        util = self._try(nv.nvmlDeviceGetUtilizationRates, handle)  # not supported on MIG-enabled GPUs
        memory = self._try(nv.nvmlDeviceGetMemoryInfo, handle)
        power_mw = self._try(nv.nvmlDeviceGetPowerUsage, handle)
        energy = self._try(nv.nvmlDeviceGetTotalEnergyConsumption, handle)
        temperature = self._try(nv.nvmlDeviceGetTemperature, handle, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        pci = self._try(nv.nvmlDeviceGetPciInfo, handle)
        return DeviceReading(
            index=index,
            uuid=_text(nv.nvmlDeviceGetUUID(handle)),
            name=_text(self._try(nv.nvmlDeviceGetName, handle) or ""),
            bus_id=_text(pci.busId) if pci is not None else "",
            timestamp=now,
            utilization_pct=float(util.gpu) if util is not None else None,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            power_watts=power_mw / 1000.0 if power_mw is not None else None,  # NVML reports mW
            energy_mj=int(energy) if energy is not None else None,  # mJ since the driver was loaded
            temperature_c=float(temperature) if temperature is not None else None,
        )

    def _mig_instances(self, index: int, handle: Any, parent: DeviceReading) -> list[DeviceReading]:
        nv = self.nvml
        mode = self._try(nv.nvmlDeviceGetMigMode, handle)
        if not mode or mode[0] != getattr(nv, "NVML_DEVICE_MIG_ENABLE", 1):
            return []
        out: list[DeviceReading] = []
        for slot in range(self._try(nv.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
            mig = self._try(nv.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot)
            if mig is None:
                continue  # empty slots raise NVMLError
            memory = self._try(nv.nvmlDeviceGetMemoryInfo, mig)
            name = _text(self._try(nv.nvmlDeviceGetName, mig) or "")
            gi = self._try(nv.nvmlDeviceGetGpuInstanceId, mig)
            out.append(
                DeviceReading(
                    index=index,
                    uuid=parent.uuid,
                    name=parent.name,
                    bus_id=parent.bus_id,
                    timestamp=parent.timestamp,
                    memory_used_bytes=int(memory.used) if memory is not None else None,
                    memory_total_bytes=int(memory.total) if memory is not None else None,
                    # Power and energy belong to the physical GPU; repeated here as the DCGM exporter does.
                    power_watts=parent.power_watts,
                    energy_mj=parent.energy_mj,
                    temperature_c=parent.temperature_c,
                    gi_id=int(gi) if gi is not None else slot,
                    mig_profile=name.rsplit(" ", 1)[-1] if "MIG" in name else "",
                    mig_uuid=_text(self._try(nv.nvmlDeviceGetUUID, mig) or ""),
                )
            )
        return out
