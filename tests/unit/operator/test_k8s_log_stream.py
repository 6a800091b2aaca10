"""`Kube.stream_pod_log` over real HTTP: a whole log in chunks, the API server's refusal, and a read cut by its timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from runyard_operator.k8s import ApiError, Kube
from tests.unit.operator import fake_http

LOG = b"".join(f"step {i}\n".encode() for i in range(50_000))  # ~490 KB: several chunks


async def logs(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if "*/*" not in request.headers.get("Accept", ""):
        # As the real API server (found on the real node): `Accept: text/plain` alone is refused.
        return web.json_response({"reason": "NotAcceptable", "message": "only application/json, ..."}, status=406)
    if request.query.get("container") != "trainer":
        return web.json_response({"reason": "BadRequest", "message": "wrong container"}, status=400)
    if name == "refused":
        body = {"kind": "Status", "reason": "BadRequest", "message": 'container "trainer" is waiting to start'}
        return web.json_response(body, status=400)
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(LOG[:1000])
    if name == "slow":
        await asyncio.sleep(3)  # past the 1 s timeout below, and short: cleanup waits for this handler
    await response.write(LOG[1000:])
    await response.write_eof()
    return response


async def with_kube(body: Callable[[Kube], Awaitable[Any]]) -> Any:
    return await fake_http.with_kube({"/api/v1/namespaces/ns/pods/{name}/log": logs}, body)


def test_a_whole_log_is_handed_over_in_chunks() -> None:
    chunks: list[bytes] = []
    size = asyncio.run(with_kube(lambda kube: kube.stream_pod_log("ns", "p", "trainer", chunks.append, timeout=10)))
    assert size == len(LOG) and b"".join(chunks) == LOG and len(chunks) > 1


def test_a_refusal_is_an_api_error() -> None:
    with pytest.raises(ApiError) as info:
        asyncio.run(with_kube(lambda kube: kube.stream_pod_log("ns", "refused", "trainer", print, timeout=10)))
    assert (info.value.status, info.value.reason) == (400, "BadRequest") and "waiting to start" in info.value.message


def test_the_timeout_bounds_the_read_and_keeps_what_was_read() -> None:
    chunks: list[bytes] = []
    with pytest.raises(ApiError, match="timed out after 1s"):
        asyncio.run(with_kube(lambda kube: kube.stream_pod_log("ns", "slow", "trainer", chunks.append, timeout=1)))
    assert b"".join(chunks) == LOG[:1000]
