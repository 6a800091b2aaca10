"""Sources against real HTTP servers on 127.0.0.1: exporter scrape (static and EndpointSlice discovery), Prometheus."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from runyard_operator.gpu.config import GPUMetricsConfig
from runyard_operator.gpu.sources import EndpointDiscovery, PrometheusQuerySource, ScrapeSource, Target

FIXTURES = Path(__file__).parent / "fixtures"
PROM = (FIXTURES / "dcgm_exporter_4.8.2_h100_k8s.prom").read_text()


async def serve(routes: list[web.RouteDef], body: Callable[[int], Awaitable[Any]]) -> Any:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await body(port)
    finally:
        await runner.cleanup()


def test_scrape_source_static_endpoints_and_a_dead_node() -> None:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=PROM)

    async def body(port: int) -> Any:
        cfg = GPUMetricsConfig.model_validate(
            {"dcgm": {"endpoints": {"n0": f"http://127.0.0.1:{port}/metrics", "n1": "http://127.0.0.1:9/metrics"}}}
        )
        source = ScrapeSource(cfg, kube=None, clock=lambda: 42.0)
        try:
            targets = [Target("ml-team", "llama-ft-worker-0", "u", "n0"), Target("ml-team", "x", "v", "n1")]
            samples = await source.collect(targets, set())
            again = await source.collect(targets, set())
        finally:
            await source.close()
        return samples, again, source.errors

    samples, again, errors = asyncio.run(serve([web.get("/metrics", metrics)], body))
    assert {s.node for s in samples} == {"n0"} and len(samples) == 2 and samples[0].time == 42.0
    assert len(again) == 2 and errors == 2  # the unreachable node only costs its own samples


class FakeKube:
    def __init__(self, slices: dict[str, Any]) -> None:
        self.slices = slices
        self.calls = 0

    async def request(self, verb: str, kind: str, namespace: str | None, **kw: Any) -> dict[str, Any]:
        self.calls += 1
        assert (verb, kind, namespace) == ("GET", "EndpointSlice", "gpu-operator")
        assert kw["query"] == {"labelSelector": "kubernetes.io/service-name=nvidia-dcgm-exporter"}
        return self.slices


def test_endpoint_slice_discovery() -> None:
    slices = {
        "items": [
            {
                "ports": [{"name": "gpu-metrics", "port": 9400}],
                "endpoints": [
                    {"addresses": ["10.0.0.7"], "nodeName": "n0", "conditions": {"ready": True}},
                    {"addresses": ["10.0.0.8"], "nodeName": "n1", "conditions": {"ready": False}},
                    {"addresses": ["fd00::9"], "nodeName": "n2"},
                ],
            }
        ]
    }
    kube = FakeKube(slices)
    cfg = GPUMetricsConfig.model_validate({"dcgm": {"portName": "gpu-metrics", "endpoints": {"n3": "http://static/m"}}})
    clock = [0.0]
    discovery = EndpointDiscovery(cfg.dcgm, kube, clock=lambda: clock[0])

    urls = asyncio.run(discovery.urls(["n0", "n1", "n2", "n3"]))
    assert urls == {
        "n0": "http://10.0.0.7:9400/metrics",
        "n2": "http://[fd00::9]:9400/metrics",
        "n3": "http://static/m",
    }
    clock[0] = 1.0
    asyncio.run(discovery.urls(["n0", "n1"]))  # n1 still missing, but no second list within 5 s
    assert kube.calls == 1
    clock[0] = 61.0
    asyncio.run(discovery.urls(["n0"]))
    assert kube.calls == 2


def test_prometheus_source_queries_and_parses() -> None:
    queries: list[str] = []

    async def query(request: web.Request) -> web.Response:
        form = await request.post()
        queries.append(str(form["query"]))
        return web.json_response(json.loads((FIXTURES / "prometheus_query_range_gpu_util.json").read_text()))

    async def body(port: int) -> Any:
        cfg = GPUMetricsConfig.model_validate(
            {"source": "prometheus", "intervalSeconds": 15, "prometheus": {"url": f"http://127.0.0.1:{port}/"}}
        )
        source = PrometheusQuerySource(cfg)
        try:
            return await source.collect([Target("ml-team", "llama-ft-worker-0", "u", "gpu-node-07")], {"GPU-a.b"})
        finally:
            await source.close()

    samples = asyncio.run(serve([web.post("/api/v1/query", query)], body))
    assert len(queries) == 2
    assert 'exported_pod=~"llama-ft-worker-0"}[60s]' in queries[0]
    assert 'UUID=~"GPU-a\\\\.b"' in queries[1]
    assert queries[0].startswith('{__name__=~"DCGM_FI_DEV_GPU_UTIL|')
    assert len(samples) == 8 and {s.pod for s in samples} == {"llama-ft-worker-0"}


def test_prometheus_honor_labels_uses_pod() -> None:
    cfg = GPUMetricsConfig.model_validate(
        {"source": "prometheus", "prometheus": {"url": "http://p", "honorLabels": True}}
    )
    (q,) = PrometheusQuerySource(cfg).queries([Target("ns", "a", "u", "n")], set())
    assert ',pod=~"a"}' in q
