"""List-then-watch of the operator's children (Jobs, pods, FailedCreate Events) outside kopf, feeding the caches.

kopf's per-event machinery (causes, loggers, progress storage, a worker task per object) and its stdlib JSON
decoding were about a third of the operator's CPU in a burst (bench/RESULTS.md, issue 18), for watches whose handlers
only update a cache. Runs and sweeps stay with kopf.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from runyard_operator.k8s import ApiError, Kube, WatchExpiredError

logger = logging.getLogger(__name__)

Deliver = Callable[[str | None, Mapping[str, Any]], None]

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 15.0


def stub(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a DELETED delivery needs of an object that vanished while its watch was down: identity and labels."""
    meta = body.get("metadata") or {}
    out: dict[str, Any] = {
        "metadata": {
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "labels": dict(meta.get("labels") or {}),
        }
    }
    involved = body.get("involvedObject")
    if isinstance(involved, Mapping):
        out["involvedObject"] = {"kind": involved.get("kind"), "uid": involved.get("uid")}
    return out


class Informer:
    """One kind in one namespace (or all): a paginated list, then watches resumed from the last resourceVersion.

    Listed objects are delivered with event type None (as kopf delivers a listing). After a 410 Gone the kind is
    listed again, and an object known before but absent from the new list is delivered as DELETED: a deletion that
    happened while the watch was down is never lost, which kopf's re-list does not promise.
    """

    def __init__(
        self,
        kube: Kube,
        kind: str,
        namespace: str | None,
        deliver: Deliver,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.deliver = deliver
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.known: dict[str, dict[str, Any]] = {}  # uid -> stub
        self.version = ""  # of the last event delivered: a dropped watch resumes from here
        self.synced = asyncio.Event()  # set once the first list was delivered

    def __repr__(self) -> str:
        return f"Informer({self.kind} in {self.namespace or 'all namespaces'})"

    async def run(self) -> None:
        """Until cancelled: failures are retried with a capped, jittered back-off, never raised."""
        delay = BACKOFF_FIRST_SECONDS
        while True:
            try:
                if not self.version:
                    await self._relist()
                    self.synced.set()
                await self._watch()
                delay = BACKOFF_FIRST_SECONDS
            except WatchExpiredError:
                self.version = ""  # compacted away: list again, at once
            except asyncio.CancelledError:
                raise
            except Exception as err:  # an informer must outlive any one bad answer or connection
                level = logging.INFO if isinstance(err, ApiError) and err.status == 0 else logging.WARNING
                logger.log(level, "%r: %s; retrying in %.1fs", self, err, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))  # jitter, not cryptography
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    def _deliver(self, kind: str | None, body: Mapping[str, Any]) -> None:
        try:
            self.deliver(kind, body)
        except Exception:  # one object the cache cannot take must not stop the stream for every other
            logger.exception("%r: delivering %s of %s failed", self, kind, (body.get("metadata") or {}).get("name"))

    async def _relist(self) -> None:
        items: list[dict[str, Any]] = []
        cont, version = "", ""
        while True:
            page, version, cont = await self.kube.list_page(
                self.kind,
                self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                cont=cont,
            )
            items += page
            if not cont:
                break
        listed = {str((item.get("metadata") or {}).get("uid") or ""): item for item in items}
        for uid in [uid for uid in self.known if uid not in listed]:
            self._deliver("DELETED", self.known.pop(uid))
        for uid, item in listed.items():
            self.known[uid] = stub(item)
            self._deliver(None, item)
        self.version = version

    async def _watch(self) -> None:
        async for event in self.kube.watch(
            self.kind,
            self.namespace,
            self.version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        ):
            kind, body = str(event.get("type") or ""), event.get("object") or {}
            meta = body.get("metadata") or {}
            if kind != "BOOKMARK":
                uid = str(meta.get("uid") or "")
                if kind == "DELETED":
                    self.known.pop(uid, None)
                else:
                    self.known[uid] = stub(body)
                self._deliver(kind, body)
            self.version = str(meta.get("resourceVersion") or self.version)


class Informers:
    """The informers of one operator instance, started and stopped together."""

    def __init__(self, informers: list[Informer]) -> None:
        self.informers = informers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(i.run(), name=repr(i)) for i in self.informers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
