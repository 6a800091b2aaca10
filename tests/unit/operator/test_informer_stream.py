"""The informer's wire handling over real HTTP: paged lists, lines split across chunks, a 300 KB object, bookmarks, and
410 Gone (as a status code and as an ERROR event) turned into a new list that reports what vanished meanwhile."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from runyard_operator.informer import Informer
from runyard_operator.k8s import Kube
from tests.unit.operator.fake_http import with_kube


def pod(name: str, rv: int, note: str = "") -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": str(rv), "labels": {"a": "b"}}
    return {"metadata": meta | ({"annotations": {"note": note}} if note else {})}


class FakeApi:
    """The list and watch protocol of one namespace's pods, scripted per watch call."""

    def __init__(self) -> None:
        self.pods = {"p1": pod("p1", 10), "p2": pod("p2", 11), "p3": pod("p3", 12)}
        self.watches: list[dict[str, str]] = []
        self.lists: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        if query.get("watch") != "true":
            self.lists.append(query)
            names = sorted(self.pods)
            start = int(query.get("continue") or 0)
            limit = int(query["limit"])
            page = names[start : start + 2 if limit > 2 else start + limit]  # pages of 2: the list needs several
            cont = str(start + len(page)) if start + len(page) < len(names) else ""
            body = {"metadata": {"resourceVersion": "20", "continue": cont}, "items": [self.pods[n] for n in page]}
            return web.json_response(body)
        self.watches.append(query)
        call = len(self.watches)
        if call == 3:  # the version is gone: answered with the status code before any event
            return web.json_response(
                {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}, status=410
            )
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if call == 1:
            events = [
                {"type": "ADDED", "object": pod("p4", 21, note="x" * 300_000)},  # larger than aiohttp's line limit
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "25"}}},
                {"type": "DELETED", "object": pod("p1", 26)},
            ]
            self.pods["p4"] = pod("p4", 21)
            del self.pods["p1"]
            data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
            for i in range(0, len(data), 7000):  # lines split across chunks
                await response.write(data[i : i + 7000])
                await asyncio.sleep(0)
        elif call == 2:
            del self.pods["p2"]  # deleted while no watch saw it; then the stream says the version expired
            gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "old"}}
            await response.write(json.dumps(gone).encode() + b"\n")
        else:
            await asyncio.sleep(1)  # idle until the test is done (cleanup waits for this handler)
        await response.write_eof()
        return response


def test_lists_in_pages_streams_large_objects_and_relists_after_gone() -> None:
    api = FakeApi()
    seen: list[tuple[str | None, str]] = []

    async def body(kube: Kube) -> None:
        informer = Informer(
            kube, "Pod", "ns", lambda t, b: seen.append((t, b["metadata"]["name"])), label_selector="a=b"
        )
        task = asyncio.create_task(informer.run())
        try:
            for _ in range(400):
                if len(api.watches) >= 4:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert informer.synced.is_set()
        assert set(informer.known) == {"uid-p3", "uid-p4"}

    asyncio.run(with_kube({"/api/v1/namespaces/ns/pods": api.handle}, body))
    first_list = [(None, "p1"), (None, "p2"), (None, "p3")]
    watched = [("ADDED", "p4"), ("DELETED", "p1")]  # the bookmark is no delivery
    # 410 as an ERROR event, then 410 as a status code: each time a new list; p2 vanished unseen and is reported.
    relist = [("DELETED", "p2"), (None, "p3"), (None, "p4")]
    assert seen[: len(first_list) + len(watched) + len(relist)] == first_list + watched + relist
    assert api.watches[0]["resourceVersion"] == "20" and api.watches[0]["labelSelector"] == "a=b"
    assert api.watches[1]["resourceVersion"] == "26"  # resumed after the last event, not the bookmark before it
    assert api.watches[0]["allowWatchBookmarks"] == "true"
    assert [q.get("continue", "") for q in api.lists[:2]] == ["", "2"]  # paginated
