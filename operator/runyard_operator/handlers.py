"""Thin kopf registrations and the children's informers: each watch event only updates a cache and queues a reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import kopf

from runyard import constants as c
from runyard_operator.controller import Controller, release_memory
from runyard_operator.informer import Informer, Informers
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


def child_informers(controller: Controller, namespaces: list[str]) -> Informers:
    """Jobs and pods Runyard labelled, and the Job controller's FailedCreate Events: per namespace, or cluster-wide.

    Label and field selectors are applied by the API server, so nothing else is ever streamed; ownership is still
    proven by owner UIDs in the controller, as labels prove nothing.
    """

    def on_job(kind: str | None, body: Any) -> None:
        controller.on_child_event("Job", kind, body)

    def on_pod(kind: str | None, body: Any) -> None:
        controller.on_child_event("Pod", kind, body)

    informers: list[Informer] = []
    scopes: list[str | None] = list(namespaces) or [None]
    for namespace in scopes:
        informers += [
            Informer(controller.kube, "Job", namespace, on_job, label_selector=CHILD_SELECTOR),
            Informer(controller.kube, "Pod", namespace, on_pod, label_selector=CHILD_SELECTOR),
            Informer(controller.kube, "Event", namespace, controller.on_refusal_event, field_selector=REFUSAL_SELECTOR),
        ]
    return Informers(informers)


def register(
    registry: kopf.OperatorRegistry,
    controller: Controller,
    namespaces: list[str] | None = None,
    sweeps: SweepController | None = None,
) -> None:
    """Register the handlers for one controller (and the sweep controller) in `registry`, one per operator instance."""
    namespaced = bool(namespaces)
    children = child_informers(controller, list(namespaces or []))

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # The controller posts its own Events, one per transition, not per handler log line.
        settings.posting.enabled = False
        # With explicit namespaces, Roles grant nothing cluster-wide: do not scan namespaces and CRDs (kopf would
        # retry the forbidden lists for about a minute before falling back to the given names).
        settings.scanning.disabled = namespaced
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
        children.start()
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
        await children.stop()
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
