"""The operator's only door to the Kubernetes API (aiohttp, kopf's credentials): rate-limited, counted, JSON in and out."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
import orjson

from runyard import constants as c
from runyard.tls import ClientCert, client_context
from runyard_operator import metrics
from runyard_operator.timestamps import format_time

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
    "Namespace": ("/api/v1", "namespaces"),
    "TokenReview": ("/apis/authentication.k8s.io/v1", "tokenreviews"),
    c.KIND: (f"/apis/{c.API_VERSION}", c.PLURAL),
    c.TEMPLATE_KIND: (f"/apis/{c.API_VERSION}", c.TEMPLATE_PLURAL),
    c.CLUSTER_TEMPLATE_KIND: (f"/apis/{c.API_VERSION}", c.CLUSTER_TEMPLATE_PLURAL),
    c.SWEEP_KIND: (f"/apis/{c.API_VERSION}", c.SWEEP_PLURAL),
}
REQUEST_TIMEOUT = 60.0  # seconds for one call, as kopf's own requests (settings.networking.request_timeout)
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
LOG_ACCEPT = "application/json, */*"  # pods/log: plain text, or a JSON Status when refused (client-go's header)
LOG_CHUNK_BYTES = 64 * 1024  # read size of a streamed log
WATCH_SERVER_TIMEOUT = 60  # seconds: the API server ends each watch after this; it is resumed from its resourceVersion
WATCH_CLIENT_TIMEOUT = 90.0  # seconds: a watch an apiserver or etcd restart left open but silent is dropped after this
LIST_PAGE = 500  # items per page of a watch's initial list: a restart never holds one giant list response


class ApiError(Exception):
    """A non-2xx answer from the apiserver, with its status code and Status message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class WatchExpiredError(ApiError):
    """410 Gone: the watch's resourceVersion was compacted away; only a new list can resume it."""


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


def env_proxy_for(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, NO_PROXY...) names for the apiserver, resolved once at start-up."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if not host or urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(urllib.parse.urlsplit(url).scheme or "https")


class Connection:
    """The API server's address, a TLS context and the auth header, from kopf's own credential readers.

    The same readers kopf logs in with (the pod's ServiceAccount, else the kubeconfig), so the operator's requests and
    kopf's watches always act as one identity; no Kubernetes client library is loaded, whose generated models alone
    held 37 MB of the operator's memory (bench/RESULTS.md). `refresh` reads them again: a projected ServiceAccount
    token is rotated on disk, and a 401 means the one in hand expired.
    """

    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self.host = str(info.server).rstrip("/")
        self.ssl = _ssl_context(info)
        self.headers: dict[str, str] = {}
        self._apply(info)
        self.proxy = info.proxy_url or env_proxy_for(self.host)

    @staticmethod
    def login() -> kopf.ConnectionInfo:
        in_cluster = os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG")
        settings = kopf.OperatorSettings()
        info = kopf.login_with_service_account(settings=settings) if in_cluster else None
        info = info or kopf.login_with_kubeconfig(settings=settings)
        if info is None:
            raise ApiError(0, "NoCredentials", "no in-cluster ServiceAccount and no kubeconfig (KUBECONFIG, ~/.kube)")
        return info

    def refresh(self) -> None:
        self._apply(self.login())

    def _apply(self, info: kopf.ConnectionInfo) -> None:
        if info.token:
            self.headers = {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
        elif info.username and info.password:
            pair = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
            self.headers = {"Authorization": f"Basic {pair}"}
        else:
            self.headers = {}  # a client certificate in the TLS context


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not str(info.server).startswith("https"):
        return False
    cert: ClientCert | None = None
    if info.certificate_path and info.private_key_path:
        cert = (os.fsdecode(info.certificate_path), os.fsdecode(info.private_key_path))
    elif info.certificate_data and info.private_key_data:
        cert = (base64.b64decode(info.certificate_data), base64.b64decode(info.private_key_data))
    cadata = base64.b64decode(info.ca_data).decode() if info.ca_data else None
    return client_context(str(info.ca_path) if info.ca_path else None, cadata, bool(info.insecure), cert)


class Kube:
    """Async JSON access to the objects the operator owns."""

    def __init__(self, connection: Connection, qps: float = 50.0, burst: int = 100, connections: int = 100) -> None:
        self._conn = connection
        self._bucket = TokenBucket(qps, burst)
        self._host = connection.host
        self._timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        # trust_env off: aiohttp would re-read proxy variables and ~/.netrc in a worker thread on every request,
        # which under a burst cost more CPU than the requests themselves; the proxy is resolved once instead.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=connection.ssl, limit=connections),
            trust_env=False,
        )

    @classmethod
    async def connect(cls, qps: float = 50.0, burst: int = 100, connections: int = 100) -> Kube:
        info = await asyncio.to_thread(Connection.login)
        return cls(Connection(info), qps, burst, max(16, connections))

    @classmethod
    def for_url(cls, url: str, qps: float = 50.0, burst: int = 100) -> Kube:
        """A client of a plain-HTTP test server (no credentials)."""
        return cls(Connection(kopf.ConnectionInfo(server=url)), qps, burst)

    async def close(self) -> None:
        await self._session.close()

    async def _http(
        self, verb: str, url: str, data: bytes | None, headers: dict[str, str], timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """One request with the current credentials; a 401 reads them again and retries once (a rotated token)."""
        for attempt in (0, 1):
            resp = await self._session.request(
                verb, url, data=data, headers=headers | self._conn.headers, timeout=timeout, proxy=self._conn.proxy
            )
            if resp.status != 401 or attempt:
                return resp
            resp.release()
            await asyncio.to_thread(self._conn.refresh)
        raise AssertionError("unreachable")

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
        decode: bool = True,
    ) -> dict[str, Any]:
        """One API call; the answer is decoded only when `decode` (a create's echo is often not needed).

        kubernetes_asyncio supplies the connection (TLS, proxy) and the credentials (refreshed tokens included);
        the request itself skips its generic model layer, which walked every body twice in Python and was a
        sixth of the operator's CPU under a burst (bench/RESULTS.md).
        """
        raw = await self._send(verb, kind, namespace, name, body, sub, query, content_type, "application/json")
        if not decode or not raw:
            return {}
        result = orjson.loads(raw)
        return result if isinstance(result, dict) else {}

    async def pod_log(
        self, namespace: str, name: str, container: str, *, tail_lines: int = 50, limit_bytes: int = 16384
    ) -> str:
        """The end of one container's log (`pods/log`): the last `tail_lines` lines, at most `limit_bytes`."""
        query = {"container": container, "tailLines": str(tail_lines), "limitBytes": str(limit_bytes)}
        # The API server answers `Accept: text/plain` with 406 (found on the real node): the log comes back as plain
        # text under `*/*`, a refusal as a JSON Status, as kubectl asks for it.
        raw = await self._send("GET", "Pod", namespace, name, None, "log", query, "application/json", LOG_ACCEPT)
        return raw.decode(errors="replace")

    async def stream_pod_log(
        self,
        namespace: str,
        name: str,
        container: str,
        sink: Callable[[bytes], object],
        *,
        timeout: float,
        follow: bool = False,
    ) -> int:
        """One container's whole log (`pods/log`), handed to `sink` chunk by chunk as it arrives; returns its size.

        With `follow`, the read goes on until the container ends (a stopping replica's last words included).

        Unbounded on purpose: the caller keeps what it wants of it (the log archive keeps a head and a tail), so no
        log is ever held whole here. `timeout` bounds the whole read; past it ApiError is raised, after every chunk
        read so far was handed over.
        """
        await self._bucket.take()
        metrics.API_REQUESTS.labels("get", "pods/log").inc()
        headers = {"Accept": LOG_ACCEPT}  # not text/plain alone: the API server answers that with 406
        query = {"container": container} | ({"follow": "true"} if follow else {})
        url = f"{self._host}{_path('Pod', namespace, name, 'log')}?{urllib.parse.urlencode(query)}"
        size = 0
        try:
            async with await self._http(
                "GET", url, None, headers, aiohttp.ClientTimeout(total=max(timeout, 0.001))
            ) as resp:
                if resp.status >= 400:
                    metrics.API_ERRORS.labels("get", "pods/log", str(resp.status)).inc()
                    raise _api_error(resp.status, await resp.read())
                async for chunk in resp.content.iter_chunked(LOG_CHUNK_BYTES):
                    size += len(chunk)
                    sink(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            metrics.API_ERRORS.labels("get", "pods/log", "0").inc()
            message = f"timed out after {timeout:.0f}s" if isinstance(exc, TimeoutError) else str(exc)
            raise ApiError(0, type(exc).__name__, message or "connection failed") from None
        return size

    async def _send(
        self,
        verb: str,
        kind: str,
        namespace: str | None,
        name: str | None,
        body: Any,
        sub: str | None,
        query: Mapping[str, str] | None,
        content_type: str,
        accept: str,
    ) -> bytes:
        await self._bucket.take()
        resource = _KINDS[kind][1] + (f"/{sub}" if sub else "")
        metrics.API_REQUESTS.labels(verb.lower(), resource).inc()
        headers = {"Content-Type": content_type, "Accept": accept}
        url = self._host + _path(kind, namespace, name, sub)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = orjson.dumps(body) if body is not None else None
        try:
            async with await self._http(verb, url, data, headers, self._timeout) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            metrics.API_ERRORS.labels(verb.lower(), resource, "0").inc()
            raise ApiError(0, type(exc).__name__, str(exc) or "connection failed") from None
        if status >= 400:
            metrics.API_ERRORS.labels(verb.lower(), resource, str(status)).inc()
            raise _api_error(status, raw)
        return bytes(raw)

    # --- children ------------------------------------------------------------------------------------

    async def create(self, obj: Mapping[str, Any], decode: bool = True, dry_run: bool = False) -> dict[str, Any]:
        meta = obj["metadata"]
        query = {"fieldManager": c.FIELD_MANAGER} | ({"dryRun": "All"} if dry_run else {})
        return await self.request("POST", obj["kind"], meta.get("namespace"), body=obj, query=query, decode=decode)

    async def review_token(self, token: str, audience: str) -> dict[str, Any]:
        """The API server's verdict on a bearer token for `audience` (TokenReview status: authenticated, user, error).

        The token travels only in this request's body; it is never logged (errors carry the API's Status only).
        """
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {},
            "spec": {"token": token, "audiences": [audience]},
        }
        result = await self.request("POST", "TokenReview", None, body=body)
        return dict(result.get("status") or {})

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", kind, namespace, name)

    async def list_items(
        self, kind: str, namespace: str, *, label_selector: str = "", field_selector: str = ""
    ) -> list[dict[str, Any]]:
        """The items of one (unpaginated) list; for the few children of one run, or the Events of one object."""
        body = await self.request("GET", kind, namespace, query=_selectors(label_selector, field_selector))
        items = body.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def list_page(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = LIST_PAGE,
        cont: str = "",
    ) -> tuple[list[dict[str, Any]], str, str]:
        """One page of a list (all namespaces when `namespace` is None): its items, resourceVersion and continue token."""
        query = (
            _selectors(label_selector, field_selector) | {"limit": str(limit)} | ({"continue": cont} if cont else {})
        )
        try:
            body = await self.request("GET", kind, namespace, query=query)
        except ApiError as err:
            if err.status == 410:  # the continue token expired: the list must start over
                raise WatchExpiredError(err.status, err.reason, err.message) from None
            raise
        meta = body.get("metadata") or {}
        items = [item for item in body.get("items") or [] if isinstance(item, dict)]
        return items, str(meta.get("resourceVersion") or ""), str(meta.get("continue") or "")

    async def watch(
        self,
        kind: str,
        namespace: str | None,
        resource_version: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events after `resource_version` (bookmarks included) until the API server ends the stream.

        Raises WatchExpiredError when the version is too old (a new list is needed) and ApiError for any other refusal or
        a dropped connection. Lines are split here, not by aiohttp's readline, whose line limit a large object exceeds.
        """
        await self._bucket.take()
        resource = _KINDS[kind][1]
        metrics.API_REQUESTS.labels("watch", resource).inc()
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SERVER_TIMEOUT),
        } | _selectors(label_selector, field_selector)
        url = f"{self._host}{_path(kind, namespace)}?{urllib.parse.urlencode(query)}"
        timeout = aiohttp.ClientTimeout(total=WATCH_CLIENT_TIMEOUT)
        try:
            async with await self._http("GET", url, None, {"Accept": "application/json"}, timeout) as resp:
                if resp.status >= 400:
                    metrics.API_ERRORS.labels("watch", resource, str(resp.status)).inc()
                    err = _api_error(resp.status, await resp.read())
                    if resp.status == 410:
                        raise WatchExpiredError(err.status, err.reason, err.message)
                    raise err
                pending = b""
                async for chunk in resp.content.iter_any():
                    lines = (pending + chunk).split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        if line.strip():
                            event = orjson.loads(line)
                            if event.get("type") == "ERROR":
                                status = event.get("object") or {}
                                code = int(status.get("code") or 0)
                                cls = WatchExpiredError if code == 410 else ApiError
                                raise cls(code, str(status.get("reason") or ""), str(status.get("message") or ""))
                            yield event
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            metrics.API_ERRORS.labels("watch", resource, "0").inc()
            raise ApiError(0, type(exc).__name__, str(exc) or "connection failed") from None

    async def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> None:
        try:
            await self.request(
                "DELETE",
                kind,
                namespace,
                name,
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
                decode=False,
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
        now = datetime.now(UTC)
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
            "firstTimestamp": format_time(now),
            "lastTimestamp": format_time(now),
            "eventTime": format_time(now, "us"),
            "action": reason,
            "count": 1,
        }
        try:
            await self.request("POST", "Event", meta["namespace"], body=event, decode=False)
        except ApiError as err:  # events are best effort: never fail a reconcile because of one
            if err.status == 403 and "being terminated" in err.message:
                return  # the namespace goes, and the run's events with it
            logger.warning("could not post event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], err)


def _selectors(label_selector: str, field_selector: str) -> dict[str, str]:
    """The query of a list or watch narrowed by the API server; an empty selector is left out, not sent empty."""
    return {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}


def _api_error(status: int, raw: bytes) -> ApiError:
    message = reason = raw[:200].decode("utf-8", "replace")
    try:
        body = orjson.loads(raw or b"{}")
        message = str(body.get("message", message))
        reason = str(body.get("reason", reason))
    except (ValueError, TypeError, AttributeError):  # orjson.JSONDecodeError is a ValueError
        pass
    return ApiError(status, reason, message)
