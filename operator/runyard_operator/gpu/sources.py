"""Where GPU samples come from: DCGM exporters or the Runyard agent (scraped per node), or a Prometheus server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from runyard_operator.gpu.config import ExporterEndpoints, GPUMetricsConfig, PrometheusSource
from runyard_operator.gpu.parser import WANTED, GPUSample, parse_exposition, parse_prometheus_result

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """A running pod of a run whose GPUs are wanted."""

    namespace: str
    pod: str
    pod_uid: str
    node: str


class MetricSource(Protocol):
    """One sampling round for many runs at once: every GPU sample that may belong to `targets`."""

    async def collect(self, targets: Sequence[Target], devices: Collection[str]) -> list[GPUSample]:
        """`devices`: GPU UUIDs already attributed, for series whose pod labels went missing."""
        ...

    async def close(self) -> None: ...


class _Http:
    """A lazily created aiohttp session (it must be made inside the running loop)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class EndpointDiscovery:
    """node -> metrics URL from the exporter Service's EndpointSlices (plus static entries), refreshed lazily."""

    def __init__(self, cfg: ExporterEndpoints, kube: Any | None, clock: Any = time.monotonic) -> None:
        self._cfg = cfg
        self._kube = kube
        self._clock = clock
        self._urls: dict[str, str] = {}
        self._stamp: float | None = None

    async def urls(self, nodes: Collection[str]) -> dict[str, str]:
        static = self._cfg.endpoints
        missing = [n for n in nodes if n not in static and n not in self._urls]
        stale = self._stamp is None or self._clock() - self._stamp > self._cfg.refresh_seconds
        # A node without an exporter must not cause a list per round: refresh at most once per refresh period.
        if self._kube is not None and (stale or (missing and self._clock() - (self._stamp or 0) > 5)):
            try:
                self._urls = await self._discover()
            except Exception as err:
                logger.warning(
                    "gpu: listing EndpointSlices of %s/%s failed: %s", self._cfg.namespace, self._cfg.service, err
                )
            self._stamp = self._clock()
        merged = {**self._urls, **static}
        return {n: merged[n] for n in nodes if n in merged}

    async def _discover(self) -> dict[str, str]:
        body = await list_endpoint_slices(self._kube, self._cfg.namespace, self._cfg.service)
        urls: dict[str, str] = {}
        for item in body.get("items") or []:
            ports = item.get("ports") or []
            port = self._cfg.port
            if port is None:
                chosen = (
                    next((p for p in ports if p.get("name") == self._cfg.port_name), None)
                    if self._cfg.port_name
                    else None
                )
                chosen = chosen or (ports[0] if ports else None)
                port = int(chosen["port"]) if chosen and chosen.get("port") else None
            if port is None:
                continue
            for ep in item.get("endpoints") or []:
                node = ep.get("nodeName")
                addresses = ep.get("addresses") or []
                if not node or not addresses or (ep.get("conditions") or {}).get("ready") is False:
                    continue
                host = f"[{addresses[0]}]" if ":" in addresses[0] else addresses[0]
                urls[node] = f"{self._cfg.scheme}://{host}:{port}{self._cfg.path}"
        return urls


async def list_endpoint_slices(kube: Any, namespace: str, service: str) -> dict[str, Any]:
    """EndpointSlices of one Service through the operator's Kube door."""
    query = {"labelSelector": f"kubernetes.io/service-name={service}"}
    return dict(await kube.request("GET", "EndpointSlice", namespace, query=query))


class ScrapeSource:
    """Scrapes the exposition endpoint on each node that hosts a target (DCGM exporter or runyard-gpu-agent)."""

    def __init__(self, cfg: GPUMetricsConfig, kube: Any | None = None, clock: Any = time.time) -> None:
        self._cfg = cfg
        self._discovery = EndpointDiscovery(cfg.endpoints, kube)
        self._http = _Http(cfg.timeout_seconds)
        self._clock = clock
        self._sem = asyncio.Semaphore(cfg.max_concurrency)
        self._failing: set[str] = set()
        self.errors = 0

    async def collect(self, targets: Sequence[Target], devices: Collection[str]) -> list[GPUSample]:
        nodes = sorted({t.node for t in targets if t.node})
        urls = await self._discovery.urls(nodes)
        results = await asyncio.gather(*(self._scrape(node, url) for node, url in urls.items()))
        return [s for batch in results for s in batch]

    async def _scrape(self, node: str, url: str) -> list[GPUSample]:
        async with self._sem:
            try:
                async with self._http.session.get(url) as resp:
                    resp.raise_for_status()
                    text = await resp.text()
            except (aiohttp.ClientError, TimeoutError) as err:
                self.errors += 1
                if node not in self._failing:  # log a node's failure once, not every round
                    logger.warning("gpu: scraping %s (%s) failed: %s", url, node, err)
                self._failing.add(node)
                return []
        self._failing.discard(node)
        return parse_exposition(text, self._clock(), node=node)

    async def close(self) -> None:
        await self._http.close()


def _regex(values: Collection[str]) -> str:
    # PromQL strings take Go escapes, and RE2 needs the dot escaped: "\\." in the query text.
    return "|".join(sorted(v.replace(".", "\\\\.") for v in values))


class PrometheusQuerySource:
    """Reads raw DCGM samples from Prometheus: a range selector over the last few intervals, by pod and by GPU UUID."""

    CHUNK = 100  # pods per query, keeping each regex well below URL limits

    def __init__(self, cfg: GPUMetricsConfig) -> None:
        assert cfg.prometheus is not None
        self._prom: PrometheusSource = cfg.prometheus
        self._lookback = self._prom.lookback_seconds or max(4 * cfg.interval_seconds, 60.0)
        self._http = _Http(cfg.timeout_seconds)
        self.errors = 0

    def queries(self, targets: Sequence[Target], devices: Collection[str]) -> list[str]:
        names = "|".join(WANTED)
        pod_label = "pod" if self._prom.honor_labels else "exported_pod"
        window = f"[{int(self._lookback)}s]"
        pods = sorted({t.pod for t in targets})
        out = [
            f'{{__name__=~"{names}",{pod_label}=~"{_regex(pods[i : i + self.CHUNK])}"}}{window}'
            for i in range(0, len(pods), self.CHUNK)
        ]
        uuids = sorted(devices)
        out += [
            f'{{__name__=~"{names}",UUID=~"{_regex(uuids[i : i + self.CHUNK])}"}}{window}'
            for i in range(0, len(uuids), self.CHUNK)
        ]
        return out

    async def collect(self, targets: Sequence[Target], devices: Collection[str]) -> list[GPUSample]:
        headers = {}
        if self._prom.bearer_token_file:
            token = await asyncio.to_thread(Path(self._prom.bearer_token_file).read_text)
            headers["Authorization"] = f"Bearer {token.strip()}"
        url = self._prom.url.rstrip("/") + "/api/v1/query"
        samples: list[GPUSample] = []
        for query in self.queries(targets, devices):
            try:
                async with self._http.session.post(url, data={"query": query}, headers=headers) as resp:
                    resp.raise_for_status()
                    body = await resp.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as err:
                self.errors += 1
                logger.warning("gpu: Prometheus query failed: %s", err)
                continue
            samples += parse_prometheus_result(body, honor_labels=self._prom.honor_labels)
        return samples

    async def close(self) -> None:
        await self._http.close()


def build_source(cfg: GPUMetricsConfig, kube: Any | None) -> MetricSource:
    if cfg.source == "prometheus":
        return PrometheusQuerySource(cfg)
    return ScrapeSource(cfg, kube)
