"""Thin kopf registrations: each watch event only updates the controller's cache and queues a reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import kopf

from runyard import constants as c
from runyard_operator.controller import Controller, release_memory
from runyard_operator.policies.model import REASON_FAILED_CREATE
from runyard_operator.sweeps import SweepController

CHILD_SELECTOR = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY_VALUE}"
REFUSAL_SELECTOR = f"reason={REASON_FAILED_CREATE},involvedObject.kind=Job"
STARTUP_TRIM_SECONDS = 10.0
KOPF_WORKER_IDLE_SECONDS = 0.5


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no last-handled state: only on.event handlers are registered, and they need no diff.

    kopf still builds an essence (a deep copy of the body) for every watch event to detect changes; with
    thousands of runs that copy was a quarter of the operator's CPU in the burst benchmark (bench/RESULTS.md).
    """

    def build(self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def register(
    registry: kopf.OperatorRegistry,
    controller: Controller,
    namespaced: bool = False,
    sweeps: SweepController | None = None,
) -> None:
    """Register the handlers for one controller (and the sweep controller) in `registry`, one per operator instance."""

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # The controller posts its own Events, one per transition, not per handler log line.
        settings.posting.enabled = False
        # With explicit namespaces, Roles grant nothing cluster-wide: do not scan namespaces and CRDs (kopf would
        # retry the forbidden lists for about a minute before falling back to the given names).
        settings.scanning.disabled = namespaced
        # Server-side label selectors: never stream Jobs and Pods that Runyard does not own.
        settings.watching.label_selectors["batch", "jobs"] = CHILD_SELECTOR
        settings.watching.label_selectors["v1", "pods"] = CHILD_SELECTOR
        # Only the Job controller's refusals to create pods, never the cluster's stream of Events.
        settings.watching.field_selectors["v1", "events"] = REFUSAL_SELECTOR
        # kopf keeps a worker task per object until it has been idle this long (default 5 s); the handlers only feed
        # the cache, so a worker has nothing to wait for. At 5 s a burst kept every object's worker alive at once and
        # the allocator's arenas grew to that peak, which it cannot return while a few objects survive in each
        # (bench/heap_census.py: 129 MiB of arenas holding 26 MB of live objects after 10,000 runs were deleted).
        settings.queueing.idle_timeout = KOPF_WORKER_IDLE_SECONDS
        # Paginated initial lists: a restart with 10,000 runs present never holds one giant list response.
        settings.watching.chunk_size = 500
        settings.networking.request_timeout = 60
        # Every watch ends within a minute and resumes from its last resourceVersion (no relist): a stream that an
        # apiserver or etcd restart left open but silent stalls the operator for at most 90 s, not 5.5 min (the CI
        # run of the apiserver/etcd chaos scenario saw every run untouched for 300 s).
        settings.watching.server_timeout = 60
        settings.watching.client_timeout = 90
        # Event handlers persist nothing, but keep kopf's own marks under our prefix should that change.
        settings.persistence.finalizer = f"{c.GROUP}/kopf-finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP, v1=False)
        settings.persistence.diffbase_storage = NoDiffBase()
        controller.queue.start()
        if sweeps is not None:
            sweeps.queue.start()
        await controller.start_plugins()
        # Start-up (imports, the CRD reads, the first lists) leaves freed buffers behind: return them once it settles.
        asyncio.get_running_loop().call_later(STARTUP_TRIM_SECONDS, release_memory)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf's own minimal readers: no dependency on a second (sync) Kubernetes client in the image.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        await controller.queue.stop()
        if sweeps is not None:
            await sweeps.queue.stop()
        await controller.stop_plugins()

    @kopf.on.event(c.GROUP, c.VERSION, c.PLURAL, registry=registry)
    async def trainingrun_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.on_run_event(event.get("type"), event["object"])
        if sweeps is not None:
            sweeps.on_trial_event(event.get("type"), event["object"])

    if sweeps is not None:

        @kopf.on.event(c.GROUP, c.VERSION, c.SWEEP_PLURAL, registry=registry)
        async def sweep_event(event: kopf.RawEvent, **_: Any) -> None:
            sweeps.on_sweep_event(event.get("type"), event["object"])

    @kopf.on.event("batch", "v1", "jobs", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE}, registry=registry)
    async def job_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.on_child_event("Job", event.get("type"), event["object"])

    @kopf.on.event("v1", "pods", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE}, registry=registry)
    async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.on_child_event("Pod", event.get("type"), event["object"])

    @kopf.on.event("v1", "events", registry=registry)
    async def refusal_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.on_refusal_event(event.get("type"), event["object"])
