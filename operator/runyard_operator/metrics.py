"""Prometheus metrics of the operator and the HTTP server for /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

TRANSITIONS = Counter(
    "runyard_trainingrun_transitions_total",
    "Phase transitions of TrainingRuns.",
    ["framework", "phase"],
    registry=REGISTRY,
)
RESTARTS = Counter(
    "runyard_trainingrun_gang_restarts_total",
    "Whole-gang restarts after a replica failed.",
    ["framework"],
    registry=REGISTRY,
)
TIME_TO_RUNNING = Histogram(
    "runyard_trainingrun_time_to_running_seconds",
    "Seconds from TrainingRun creation to phase Running.",
    ["framework"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "runyard_reconcile_duration_seconds",
    "Time spent in one reconcile of a TrainingRun.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "runyard_reconcile_errors_total",
    "Reconciles that ended in an error and were retried.",
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "runyard_api_requests_total",
    "Requests the operator sent to the Kubernetes API.",
    ["verb", "resource"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "runyard_api_errors_total",
    "Kubernetes API requests that failed.",
    ["verb", "resource", "code"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "runyard_leader", "1 when this replica holds the leader Lease (or runs without election).", registry=REGISTRY
)
LEADER.set(1)
QUEUE_DEPTH = Gauge("runyard_workqueue_depth", "TrainingRuns waiting for a reconcile.", registry=REGISTRY)
PROGRESS_REPORTS = Counter(
    "runyard_progress_reports_total",
    "Progress reports received from ranks, by outcome (accepted, unauthenticated, not_owned, invalid, stale).",
    ["outcome"],
    registry=REGISTRY,
)


class RunsByPhase(Collector):
    """Counts runs by phase and framework at scrape time from the operator's cache (no API calls)."""

    def __init__(self, source: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self._source = source

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "runyard_trainingruns",
            "TrainingRuns known to the operator by phase.",
            labels=["phase", "framework"],
        )
        counts: dict[tuple[str, str], int] = {}
        for key in self._source():
            counts[key] = counts.get(key, 0) + 1
        for (phase, framework), n in sorted(counts.items()):
            family.add_metric([phase, framework], n)
        yield family


_COLLECTORS: dict[type[Collector], Collector] = {}


def register_collector(collector: Collector) -> None:
    """Register `collector` in place of an earlier one of its class (several Controllers in one process: tests)."""
    earlier = _COLLECTORS.pop(type(collector), None)
    if earlier is not None and earlier is not collector:
        REGISTRY.unregister(earlier)
    if earlier is not collector:
        REGISTRY.register(collector)
    _COLLECTORS[type(collector)] = collector


class HealthServer:
    """Serves /metrics, /healthz (the loop answers) and /readyz (watches started and caches primed)."""

    def __init__(self, port: int, ready: asyncio.Event) -> None:
        self._port = port
        self._ready = ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", self._port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._ready.is_set():
            return web.Response(text="ok")
        return web.Response(status=503, text="starting")
