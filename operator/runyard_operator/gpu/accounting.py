"""Attribution of GPU samples to a run's pods and the run's accounting: GPU-hours, utilisation, memory, power, energy.

GPU-hours come from allocation intervals (pod start to pod end, per GPU), never from samples, so an allocated GPU that
nobody uses still counts. Utilisation, idle time and power come from counter deltas between scrapes where the source
has counters (Runyard's node agent: busy/idle/sampled seconds, energy), so they do not depend on the scrape interval;
from a source with gauges only (a plain DCGM exporter) they are time-weighted means of point readings with gaps left
out, and the summary says `estimated`. The operator reads the node when a pod starts and when the run ends, so the
edges of an allocation are short; what is left of them (its start to the first sample, the last sample to its end)
takes the rate of the adjacent interval instead of being dropped. Energy is the sum of deltas of each
physical GPU's mJ counter, counting a counter reset as a new segment.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runyard.gpu.integrator import IDLE_PERCENT, counter_delta
from runyard_operator.gpu.parser import GPUSample
from runyard_operator.timestamps import Precision, format_time, parse_epoch

IDLE_SAMPLE_PERCENT = IDLE_PERCENT  # GPUSummary.idleGpuHours: "GPU-hours with utilisation below 5 percent"
MIG_SLICES = 7  # compute slices of A100/H100-class parts; "1g.10gb" is 1/7 of a GPU
MAX_CLOSED_ALLOCATIONS = 128  # closed intervals kept in status for the record; their seconds stay in the total
# Milliseconds: resuming from status recomputes open intervals from these stamps, so whole seconds would drift.
STAMP: Precision = "ms"
_MIG_PROFILE = re.compile(r"^(\d+)g\.")


def mig_fraction(profile: str) -> float:
    match = _MIG_PROFILE.match(profile or "")
    return min(int(match.group(1)) / MIG_SLICES, 1.0) if match else 1.0


@dataclass(frozen=True, slots=True)
class PodRef:
    """The parts of a run's pod that attribution needs."""

    name: str
    uid: str
    node: str
    gpus: int
    start: float | None = None


@dataclass(slots=True)
class Allocation:
    """One GPU (or MIG instance) held by one pod from `start` to `end`; `device` is empty until a sample names it."""

    pod: str
    pod_uid: str
    node: str
    device: str
    start: float
    end: float | None = None
    index: str = ""
    mig_profile: str = ""
    energy_mj: float | None = None
    # Where the first interval's rate is to be extrapolated back to (the allocation's start); None once done, and for
    # allocations resumed from status (their head was accounted before the restart).
    head_from: float | None = None

    @property
    def uuid(self) -> str:
        return self.device.split("/", 1)[0]

    @property
    def fraction(self) -> float:
        return mig_fraction(self.mig_profile)

    def seconds(self, now: float) -> float:
        end = now if self.end is None else min(self.end, now)
        return max(end - self.start, 0.0) * self.fraction

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pod": self.pod,
            "podUid": self.pod_uid,
            "node": self.node,
            "device": self.device,
            "start": format_time(self.start, STAMP),
        }
        if self.index:
            out["index"] = self.index
        if self.mig_profile:
            out["migProfile"] = self.mig_profile
        if self.end is not None:
            out["end"] = format_time(self.end, STAMP)
        if self.energy_mj is not None and self.end is None:
            out["energyMj"] = self.energy_mj
        return out

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> Allocation | None:
        start = parse_epoch(raw.get("start"))
        if start is None:
            return None
        energy = raw.get("energyMj")
        return cls(
            pod=str(raw.get("pod", "")),
            pod_uid=str(raw.get("podUid", "")),
            node=str(raw.get("node", "")),
            device=str(raw.get("device", "")),
            start=start,
            end=parse_epoch(raw.get("end")),
            index=str(raw.get("index", "")),
            mig_profile=str(raw.get("migProfile", "")),
            energy_mj=float(energy) if energy is not None else None,
        )


class SampleIndex:
    """One round's samples, indexed so each run finds its own without scanning everything."""

    def __init__(self, samples: Iterable[GPUSample]) -> None:
        self.by_pod: dict[tuple[str, str], list[GPUSample]] = defaultdict(list)
        self.by_uid: dict[str, list[GPUSample]] = defaultdict(list)
        self.by_device: dict[str, list[GPUSample]] = defaultdict(list)
        for s in samples:
            if s.pod:
                self.by_pod[(s.namespace, s.pod)].append(s)
            if s.pod_uid:
                self.by_uid[s.pod_uid].append(s)
            self.by_device[s.key].append(s)


@dataclass(frozen=True, slots=True)
class _Rates:
    """One interval's rates: mean utilisation (percent), share of time idle, mean power (W), to extend to an edge."""

    utilization: float | None = None
    idle: float = 0.0
    power: float | None = None
    energy: bool = False  # power came from the energy counter: the edge's energy is counted too


@dataclass(slots=True)
class _Last:
    time: float
    utilization: float | None
    power: float | None
    busy: float | None = None
    idle: float | None = None
    sampled: float | None = None
    energy_mj: float | None = None
    rates: _Rates | None = None


def _rewind(s: GPUSample, end: float, prev: _Last) -> GPUSample | None:
    """The counters of `s` as they stood at `end` (before `s.time`), taking out the time since at the gauges of `s`:
    busy at its utilisation, idle when that is below the idle threshold, energy at its power. Point readings are
    dropped, as they describe a moment after the end. None where a counter went back (a reset): nothing to rewind."""
    if s.time <= end:
        return s
    now = (s.busy_seconds, s.idle_seconds, s.sampled_seconds)
    before = (prev.busy, prev.idle, prev.sampled)
    if any(a is None or b is None or a < b for a, b in zip(now, before, strict=True)):
        return None
    busy, idle, sampled = (float(x or 0.0) for x in now)
    busy0, idle0, sampled0 = (float(x or 0.0) for x in before)
    after = s.time - end
    util = s.utilization or 0.0
    energy = s.energy_mj
    if energy is not None and prev.energy_mj is not None and energy >= prev.energy_mj:
        energy = max(energy - (s.power_watts or 0.0) * after * 1000.0, prev.energy_mj)
    return replace(
        s,
        time=end,
        utilization=None,
        memory_used_bytes=None,
        power_watts=None,
        energy_mj=energy,
        busy_seconds=max(busy - after * util / 100.0, busy0),
        idle_seconds=max(idle - (after if util < IDLE_SAMPLE_PERCENT else 0.0), idle0),
        sampled_seconds=max(sampled - after, sampled0),
    )


@dataclass
class Point:
    """One tracker data point of one device (MLflow system-metric naming is applied by the sink)."""

    node: str
    gpu: str
    time: float
    utilization: float | None
    memory_used_bytes: float | None
    power_watts: float | None


@dataclass
class RunAccount:
    """Everything accumulated for one run; serialises to and from `status.gpu` so a restart resumes it."""

    namespace: str
    max_gap: float = 45.0
    closed_gpu_seconds: float = 0.0
    util_weighted: float = 0.0  # sum of utilisation x GPU-seconds over sampled time
    sampled_seconds: float = 0.0
    power_weighted: float = 0.0
    power_seconds: float = 0.0
    idle_seconds: float = 0.0
    peak_utilization: float | None = None
    peak_memory_bytes: float | None = None
    energy_mj: float = 0.0
    energy_estimated: bool = False
    estimated: bool = False  # utilisation, idle time or power came from point gauges (no counters at the source)
    samples: int = 0
    last_sample_time: float | None = None
    allocations: list[Allocation] = field(default_factory=list)
    current_utilization: float | None = None  # fraction-weighted mean of the latest round, for idle detection
    _last: dict[str, _Last] = field(default_factory=dict)

    # --- attribution ----------------------------------------------------------------------------------------

    def open_allocations(self) -> list[Allocation]:
        return [a for a in self.allocations if a.end is None]

    def names_pod(self, pod_uid: str) -> bool:
        """Whether a sample has named a GPU of the pod (a placeholder slot from its GPU request does not count)."""
        return any(a.pod_uid == pod_uid and a.device for a in self.allocations)

    def known_devices(self) -> set[str]:
        return {a.uuid for a in self.open_allocations() if a.device}

    def _close(self, alloc: Allocation, at: float) -> None:
        alloc.end = max(at, alloc.start)
        self.closed_gpu_seconds += alloc.seconds(alloc.end)
        last = self._last.pop(alloc.device, None)
        if last is not None and last.rates is not None:
            # The tail, from the last sample to the end, at the rate of the last interval.
            self._extrapolate(min(max(alloc.end - last.time, 0.0), self.max_gap), alloc.fraction, last.rates)

    def _extrapolate(self, span: float, frac: float, rates: _Rates) -> None:
        if span <= 0:
            return
        if rates.utilization is not None:
            self.util_weighted += rates.utilization * span * frac
            self.sampled_seconds += span * frac
            self.idle_seconds += rates.idle * span * frac
        if rates.power is not None:
            self.power_weighted += rates.power * span * frac
            self.power_seconds += span * frac
            if rates.energy:
                self.energy_mj += rates.power * span * 1000.0 * frac

    def close_all(self, at: float) -> None:
        for alloc in self.open_allocations():
            self._close(alloc, at)
        self._trim()

    def finish(self, index: SampleIndex, end: float) -> None:
        """Close every interval at `end`, first folding a read of the node agent's counters taken at (or just after)
        the end, so the tail from the last round to the end is measured instead of extrapolated.

        The read is matched by device UUID alone, as the pod (and its labels) may be gone by then. Whatever the
        counters gained after `end` is taken out at the read's own gauges, which describe that moment: the pod has
        ended, so the GPU's state then is the post-end state, not the interval's mean. A source without counters
        (a plain DCGM exporter) keeps the extrapolated tail.
        """
        readings: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for alloc in self.open_allocations():
            prev = self._last.get(alloc.device) if alloc.device else None
            if prev is None or prev.time >= end:
                continue
            fresh = [s for s in index.by_device.get(alloc.device, []) if s.time > prev.time and s.has_counters]
            if not fresh:
                continue
            at_end = _rewind(min(fresh, key=lambda x: x.time), end, prev)  # the first read after the last round
            if at_end is None or not self._fold(alloc, at_end):
                continue
            if at_end.energy_mj is not None and alloc.uuid not in readings:  # MIG: one reading per physical GPU
                readings[alloc.uuid].append((at_end.time, at_end.energy_mj))
        self._fold_energy(readings)
        self.close_all(end)

    def _trim(self) -> None:
        closed = [a for a in self.allocations if a.end is not None]
        if len(closed) > MAX_CLOSED_ALLOCATIONS:
            drop = {id(a) for a in sorted(closed, key=lambda a: a.end or 0.0)[: len(closed) - MAX_CLOSED_ALLOCATIONS]}
            self.allocations = [a for a in self.allocations if id(a) not in drop]

    def _attribute(self, pods: Sequence[PodRef], index: SampleIndex) -> dict[str, list[tuple[PodRef, GPUSample]]]:
        by_uid = {p.uid: p for p in pods}
        found: dict[str, list[tuple[PodRef, GPUSample]]] = defaultdict(list)
        for pod in pods:
            for s in index.by_pod.get((self.namespace, pod.name), []) + index.by_uid.get(pod.uid, []):
                if s.pod_uid and s.pod_uid != pod.uid:
                    continue  # same name, other incarnation of the pod
                found[s.key].append((pod, s))
        # Exporters sometimes drop the pod labels (#342): a device we already hold is still ours by UUID.
        for alloc in self.open_allocations():
            holder = by_uid.get(alloc.pod_uid)
            if not alloc.device or holder is None or alloc.device in found:
                continue
            same = index.by_device.get(alloc.device, [])
            unowned = [s for s in same if not s.has_owner]
            if unowned:
                found[alloc.device].extend((holder, s) for s in unowned)
            elif same:
                # Only other pods are named (and not ours, or `found` would have it): the device moved.
                self._close(alloc, max(s.time for s in same))
        return found

    def _allocation_for(self, pod: PodRef, sample: GPUSample, now: float) -> Allocation:
        for alloc in self.open_allocations():
            if alloc.pod_uid == pod.uid and alloc.device == sample.key:
                return alloc
        start = pod.start if pod.start is not None else now
        if not sample.gi_id:
            # A whole GPU: claim a placeholder slot opened from the pod's GPU request, keeping its start time.
            for alloc in self.open_allocations():
                if alloc.pod_uid == pod.uid and not alloc.device:
                    alloc.device, alloc.index, alloc.node = sample.key, sample.index, pod.node or sample.node
                    alloc.head_from = alloc.start
                    return alloc
        alloc = Allocation(
            pod=pod.name,
            pod_uid=pod.uid,
            node=pod.node or sample.node,
            device=sample.key,
            start=start,
            index=sample.index,
            mig_profile=sample.mig_profile,
            head_from=start,
        )
        self.allocations.append(alloc)
        return alloc

    # --- one sampling round -------------------------------------------------------------------------------------

    def observe(self, pods: Sequence[PodRef], index: SampleIndex, now: float) -> list[Point]:
        """Fold one round into the account; `pods` are the run's running pods. Returns new tracker points."""
        live = {p.uid: p for p in pods}
        for alloc in self.open_allocations():
            if alloc.pod_uid not in live:
                self._close(alloc, now)
        found = self._attribute(pods, index)
        points: list[Point] = []
        energy_by_uuid: dict[str, list[tuple[float, float]]] = defaultdict(list)
        latest: dict[str, tuple[float, float]] = {}  # device -> (utilization, fraction) of the newest sample
        for device, pairs in found.items():
            seen: set[float] = set()
            for pod, s in sorted(pairs, key=lambda ps: ps[1].time):
                if s.time in seen:
                    continue
                seen.add(s.time)
                alloc = self._allocation_for(pod, s, now)
                if alloc.end is not None:
                    continue
                if self._fold(alloc, s):
                    points.append(
                        Point(
                            node=alloc.node,
                            gpu=f"{s.index}_mig{s.gi_id}" if s.gi_id else s.index,
                            time=s.time,
                            utilization=s.utilization,
                            memory_used_bytes=s.memory_used_bytes,
                            power_watts=s.power_watts,
                        )
                    )
                    if s.utilization is not None:
                        latest[device] = (s.utilization, alloc.fraction)
                    if s.energy_mj is not None:
                        energy_by_uuid[s.uuid].append((s.time, s.energy_mj))
        self._fold_energy(energy_by_uuid)
        self._ensure_slots(pods, now)
        self._trim()
        weight = sum(f for _, f in latest.values())
        self.current_utilization = sum(u * f for u, f in latest.values()) / weight if weight else None
        if points:
            self.last_sample_time = max(p.time for p in points)
        return points

    def _fold(self, alloc: Allocation, s: GPUSample) -> bool:
        prev = self._last.get(alloc.device)
        if prev is not None and s.time <= prev.time:
            return False  # Prometheus hands back samples we already folded
        self.samples += 1
        frac = alloc.fraction
        if s.utilization is not None:
            self.peak_utilization = max(self.peak_utilization or 0.0, s.utilization)
        if s.memory_used_bytes is not None:
            self.peak_memory_bytes = max(self.peak_memory_bytes or 0.0, s.memory_used_bytes)
        power = s.power_watts  # MIG instances report their parent's draw: weighted by the slice below
        rates = None
        if prev is not None:
            rates = _Rates(**self._fold_utilization(prev, s, frac), **self._fold_power(prev, s, frac))
            if rates.utilization is None and rates.power is None:
                rates = None
            elif alloc.head_from is not None:
                # The head, from the allocation's start to its first sample, at the rate of the first interval.
                self._extrapolate(min(max(prev.time - alloc.head_from, 0.0), self.max_gap), frac, rates)
                alloc.head_from = None
        self._last[alloc.device] = _Last(
            s.time, s.utilization, power, s.busy_seconds, s.idle_seconds, s.sampled_seconds, s.energy_mj, rates
        )
        return True

    def _fold_utilization(self, prev: _Last, s: GPUSample, frac: float) -> dict[str, Any]:
        """Busy and idle time between two samples: counter deltas where both have them, else the gauges' trapezoid."""
        if s.has_counters and prev.busy is not None and prev.idle is not None and prev.sampled is not None:
            sampled = counter_delta(s.sampled_seconds or 0.0, prev.sampled)
            if sampled <= 0:
                return {}
            busy = min(counter_delta(s.busy_seconds or 0.0, prev.busy), sampled)
            idle = min(counter_delta(s.idle_seconds or 0.0, prev.idle), sampled)
            self.util_weighted += 100.0 * busy * frac
            self.sampled_seconds += sampled * frac
            self.idle_seconds += idle * frac
            return {"utilization": 100.0 * busy / sampled, "idle": idle / sampled}
        dt = s.time - prev.time
        if dt > self.max_gap or s.utilization is None or prev.utilization is None:
            return {}
        self.estimated = True
        mean = (s.utilization + prev.utilization) / 2
        idle = 1.0 if mean < IDLE_SAMPLE_PERCENT else 0.0
        self.util_weighted += mean * dt * frac
        self.sampled_seconds += dt * frac
        self.idle_seconds += idle * dt * frac
        return {"utilization": mean, "idle": idle}

    def _fold_power(self, prev: _Last, s: GPUSample, frac: float) -> dict[str, Any]:
        """Mean power between two samples: Δenergy/Δt where both read the energy counter, else the gauges' trapezoid."""
        dt = s.time - prev.time
        if s.energy_mj is not None and prev.energy_mj is not None and dt > 0:
            joules = counter_delta(s.energy_mj, prev.energy_mj) / 1000.0
            self.power_weighted += joules * frac
            self.power_seconds += dt * frac
            return {"power": joules / dt, "energy": True}
        if dt > self.max_gap or s.power_watts is None or prev.power is None:
            return {}
        self.estimated = True
        mean = (s.power_watts + prev.power) / 2
        self.power_weighted += mean * dt * frac
        self.power_seconds += dt * frac
        return {"power": mean}

    def _fold_energy(self, readings: Mapping[str, list[tuple[float, float]]]) -> None:
        """Counter deltas per physical GPU; MIG instances repeat their parent's counter, so each GPU counts once."""
        for uuid, values in readings.items():
            holders = [a for a in self.open_allocations() if a.uuid == uuid]
            if not holders:
                continue
            share = min(sum(a.fraction for a in holders), 1.0)
            if share < 1.0:
                self.energy_estimated = True  # other tenants share this GPU's counter
            baseline = next((a.energy_mj for a in holders if a.energy_mj is not None), None)
            for _, value in sorted(set(values)):
                if baseline is not None:
                    self.energy_mj += counter_delta(value, baseline) * share
                baseline = value
            for a in holders:
                a.energy_mj = baseline

    def _ensure_slots(self, pods: Sequence[PodRef], now: float) -> None:
        """Open one interval per requested GPU at the pod's start, even before (or without) any sample naming it."""
        for pod in pods:
            whole = [a for a in self.open_allocations() if a.pod_uid == pod.uid and not a.mig_profile]
            start = pod.start if pod.start is not None else now
            for _ in range(pod.gpus - len(whole)):
                self.allocations.append(
                    Allocation(pod=pod.name, pod_uid=pod.uid, node=pod.node, device="", start=start)
                )

    # --- results ------------------------------------------------------------------------------------------------

    def gpu_seconds(self, now: float) -> float:
        return self.closed_gpu_seconds + sum(a.seconds(now) for a in self.open_allocations())

    def allocated(self) -> float:
        return sum(a.fraction for a in self.open_allocations())

    @property
    def avg_utilization(self) -> float | None:
        return self.util_weighted / self.sampled_seconds if self.sampled_seconds else None

    @property
    def avg_power(self) -> float | None:
        return self.power_weighted / self.power_seconds if self.power_seconds else None

    def summary(self, now: float) -> dict[str, Any]:
        """`status.gpu` (camelCase, rounded so unchanged values do not cause writes)."""
        out: dict[str, Any] = {
            "gpuHours": round(self.gpu_seconds(now) / 3600, 9),
            "idleGpuHours": round(self.idle_seconds / 3600, 9),
            "sampledGpuHours": round(self.sampled_seconds / 3600, 9),
            "energyKWh": round(self.energy_mj / 3.6e9, 12),
            "samples": self.samples,
            "allocations": [a.to_status() for a in self.allocations],
            "lastSampleTime": format_time(now, STAMP),
        }
        optional = {
            "avgUtilization": self.avg_utilization,
            "peakUtilization": self.peak_utilization,
            "peakMemoryBytes": self.peak_memory_bytes,
            "avgPowerWatts": self.avg_power,
        }
        out |= {k: round(v, 3) for k, v in optional.items() if v is not None}
        if self.energy_estimated:
            out["energyEstimated"] = True
        if self.estimated:
            out["estimated"] = True
        return out

    def tracker_summary(self, now: float) -> dict[str, float]:
        """Run-level metrics for the tracker at the end (names from the research notes)."""
        out = {
            "gpu_hours": self.gpu_seconds(now) / 3600,
            "gpu_idle_hours": self.idle_seconds / 3600,
            "gpu_energy_kwh": self.energy_mj / 3.6e9,
        }
        extra = {
            "gpu_util_avg_pct": self.avg_utilization,
            "gpu_util_peak_pct": self.peak_utilization,
            "gpu_mem_peak_bytes": self.peak_memory_bytes,
            "gpu_power_avg_watts": self.avg_power,
        }
        out |= {k: v for k, v in extra.items() if v is not None}
        return out

    @classmethod
    def from_status(cls, namespace: str, raw: Mapping[str, Any] | None, max_gap: float) -> RunAccount:
        """Resume from `status.gpu`: totals as written, open intervals continue, counters resume from their baselines."""
        account = cls(namespace=namespace, max_gap=max_gap)
        if not raw:
            return account
        allocations = [a for a in (Allocation.from_status(x) for x in raw.get("allocations") or []) if a]
        as_of = parse_epoch(raw.get("lastSampleTime"))
        open_seconds = sum(a.seconds(as_of) for a in allocations if a.end is None) if as_of else 0.0
        account.allocations = allocations
        account.closed_gpu_seconds = max(float(raw.get("gpuHours") or 0.0) * 3600 - open_seconds, 0.0)
        account.sampled_seconds = float(raw.get("sampledGpuHours") or 0.0) * 3600
        account.util_weighted = float(raw.get("avgUtilization") or 0.0) * account.sampled_seconds
        account.power_seconds = account.sampled_seconds
        account.power_weighted = float(raw.get("avgPowerWatts") or 0.0) * account.power_seconds
        account.idle_seconds = float(raw.get("idleGpuHours") or 0.0) * 3600
        account.energy_mj = float(raw.get("energyKWh") or 0.0) * 3.6e9
        account.energy_estimated = bool(raw.get("energyEstimated"))
        account.estimated = bool(raw.get("estimated"))
        account.samples = int(raw.get("samples") or 0)
        account.last_sample_time = as_of
        if raw.get("peakUtilization") is not None:
            account.peak_utilization = float(raw["peakUtilization"])
        if raw.get("peakMemoryBytes") is not None:
            account.peak_memory_bytes = float(raw["peakMemoryBytes"])
        return account
