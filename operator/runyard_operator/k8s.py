"""The operator's only door to the Kubernetes API (kubernetes_asyncio): rate-limited, counted, JSON in and out."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client.exceptions import ApiException

from runyard import constants as c
from runyard_operator import metrics

logger = logging.getLogger(__name__)

# kind -> (API path prefix, plural); the operator only ever touches these kinds.
_KINDS: dict[str, tuple[str, str]] = {
    "Service": ("/api/v1", "services"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
    c.KIND: (f"/apis/{c.API_VERSION}", c.PLURAL),
}
_RESPONSE_TYPES = {200: "object", 201: "object", 202: "object"}
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the apiserver, with its status code and Status message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class TokenBucket:
    """Client-side QPS/burst limit so a burst of runs cannot flood the apiserver."""

    def __init__(self, qps: float, burst: int) -> None:
        self._rate = max(qps, 0.001)
        self._capacity = float(max(burst, 1))
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._rate)
                self._stamp = time.monotonic()
                self._tokens = 1
            self._tokens -= 1


def _path(kind: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
    prefix, plural = _KINDS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


class Kube:
    """Async JSON access to the objects the operator owns."""

    def __init__(self, api: kclient.ApiClient, qps: float = 50.0, burst: int = 100) -> None:
        self._api = api
        self._bucket = TokenBucket(qps, burst)

    @classmethod
    async def connect(cls, qps: float = 50.0, burst: int = 100) -> Kube:
        configuration = kclient.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await kconfig.load_kube_config(client_configuration=configuration)
        # One connection per concurrent request; aiohttp's default pool of 100 is plenty for our QPS.
        configuration.connection_pool_maxsize = max(16, burst)
        return cls(kclient.ApiClient(configuration), qps, burst)

    async def close(self) -> None:
        await self._api.close()

    async def request(
        self,
        verb: str,
        kind: str,
        namespace: str | None,
        name: str | None = None,
        *,
        body: Any = None,
        sub: str | None = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        await self._bucket.take()
        resource = _KINDS[kind][1] + (f"/{sub}" if sub else "")
        metrics.API_REQUESTS.labels(verb.lower(), resource).inc()
        try:
            result = await self._api.call_api(
                _path(kind, namespace, name, sub),
                verb,
                query_params=list((query or {}).items()),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                response_types_map=_RESPONSE_TYPES,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except ApiException as exc:
            metrics.API_ERRORS.labels(verb.lower(), resource, str(exc.status)).inc()
            raise _api_error(exc) from None
        return result if isinstance(result, dict) else {}

    # --- children ------------------------------------------------------------------------------------

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return await self.request(
            "POST", obj["kind"], meta.get("namespace"), body=obj, query={"fieldManager": c.FIELD_MANAGER}
        )

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", kind, namespace, name)

    async def adopt(self, kind: str, namespace: str, name: str, owner: Mapping[str, Any]) -> dict[str, Any]:
        """Add the controller owner reference to an existing unowned object (create-or-adopt after a 409)."""
        body = {"metadata": {"ownerReferences": [owner]}}
        return await self.request("PATCH", kind, namespace, name, body=body, content_type=MERGE_PATCH)

    async def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> None:
        try:
            await self.request(
                "DELETE",
                kind,
                namespace,
                name,
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
            )
        except ApiError as err:
            if err.status != 404:
                raise

    async def patch(
        self, kind: str, namespace: str, name: str, body: Mapping[str, Any], sub: str | None = None
    ) -> dict[str, Any]:
        return await self.request("PATCH", kind, namespace, name, body=body, sub=sub, content_type=MERGE_PATCH)

    async def json_patch(self, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("PATCH", kind, namespace, name, body=ops, content_type=JSON_PATCH)

    # --- events --------------------------------------------------------------------------------------

    async def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": c.API_VERSION,
                "kind": c.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": c.FIELD_MANAGER},
            "reportingComponent": c.FIELD_MANAGER,
            "reportingInstance": os.environ.get("HOSTNAME", c.FIELD_MANAGER),
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "eventTime": now,
            "action": reason,
            "count": 1,
        }
        try:
            await self.request("POST", "Event", meta["namespace"], body=event)
        except ApiError as err:  # events are best effort: never fail a reconcile because of one
            logger.warning("could not post event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], err)


def _api_error(exc: ApiException) -> ApiError:
    message, reason = str(exc.reason or ""), str(exc.reason or "")
    try:
        status = json.loads(exc.body or b"{}")
        message = str(status.get("message", message))
        reason = str(status.get("reason", reason))
    except (ValueError, TypeError):
        pass
    return ApiError(int(exc.status or 0), reason, message)
