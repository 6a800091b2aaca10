"""`Kube.pod_log` over real HTTP against the API server's rules: its Accept header, tail and byte bounds, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from runyard_operator.k8s import ApiError, Kube
from tests.unit.operator import fake_http

LOG = "".join(f"step {i}\n" for i in range(100))
# What kube-apiserver serves pods/log as; `Accept: text/plain` alone gets 406 (seen on the real node, v1.36).
SERVED = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "*/*")


async def logs(request: web.Request) -> web.Response:
    accept = request.headers.get("Accept", "")
    if not any(media in accept for media in SERVED):
        body = {"kind": "Status", "reason": "NotAcceptable", "message": "only the following media types are accepted"}
        return web.json_response(body, status=406)
    if request.match_info["name"] == "gone":
        return web.json_response(
            {"kind": "Status", "reason": "NotFound", "message": 'pods "gone" not found'}, status=404
        )
    if request.query.get("container") != "trainer":
        return web.json_response({"kind": "Status", "reason": "BadRequest", "message": "container"}, status=400)
    lines = LOG.splitlines(keepends=True)[-int(request.query["tailLines"]) :]
    text = "".join(lines).encode()[: int(request.query["limitBytes"])]
    return web.Response(body=text, content_type="text/plain")


async def with_kube(body: Callable[[Kube], Awaitable[Any]]) -> Any:
    return await fake_http.with_kube({"/api/v1/namespaces/ns/pods/{name}/log": logs}, body)


def test_the_tail_comes_back_as_text() -> None:
    text = asyncio.run(with_kube(lambda kube: kube.pod_log("ns", "p", "trainer", tail_lines=3, limit_bytes=4096)))
    assert text == "step 97\nstep 98\nstep 99\n"


def test_the_byte_limit_is_passed_on() -> None:
    text = asyncio.run(with_kube(lambda kube: kube.pod_log("ns", "p", "trainer", tail_lines=20, limit_bytes=10)))
    assert text == "step 80\nst"


def test_a_missing_pod_is_an_api_error_with_its_status() -> None:
    with pytest.raises(ApiError) as info:
        asyncio.run(with_kube(lambda kube: kube.pod_log("ns", "gone", "trainer")))
    assert (info.value.status, info.value.reason) == (404, "NotFound")
