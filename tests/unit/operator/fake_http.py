"""A real aiohttp server on a free local port with a `Kube` client pointed at it, for wire-level tests of `k8s.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from runyard_operator.k8s import Kube

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def with_kube(routes: dict[str, Handler], body: Callable[[Kube], Awaitable[Any]]) -> Any:
    """Serve `routes` (GET path -> handler), run `body` with a client of that server, then shut both down."""
    app = web.Application()
    app.add_routes([web.get(path, handler) for path, handler in routes.items()])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    kube = Kube.for_url(f"http://127.0.0.1:{port}")
    try:
        return await body(kube)
    finally:
        await kube.close()
        await runner.cleanup()
