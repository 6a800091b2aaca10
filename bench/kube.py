"""A minimal aiohttp Kubernetes client for benchmarks: the 'plain async client' ceiling and the bench's watches."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from runyard.tls import client_context


class BenchKube:
    """JSON over HTTPS with the admin client certificate of a kubeconfig; no retries, no rate limit."""

    def __init__(self, kubeconfig: Path, connections: int = 256) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        ctx_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"].rstrip("/")
        self._ssl = client_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode(),
            cert=(base64.b64decode(user["client-certificate-data"]), base64.b64decode(user["client-key-data"])),
        )
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BenchKube:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        async with self.session.request(
            method, self.server + path, data=data, params=params, headers={"Content-Type": content_type}
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text

    async def text(self, path: str) -> str:
        async with self.session.get(self.server + path) as resp:
            return await resp.text()

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events (type + object) forever, starting now."""
        _, listing = await self.request("GET", path, params={**params, "limit": "1"})
        rv = listing["metadata"]["resourceVersion"]
        while True:
            query = {
                **params,
                "watch": "1",
                "resourceVersion": rv,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "600",
            }
            async with self.session.get(self.server + path, params=query) as resp:
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    rv = event["object"]["metadata"].get("resourceVersion", rv)
                    if event["type"] == "BOOKMARK":
                        continue
                    yield event


class WatchWaiter:
    """Watch loops that hand each event to a handler, and waits on conditions they make true (the bench's observers)."""

    def __init__(self, kube: BenchKube) -> None:
        self.kube = kube
        self.waiters: list[tuple[Callable[[], bool], asyncio.Event]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def watch(self, path: str, params: dict[str, str], handle: Callable[[dict[str, Any], float], None]) -> None:
        self.tasks.append(asyncio.create_task(self._loop(path, params, handle)))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _loop(self, path: str, params: dict[str, str], handle: Callable[[dict[str, Any], float], None]) -> None:
        async for event in self.kube.watch(path, params):
            handle(event, time.perf_counter())
            for check, ev in self.waiters:
                if not ev.is_set() and check():
                    ev.set()

    async def until(self, check: Callable[[], bool], timeout: float) -> None:
        if check():
            return
        ev = asyncio.Event()
        self.waiters.append((check, ev))
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        finally:
            self.waiters.remove((check, ev))


async def new_namespace(kube: BenchKube, prefix: str) -> str:
    name = f"bench-{prefix}-{uuid.uuid4().hex[:5]}"
    await kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


async def drop_namespace(kube: BenchKube, ns: str, wait: float = 300) -> bool:
    """Delete `ns` and wait up to `wait` s for it to be gone; False if it is still terminating."""
    await kube.request("DELETE", f"/api/v1/namespaces/{ns}")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        status, _ = await kube.request("GET", f"/api/v1/namespaces/{ns}")
        if status == 404:
            return True
        await asyncio.sleep(1)
    return False


async def gather_limited(coros: list[Any], limit: int) -> list[Any]:
    """Run coroutines with at most `limit` in flight."""
    sem = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))
