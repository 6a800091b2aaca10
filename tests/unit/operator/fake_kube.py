"""An in-memory stand-in for `runyard_operator.k8s.Kube`, the operator's one API door, answering as the API server does.

Objects live in a dict keyed by (kind, namespace, name) and get uid, resourceVersion, generation and
creationTimestamp on create. Answers mirror the API server's: 404 NotFound, 409 AlreadyExists, 422 Invalid (a refusal
installed with `refuse`, a failed JSON-patch `test`), `generateName`, `dryRun=All` (validated, never stored), merge
patches (RFC 7386) with the status subresource's split (a status patch changes only status, a main patch never does),
deletion that waits for finalizers and garbage-collects dependents by owner UID, and equality label and field selectors.

Every change is delivered to `watchers` (event type, kind, body) the way kopf delivers watch events; `mutate` changes
an object as another controller would (the Job controller, the kubelet), without being counted as an operator call.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runyard import constants as c
from runyard_operator.k8s import ApiError
from runyard_operator.timestamps import format_time

Watcher = Callable[[str, str, dict[str, Any]], None]


@dataclass(frozen=True)
class Resource:
    group: str
    plural: str
    namespaced: bool = True
    status_subresource: bool = False
    fields: frozenset[str] = frozenset({"metadata.name", "metadata.namespace"})


_EVENT_FIELDS = frozenset(
    {"metadata.name", "metadata.namespace", "reason", "type", "source", "reportingComponent"}
    | {
        f"involvedObject.{f}"
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    }
)
RESOURCES: dict[str, Resource] = {
    c.KIND: Resource(c.GROUP, c.PLURAL, status_subresource=True),
    c.SWEEP_KIND: Resource(c.GROUP, c.SWEEP_PLURAL, status_subresource=True),
    "Job": Resource("batch", "jobs", status_subresource=True),
    "Pod": Resource(
        "", "pods", status_subresource=True, fields=frozenset({"metadata.name", "spec.nodeName", "status.phase"})
    ),
    "Service": Resource("", "services", status_subresource=True),
    "ConfigMap": Resource("", "configmaps"),
    "Secret": Resource("", "secrets"),
    "Event": Resource("", "events", fields=_EVENT_FIELDS),
    "Lease": Resource("coordination.k8s.io", "leases"),
    "Namespace": Resource("", "namespaces", namespaced=False, status_subresource=True),
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _resource(kind: str) -> Resource:
    return RESOURCES[kind]


def _what(kind: str, name: str) -> str:
    res = _resource(kind)
    return f'{res.plural}{"." + res.group if res.group else ""} "{name}"'


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _labels_match(labels: Mapping[str, str], selector: str) -> bool:
    for requirement in filter(None, (r.strip() for r in selector.split(","))):
        if "!=" in requirement:
            key, value = requirement.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in requirement:
            key, value = requirement.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif requirement.startswith("!"):
            if requirement[1:] in labels:
                return False
        elif " in " in requirement or " notin " in requirement:
            raise NotImplementedError(f"set-based selector {requirement!r}")
        elif requirement not in labels:
            return False
    return True


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


class FakeKube:
    """The same async methods as `Kube` (create, get, list_items, patch, json_patch, delete, request, post_event)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str, str]] = []  # (verb, kind, namespace, name) of every operator call
        self.patches: list[tuple[str, str, str, dict[str, Any], str | None]] = []  # (kind, ns, name, body, sub)
        self.events: list[tuple[str, str, str, str]] = []  # (object name, type, reason, message) posted
        self.watchers: list[Watcher] = []
        self.refusals: dict[tuple[str, str], tuple[int, str]] = {}
        self.logs: dict[tuple[str, str, str], str] = {}  # (namespace, pod, container) -> what the kubelet serves
        self.log_refusals: dict[tuple[str, str], ApiError] = {}  # (namespace, pod) -> how pods/log answers instead
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)
        self._names = itertools.count(1)

    # --- the test's side: objects others made, changes others make, refusals -------------------------------

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object someone else created (a user's Service, a pod the Job controller made)."""
        return self._store(copy.deepcopy(dict(obj)))

    def mutate(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch an object, status included, as another controller would; watchers see a MODIFIED event."""
        key = (kind, namespace if _resource(kind).namespaced else "", name)
        obj = merge_patch(self._existing(key), patch)
        return self._save(key, obj, "MODIFIED")

    def refuse(self, kind: str, name: str, status: int = 422, message: str = "") -> None:
        """Make creates (dry runs included) of `kind` `name` (or of a generateName prefix) fail like admission."""
        self.refusals[(kind, name)] = (status, message or f"{kind} {name!r} is invalid")

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _, _), o in sorted(self.objects.items()) if k == kind]

    def status_writes(self, name: str) -> list[dict[str, Any]]:
        """The status patches the operator sent for the TrainingRun `name`."""
        return [body["status"] for kind, _, n, body, sub in self.patches if kind == c.KIND and n == name and sub]

    # --- the Kube interface --------------------------------------------------------------------------------

    async def create(self, obj: Mapping[str, Any], decode: bool = True, dry_run: bool = False) -> dict[str, Any]:
        body = copy.deepcopy(dict(obj))
        kind = body["kind"]
        meta = body.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if _resource(kind).namespaced else ""
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value")
            meta["name"] = f"{meta['generateName']}{next(self._names):05x}"
        self.calls.append(("CREATE" + (" dry-run" if dry_run else ""), kind, namespace, meta["name"]))
        for (refused_kind, name), (status, message) in self.refusals.items():
            if refused_kind == kind and (name == meta["name"] or name == meta.get("generateName")):
                raise ApiError(status, "Invalid" if status == 422 else "Forbidden", message)
        key = (kind, namespace, meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f"{_what(kind, meta['name'])} already exists")
        if _resource(kind).status_subresource:
            body.pop("status", None)  # the status subresource: a create never sets it
        if kind == "Secret" and "stringData" in body:
            data = body.setdefault("data", {})
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in body.pop("stringData").items()})
        if dry_run:
            return self._stamped(body) if decode else {}
        stored = self._store(body)
        return copy.deepcopy(stored) if decode else {}

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("GET", kind, namespace, name))
        return copy.deepcopy(self._existing((kind, namespace, name)))

    async def list_items(
        self, kind: str, namespace: str, *, label_selector: str = "", field_selector: str = ""
    ) -> list[dict[str, Any]]:
        self.calls.append(("LIST", kind, namespace, ""))
        fields = [r.split("=", 1) for r in field_selector.replace("==", "=").split(",") if r]
        for path, _ in fields:
            if path.endswith("!") or path not in _resource(kind).fields:
                raise ApiError(400, "BadRequest", f'field label not supported: "{path}"')
        out = []
        for (k, ns, _), obj in sorted(self.objects.items()):
            if k != kind or (namespace and ns != namespace):
                continue
            if not _labels_match((obj["metadata"].get("labels") or {}), label_selector):
                continue
            if all(_field(obj, path) == value for path, value in fields):
                out.append(copy.deepcopy(obj))
        return out

    async def patch(
        self, kind: str, namespace: str, name: str, body: Mapping[str, Any], sub: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(("PATCH" + (f" {sub}" if sub else ""), kind, namespace, name))
        self.patches.append((kind, namespace, name, copy.deepcopy(dict(body)), sub))
        key = (kind, namespace, name)
        current = self._existing(key)
        if sub == "status":
            obj = merge_patch(current, {"status": body.get("status")} if "status" in body else {})
        else:
            # With a status subresource the main resource ignores status; a spec change is a new generation.
            changes = {k: v for k, v in body.items() if k != "status" or not _resource(kind).status_subresource}
            obj = merge_patch(current, changes)
            if obj.get("spec") != current.get("spec"):
                obj["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1
        return copy.deepcopy(self._save(key, obj, "MODIFIED"))

    async def json_patch(self, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(("JSONPATCH", kind, namespace, name))
        key = (kind, namespace, name)
        obj = copy.deepcopy(self._existing(key))
        for op in ops:
            *parents, last = _pointer(op["path"])
            node: Any = obj
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            if op["op"] == "test":
                have = node[int(last)] if isinstance(node, list) else node.get(last)
                if have != op["value"]:
                    raise ApiError(422, "Invalid", f"the server rejected our request: test failed at {op['path']}")
            elif op["op"] in ("add", "replace"):
                if isinstance(node, list):
                    node.insert(len(node) if last == "-" else int(last), op["value"])
                else:
                    node[last] = op["value"]
            elif op["op"] == "remove":
                try:
                    del node[int(last) if isinstance(node, list) else last]
                except (IndexError, KeyError):
                    raise ApiError(422, "Invalid", f"remove: no value at {op['path']}") from None
            else:
                raise NotImplementedError(op["op"])
        saved = self._save(key, obj, "MODIFIED")
        if saved["metadata"].get("deletionTimestamp") and not saved["metadata"].get("finalizers"):
            self._remove(key)
        return copy.deepcopy(saved)

    async def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> None:
        self.calls.append(("DELETE", kind, namespace, name))
        key = (kind, namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            return  # Kube.delete swallows 404: deleted is deleted
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                self._save(key, merge_patch(obj, {"metadata": {"deletionTimestamp": self._now()}}), "MODIFIED")
            return
        self._remove(key)

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
        if verb == "GET" and name:
            return await self.get(kind, namespace or "", name)
        if verb == "GET":
            labels, fields = (query or {}).get("labelSelector", ""), (query or {}).get("fieldSelector", "")
            items = await self.list_items(kind, namespace or "", label_selector=labels, field_selector=fields)
            return {"items": items}
        raise NotImplementedError(f"{verb} {kind} through request()")

    async def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = involved["metadata"]
        self.events.append((meta["name"], type_, reason, message))
        self.calls.append(("CREATE", "Event", meta["namespace"], meta["name"]))

    async def pod_log(
        self, namespace: str, name: str, container: str, *, tail_lines: int = 50, limit_bytes: int = 16384
    ) -> str:
        """The log a test put in `logs`, its last lines and bytes as the kubelet cuts them; 404 without the pod."""
        self.calls.append(("GET log", "Pod", namespace, name))
        self._existing(("Pod", namespace, name))
        lines = self.logs.get((namespace, name, container), "").splitlines(keepends=True)[-tail_lines:]
        return "".join(lines).encode()[-limit_bytes:].decode(errors="replace")

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
        """The whole log a test put in `logs`, in 64 KiB chunks; a refusal put in `log_refusals` is raised instead.

        A followed log is the same: the fake's containers have already said everything they will say."""
        self.calls.append(("GET log" + (" follow" if follow else ""), "Pod", namespace, name))
        self._existing(("Pod", namespace, name))
        refusal = self.log_refusals.get((namespace, name))
        if refusal is not None:
            raise refusal
        data = self.logs.get((namespace, name, container), "").encode()
        for start in range(0, len(data), 65536):
            sink(data[start : start + 65536])
        return len(data)

    # --- storage -------------------------------------------------------------------------------------------

    def _now(self) -> str:
        return format_time(datetime.now(UTC))

    def _stamped(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        meta.setdefault("uid", f"uid-{next(self._uid)}")
        meta.setdefault("creationTimestamp", self._now())
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._rv))
        return body

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        kind, meta = body["kind"], body["metadata"]
        if kind == "Pod" and not meta.get("name"):
            meta["name"] = f"{meta['generateName']}{next(self._names):05x}"
        key = (kind, meta.get("namespace", "") if _resource(kind).namespaced else "", meta["name"])
        return self._save(key, self._stamped(body), "ADDED")

    def _existing(self, key: tuple[str, str, str]) -> dict[str, Any]:
        obj = self.objects.get(key)
        if obj is None:
            raise ApiError(404, "NotFound", f"{_what(key[0], key[2])} not found")
        return obj

    def _save(self, key: tuple[str, str, str], obj: dict[str, Any], event: str) -> dict[str, Any]:
        if key[0] == c.KIND:  # the CRD's structural defaults, which the API server applies as it reads a run
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = obj
        self._notify(event, key[0], obj)
        return obj

    def _remove(self, key: tuple[str, str, str]) -> None:
        obj = self.objects.pop(key)
        self._notify("DELETED", key[0], obj)
        uid = obj["metadata"]["uid"]
        # Garbage collection: dependents go with their owner (foreground or background alike, here at once), unless
        # a finalizer holds them.
        for dep_key, dep in list(self.objects.items()):
            owners = dep["metadata"].get("ownerReferences") or []
            if dep_key not in self.objects or not any(o.get("uid") == uid for o in owners):
                continue
            if dep["metadata"].get("finalizers"):
                self._save(dep_key, merge_patch(dep, {"metadata": {"deletionTimestamp": self._now()}}), "MODIFIED")
            else:
                self._remove(dep_key)

    def _notify(self, event: str, kind: str, obj: dict[str, Any]) -> None:
        for watcher in self.watchers:
            watcher(event, kind, copy.deepcopy(obj))
