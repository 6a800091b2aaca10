"""DCGM exporter series -> GPU samples: exposition text (exporter or agent) and Prometheus API results alike."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# Exporters print "not supported"/blank fields as int64 sentinels (e.g. 9223372036854775794) before 4.5.2: missing.
SENTINEL_MIN = 9.2e18

UTIL = "DCGM_FI_DEV_GPU_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"
POWER = "DCGM_FI_DEV_POWER_USAGE"
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
GR_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
# Runyard's node agent adds counters (gpu/agent.py): their deltas make the accounting independent of the interval.
BUSY_TOTAL = "runyard_gpu_busy_seconds_total"
IDLE_TOTAL = "runyard_gpu_idle_seconds_total"
SAMPLED_TOTAL = "runyard_gpu_sampled_seconds_total"
ENERGY_TOTAL = "runyard_gpu_energy_joules_total"
COUNTERS = (BUSY_TOTAL, IDLE_TOTAL, SAMPLED_TOTAL, ENERGY_TOTAL)
WANTED = (UTIL, FB_USED, POWER, ENERGY, GR_ACTIVE, *COUNTERS)

# 1.x-compatibility names (etc/1.x-compatibility-metrics.csv) map onto the current ones.
_ALIASES = {
    "dcgm_gpu_utilization": UTIL,
    "dcgm_fb_used": FB_USED,
    "dcgm_power_usage": POWER,
    "dcgm_total_energy_consumption": ENERGY,
}
MIB = 1048576


@dataclass(slots=True)
class GPUSample:
    """One reading of one GPU (or MIG GPU instance) at one time, with the pod the exporter says holds it."""

    node: str
    uuid: str
    index: str
    time: float
    gi_id: str = ""
    mig_profile: str = ""
    model: str = ""
    namespace: str = ""
    pod: str = ""
    container: str = ""
    pod_uid: str = ""
    utilization: float | None = None
    memory_used_bytes: float | None = None
    power_watts: float | None = None
    energy_mj: float | None = None
    # Runyard agent counters (seconds since the agent started); None from a plain DCGM exporter.
    busy_seconds: float | None = None
    idle_seconds: float | None = None
    sampled_seconds: float | None = None

    @property
    def has_counters(self) -> bool:
        return self.busy_seconds is not None and self.sampled_seconds is not None and self.idle_seconds is not None

    @property
    def key(self) -> str:
        """Device identity: the GPU UUID, or UUID/gi<N> for a MIG GPU instance."""
        return f"{self.uuid}/gi{self.gi_id}" if self.gi_id else self.uuid

    @property
    def has_owner(self) -> bool:
        return bool(self.pod or self.pod_uid)


def _value(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    if math.isnan(value) or math.isinf(value) or abs(value) >= SENTINEL_MIN:
        return None
    return value


def _metric_name(name: str) -> str | None:
    if name.endswith("_total") and name[: -len("_total")] in (ENERGY, "dcgm_total_energy_consumption"):
        name = name[: -len("_total")]  # prometheus_client renames counter samples to <family>_total
    if name + "_total" in COUNTERS:
        name += "_total"  # a family name read without its samples' suffix
    name = _ALIASES.get(name, name)
    return name if name in WANTED else None


def _owner_labels(labels: Mapping[str, str], honor_labels: bool) -> tuple[str, str, str, str]:
    """(namespace, pod, container, pod_uid) as the exporter set them, undoing Prometheus' exported_* renames."""
    if any(k.startswith("exported_") for k in labels):
        return (
            labels.get("exported_namespace", ""),
            labels.get("exported_pod", ""),
            labels.get("exported_container", ""),
            labels.get("exported_pod_uid", labels.get("pod_uid", "")),
        )
    if not honor_labels:
        # Stored by Prometheus without exported_*: plain pod/namespace are the exporter's own target labels.
        return "", "", "", labels.get("pod_uid", "")
    return (
        labels.get("namespace", labels.get("pod_namespace", "")),
        labels.get("pod", labels.get("pod_name", "")),
        labels.get("container", labels.get("container_name", "")),
        labels.get("pod_uid", ""),
    )


def samples_from_series(
    series: Iterable[tuple[str, Mapping[str, str], Any, float]],
    node: str | None = None,
    honor_labels: bool = True,
) -> list[GPUSample]:
    """Fold (metric, labels, value, time) series into one GPUSample per device, owner and time.

    `node` overrides the hostname label (a direct scrape knows which node it asked; old exporters print their pod name).
    `honor_labels=False` is for series read back from Prometheus with honorLabels=false.
    """
    out: dict[tuple[str, str, str, str, str, str, float], GPUSample] = {}
    gr_active: dict[tuple[str, str, str, str, str, str, float], float] = {}
    energy_j: dict[tuple[str, str, str, str, str, str, float], float] = {}
    for name, labels, raw, when in series:
        metric = _metric_name(name)
        if metric is None:
            continue
        uuid = labels.get("UUID") or labels.get("uuid") or ""
        if not uuid:
            continue  # NvLink/NvSwitch/CPU entities carry other label sets
        value = _value(raw)
        ns, pod, container, pod_uid = _owner_labels(labels, honor_labels)
        gi = labels.get("GPU_I_ID", "")
        key = (uuid, gi, ns, pod, pod_uid, container, when)
        sample = out.get(key)
        if sample is None:
            host = node or labels.get("hostname") or labels.get("Hostname") or labels.get("kubernetes_node", "")
            sample = out[key] = GPUSample(
                node=host,
                uuid=uuid,
                index=labels.get("gpu", ""),
                time=when,
                gi_id=gi,
                mig_profile=labels.get("GPU_I_PROFILE", ""),
                model=labels.get("modelName", ""),
                namespace=ns,
                pod=pod,
                container=container,
                pod_uid=pod_uid,
            )
        if value is None:
            continue
        if metric == UTIL:
            sample.utilization = min(max(value, 0.0), 100.0)  # "abnormal points" outside 0-100 exist (#418)
        elif metric == GR_ACTIVE:
            gr_active[key] = min(max(value * 100.0, 0.0), 100.0)  # ratio 0-1, not percent
        elif metric == FB_USED:
            sample.memory_used_bytes = value * MIB  # exporter unit is MiB
        elif metric == POWER:
            sample.power_watts = value
        elif metric == ENERGY:
            sample.energy_mj = value
        elif metric == ENERGY_TOTAL:
            energy_j[key] = value
        elif metric == BUSY_TOTAL:
            sample.busy_seconds = value
        elif metric == IDLE_TOTAL:
            sample.idle_seconds = value
        elif metric == SAMPLED_TOTAL:
            sample.sampled_seconds = value
    for key, joules in energy_j.items():
        if out[key].energy_mj is None:
            out[key].energy_mj = joules * 1000.0  # the agent's counter, where the DCGM-named one is missing
    for key, ratio in gr_active.items():
        sample = out[key]
        # GPU_UTIL is 0 on MIG instances (#216): the graphics-engine activity is the only utilisation there.
        if sample.gi_id or sample.utilization is None:
            sample.utilization = ratio
    return list(out.values())


def _families(text: str) -> Iterable[tuple[str, Mapping[str, str], float]]:
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                yield s.name, s.labels, s.value
        return
    except ValueError:
        pass
    # One bad line aborts prometheus_client's parser: fall back to line by line and skip what does not parse.
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            for family in text_string_to_metric_families(line + "\n"):
                for s in family.samples:
                    yield s.name, s.labels, s.value
        except ValueError:
            continue


def parse_exposition(text: str, now: float, node: str | None = None) -> list[GPUSample]:
    """Samples from a DCGM-exporter /metrics page scraped at `now` (the format carries no timestamps)."""
    return samples_from_series(((n, lbl, v, now) for n, lbl, v in _families(text)), node=node, honor_labels=True)


def parse_prometheus_result(body: Mapping[str, Any], honor_labels: bool = False) -> list[GPUSample]:
    """Samples from a Prometheus /api/v1/query (vector or range-vector matrix) or /api/v1/query_range answer."""
    data = body.get("data") or {}
    series: list[tuple[str, Mapping[str, str], Any, float]] = []
    for item in data.get("result") or []:
        labels = item.get("metric") or {}
        name = str(labels.get("__name__", ""))
        points = item.get("values") or ([item["value"]] if "value" in item else [])
        series.extend((name, labels, raw, float(ts)) for ts, raw in points)
    return samples_from_series(series, honor_labels=honor_labels)
