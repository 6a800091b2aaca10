"""`runyard.Client`: submit, inspect, watch, wait for, stream logs of and delete TrainingRuns on a cluster.

The Kubernetes client is imported when a `Client` is created, never at `import runyard` time. Every method
returns the same pydantic models the CRD is generated from, and raises the typed errors of `runyard.exceptions`.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from runyard import constants as c
from runyard import frameworks
from runyard.api import Phase, StoppedLogs, TrainingRun
from runyard.artifacts import logs as lg
from runyard.artifacts.store import LOGS_DIR, StoreURI, is_rank_name, rank_name
from runyard.exceptions import (
    AlreadyExistsError,
    ApiError,
    ClientError,
    NotFoundError,
    RunFailedError,
    ValidationFailedError,
    WaitTimeoutError,
)
from runyard.validation import (
    MAX_MANIFEST_BYTES,
    decode_text,
    is_manifest_path,
    load_manifests,
    namespace_problem,
    run_name_problem,
    validate_manifest,
    yaml_error_message,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["Client", "LogLine", "Replica", "RunEvent", "WatchEvent"]

T = TypeVar("T")
TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Bounds every non-streaming API call, so a dead API server surfaces as ApiError instead of a hang.
REQUEST_TIMEOUT = 30.0
# pods/log is proxied through the kubelet; nodes without one (kwok) make the API server wait for a dial timeout.
LOG_REQUEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by `Client.watch`: `ADDED`, `MODIFIED` or `DELETED`, and the run after it."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    run: TrainingRun


@dataclass(frozen=True)
class LogLine:
    """One line of a replica's log. `notice` lines come from Runyard (no logs yet, gang restart...), not the pod."""

    role: str
    index: int
    pod: str
    text: str
    restart_attempt: int = 0
    notice: bool = False

    @property
    def prefix(self) -> str:
        """`[role-index]`, the prefix every line is printed with."""
        return f"[{self.role}-{self.index}]"

    def __str__(self) -> str:
        return f"{self.prefix} {self.text}"


@dataclass(frozen=True)
class RunEvent:
    """A Kubernetes Event about the run or one of its Jobs and pods."""

    type: str
    reason: str
    message: str
    kind: str
    object_name: str
    count: int
    last_seen: datetime | None


@dataclass(frozen=True)
class _Pod:
    name: str
    uid: str
    role: str
    index: int
    attempt: int
    phase: str
    created: datetime | None
    node: str = ""
    ip: str = ""


@dataclass(frozen=True)
class Replica:
    """One pod of a run: which replica it is, where it runs and in which restart attempt."""

    role: str
    index: int
    pod: str
    phase: str
    node: str
    ip: str
    restart_attempt: int


def _phase(run: TrainingRun) -> Phase | None:
    return run.status.phase if run.status else None


def _status_is_current(run: TrainingRun) -> bool:
    # A status computed for an older generation (e.g. right after a resume) must not end a wait early
    # (the Kubeflow SDK's kubeflow/sdk#803 class of bug): trust it only once the operator has seen this spec.
    status, generation = run.status, run.metadata.generation
    if status is None or status.observed_generation is None or generation is None:
        return True
    return status.observed_generation >= generation


def _label_selector(labels: Mapping[str, str] | str | None) -> str | None:
    if labels is None or isinstance(labels, str):
        return labels or None
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None


def _api_message(exc: Any) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {}
    with contextlib.suppress(TypeError, ValueError):
        body = json.loads(exc.body) if exc.body else {}
    message = body.get("message") or exc.reason or str(exc)
    return str(message), body


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _connection_reason(exc: BaseException) -> str:
    """Why a connection failed, without urllib3's pool and URL noise: `[Errno 111] Connection refused`."""
    reason = getattr(exc, "reason", None)  # MaxRetryError: the last attempt's error
    text = _one_line(reason if isinstance(reason, BaseException) else exc)
    return text.rsplit("Failed to establish a new connection: ", 1)[-1]


def _kubeconfig_files(kubeconfig: str | Path | None, context: str | None) -> builtins.list[Path] | None:
    """The kubeconfig files to load, like kubectl: `kubeconfig`, else `$KUBECONFIG`, else ~/.kube/config;
    None for the in-cluster service account (no file, inside a pod, no `context`)."""
    if kubeconfig is not None:
        return [Path(kubeconfig).expanduser()]
    in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ and context is None
    env = [Path(p).expanduser() for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if env:
        existing = [p for p in env if p.exists()]
        if existing or in_cluster:
            return existing or None
        names = ", ".join(map(str, env))
        raise ApiError(f"no usable Kubernetes configuration: $KUBECONFIG names no existing file ({names})")
    default = Path.home() / ".kube" / "config"
    if default.exists():
        return [default]
    if in_cluster:
        return None
    raise ApiError(
        f"no usable Kubernetes configuration: no {default}; pass a kubeconfig (--kubeconfig) or set $KUBECONFIG"
    )


def _kubeconfig_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError as exc:
        raise ApiError(f"kubeconfig {path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ApiError(f"kubeconfig {path}: is a directory, not a file") from exc
    except OSError as exc:
        raise ApiError(f"kubeconfig {path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_MANIFEST_BYTES:
        raise ApiError(f"kubeconfig {path}: too large: more than {MAX_MANIFEST_BYTES} bytes")
    return data


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    """The kubeconfig at `path` as a mapping whose lists hold mappings; ApiError saying what is wrong otherwise."""
    import yaml

    try:
        config = yaml.safe_load(decode_text(_kubeconfig_bytes(path)))
    except yaml.YAMLError as exc:
        raise ApiError(f"kubeconfig {path}: invalid YAML: {yaml_error_message(exc)}") from exc
    except (ValueError, RecursionError) as exc:
        raise ApiError(f"kubeconfig {path}: {_one_line(exc)}") from exc
    if config is None:
        raise ApiError(f"kubeconfig {path}: the file is empty")
    if not isinstance(config, dict):
        raise ApiError(f"kubeconfig {path}: not a kubeconfig (the YAML is a {type(config).__name__}, not a mapping)")
    for key in ("clusters", "contexts", "users"):
        entries = config.get(key)
        if entries is not None and not (
            isinstance(entries, builtins.list) and all(isinstance(e, dict) and "name" in e for e in entries)
        ):
            raise ApiError(f"kubeconfig {path}: `{key}` must be a list of mappings with a `name`")
    return config


def _context_namespace(configs: builtins.list[dict[str, Any]], context: str | None, label: str) -> str | None:
    """The namespace of the context in use (`context`, else the first file's current-context), if it sets one."""
    contexts = {
        str(e["name"]): e.get("context") for config in reversed(configs) for e in reversed(config.get("contexts") or [])
    }
    if context is not None and context not in contexts:
        known = ", ".join(sorted(contexts)) or "none"
        raise ApiError(f"{label}: no context {context!r} (contexts: {known})")
    chosen_name = context or str(configs[0].get("current-context"))
    chosen = contexts.get(chosen_name)
    namespace = chosen.get("namespace") if isinstance(chosen, dict) else None
    if namespace in (None, ""):
        return None
    problem = namespace_problem(namespace)
    if problem:
        raise ApiError(f"{label}: context {chosen_name!r}: {problem}")
    return str(namespace)


def _checked_manifest(run: TrainingRun | Mapping[str, Any] | str | Path, name: str | None) -> dict[str, Any]:
    """The manifest to create: server-set fields dropped, `name` applied, valid (or ValidationFailedError)."""
    manifest = _manifest_of(run)
    manifest.pop("status", None)
    metadata = manifest.get("metadata")
    if metadata is None and name is not None:
        metadata = manifest["metadata"] = {}
    if isinstance(metadata, dict):
        if name is not None:
            metadata["name"] = name
        for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"):
            metadata.pop(key, None)
    problems = validate_manifest(manifest)
    if problems:
        where = f"{run}: " if isinstance(run, str | Path) and is_manifest_path(run) else ""
        shown = metadata.get("name") if isinstance(metadata, dict) else None
        raise ValidationFailedError(
            f"{where}invalid TrainingRun {shown or '<unnamed>'}: " + "; ".join(map(str, problems)),
            [str(p) for p in problems],
        )
    return manifest


def _manifest_of(run: TrainingRun | Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A private, JSON-plain copy of the manifest `Client.submit` was given."""
    if isinstance(run, TrainingRun):
        manifest: Any = run.to_manifest()
    elif isinstance(run, Mapping):
        manifest = dict(run)
    elif isinstance(run, str | Path):
        manifest = _load_one(run)
    else:
        raise TypeError(f"submit() takes a TrainingRun, a mapping, a path or YAML text, not {type(run).__name__}")
    try:
        copied: dict[str, Any] = json.loads(json.dumps(manifest, default=str))
    except (TypeError, ValueError) as exc:  # non-string keys, a self-containing dict
        raise ValidationFailedError(f"the manifest is not plain data: {exc}", [str(exc)]) from exc
    return copied


def _load_one(source: str | Path) -> dict[str, Any]:
    source_name = str(source) if is_manifest_path(source) else "manifest text"
    try:
        docs = load_manifests(source)
    except ValueError as exc:
        raise ValidationFailedError(f"{source_name}: {exc}", [str(exc)]) from exc
    if len(docs) != 1:
        problem = f"expected one TrainingRun document, found {len(docs)}"
        raise ValidationFailedError(f"{source_name}: {problem}", [problem])
    return docs[0]


def _check(problem: str | None) -> None:
    if problem is not None:
        raise ValidationFailedError(problem, [problem])


class Client:
    """Talks to the TrainingRun API of one cluster and namespace.

    Args:
        kubeconfig: kubeconfig file; default `$KUBECONFIG` or `~/.kube/config`, else the in-cluster service account.
        context: kubeconfig context; default the current context.
        namespace: namespace of the runs; default the context's namespace, the pod's namespace in-cluster,
            else `default`.
        api_client: a ready `kubernetes.client.ApiClient` (tests, custom auth); skips the loading above.

    Raises:
        ApiError: no usable configuration was found (no kubeconfig, a file that is not one, an unknown context);
            the message names the file and the reason.
        ValidationFailedError: `namespace` is not a valid namespace name.

    Example:
        >>> from runyard import Client
        >>> client = Client(namespace="ml")                                  # doctest: +SKIP
        >>> run = client.submit("examples/pytorch-ddp.yaml")                 # doctest: +SKIP
        >>> client.wait(run.name, timeout=600).status.phase                  # doctest: +SKIP
        <Phase.SUCCEEDED: 'Succeeded'>
    """

    def __init__(
        self,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        namespace: str | None = None,
        *,
        api_client: ApiClient | None = None,
    ) -> None:
        from kubernetes import client as k8s

        self._k8s = k8s
        if namespace is not None:
            _check(namespace_problem(namespace))
        config_namespace: str | None = None
        if api_client is None:
            api_client, config_namespace = self._load(kubeconfig, context)
        self.api_client = api_client
        self.namespace = namespace if namespace is not None else config_namespace or "default"
        self._custom = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._batch = k8s.BatchV1Api(api_client)

    # --- configuration -----------------------------------------------------------------------------

    @staticmethod
    def _load(kubeconfig: str | Path | None, context: str | None) -> tuple[ApiClient, str | None]:
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config
        from kubernetes.config.config_exception import ConfigException

        files = _kubeconfig_files(kubeconfig, context)
        label = "in-cluster configuration" if files is None else "kubeconfig " + os.pathsep.join(map(str, files))
        try:
            if files is not None:
                configs = [_read_kubeconfig(path) for path in files]
                namespace = _context_namespace(configs, context, label)
                config_file = os.pathsep.join(str(path) for path in files)
                return k8s_config.new_client_from_config(config_file=config_file, context=context), namespace
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            namespace = IN_CLUSTER_NAMESPACE_FILE.read_text().strip() if IN_CLUSTER_NAMESPACE_FILE.exists() else None
            return k8s.ApiClient(configuration), namespace
        except ApiError:
            raise
        # The kubernetes loader raises TypeError, KeyError... on a kubeconfig of the wrong shape.
        except (ConfigException, OSError, TypeError, AttributeError, KeyError, ValueError) as exc:
            raise ApiError(f"{label}: {_one_line(exc)}") from exc

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.api_client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- error translation -------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise self._translate(what, exc) from exc
        except (HTTPError, OSError) as exc:
            host = self.api_client.configuration.host
            raise ApiError(f"{what}: cannot reach the API server {host}: {_connection_reason(exc)}") from exc

    @staticmethod
    def _translate(what: str, exc: Any) -> ClientError | ValidationFailedError:
        message, body = _api_message(exc)
        status = exc.status
        if status == 404:
            if "the server could not find the requested resource" in message:
                message = "the TrainingRun CRD is not installed in this cluster (kubectl apply -f crds/)"
            return NotFoundError(f"{what}: {message}", status=status, reason=exc.reason)
        if status == 409 and body.get("reason") == "AlreadyExists":
            return AlreadyExistsError(f"{what}: {message}", status=status, reason=exc.reason)
        if status in (400, 422):
            causes = (body.get("details") or {}).get("causes") or []
            problems = [f"{cause.get('field', '')}: {cause.get('message', '')}".strip(": ") for cause in causes]
            return ValidationFailedError(f"{what}: {message}", problems or [message])
        return ApiError(f"{what}: {message}", status=status, reason=exc.reason)

    # --- CRUD ----------------------------------------------------------------------------------------

    def _parse(self, obj: Mapping[str, Any]) -> TrainingRun:
        return TrainingRun.model_validate(dict(obj))

    def _ns(self, namespace: str | None) -> str:
        if namespace is None:
            return self.namespace
        _check(namespace_problem(namespace))
        return namespace

    def submit(
        self,
        run: TrainingRun | Mapping[str, Any] | str | Path,
        *,
        namespace: str | None = None,
        name: str | None = None,
        dry_run: bool = False,
    ) -> TrainingRun:
        """Validate a run client-side and create it.

        Args:
            run: a `TrainingRun`, a manifest dict, or a path to (or text of) a one-document YAML manifest. A str
                that looks like a path (one line ending in .yaml/.yml/.json, or with a `/`) must name a file.
            namespace: namespace to create it in; default the manifest's, then the client's.
            name: overrides `metadata.name` (submit one manifest several times).
            dry_run: ask the API server to validate (CRD schema and CEL rules) without creating anything.

        Returns:
            The created run as the API server returned it (uid, generation, defaults filled in).

        Raises:
            ValidationFailedError: the manifest is invalid (client-side checks or the API server's), or the file
                is missing, unreadable or not YAML; the message names the file or field and the reason.
            AlreadyExistsError: a run with this name exists.
            ApiError: any other API failure.

        Example:
            >>> client.submit("examples/pytorch-ddp.yaml", name="ddp-1")  # doctest: +SKIP
        """
        manifest = _checked_manifest(run, name)
        metadata = manifest["metadata"]
        ns = self._ns(namespace if namespace is not None else metadata.get("namespace") or None)
        metadata["namespace"] = ns
        created = self._call(
            f"create trainingrun {metadata['name']}",
            self._custom.create_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            ns,
            c.PLURAL,
            manifest,
            **({"dry_run": "All"} if dry_run else {}),
        )
        return self._parse(created)

    # --- sweeps -----------------------------------------------------------------------------------------

    def submit_sweep(self, sweep: Mapping[str, Any] | str | Path, *, namespace: str | None = None) -> dict[str, Any]:
        """Validate a TrainingRunSweep client-side and create it; returns the created object."""
        from runyard.local_sweep import load_sweep

        model = load_sweep(sweep if not isinstance(sweep, Mapping) else dict(sweep))
        manifest = model.model_dump(mode="json", by_alias=True, exclude_none=True)
        manifest.pop("status", None)
        ns = self._ns(namespace if namespace is not None else model.metadata.namespace or None)
        manifest["metadata"]["namespace"] = ns
        created = self._call(
            f"create trainingrunsweep {model.metadata.name}",
            self._custom.create_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            ns,
            c.SWEEP_PLURAL,
            manifest,
        )
        return dict(created)

    def get_sweep(self, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        """The TrainingRunSweep called `name`, with its status (trials, best trial, GPU-hours)."""
        _check(run_name_problem(name))
        obj = self._call(
            f"get trainingrunsweep {name}",
            self._custom.get_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            self._ns(namespace),
            c.SWEEP_PLURAL,
            name,
        )
        return dict(obj)

    def templates(self, run: Mapping[str, Any], *, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        """The template objects that apply to `run` as the operator would read them now: the cluster's default
        templates and the one `spec.templateRef` names (NotFoundError when it does not exist)."""
        listed = self._call(
            "list clustertrainingruntemplates",
            self._custom.list_cluster_custom_object,
            c.GROUP,
            c.VERSION,
            c.CLUSTER_TEMPLATE_PLURAL,
            label_selector=f"{c.LABEL_DEFAULT_TEMPLATE}=true",
        )
        found = [{**item, "kind": c.CLUSTER_TEMPLATE_KIND} for item in listed.get("items") or []]
        ref = (run.get("spec") or {}).get("templateRef")
        if isinstance(ref, Mapping) and ref.get("name"):
            kind, ref_name = str(ref.get("kind") or c.TEMPLATE_KIND), str(ref["name"])
            if kind == c.TEMPLATE_KIND:
                ns = self._ns(namespace if namespace is not None else (run.get("metadata") or {}).get("namespace"))
                obj = self._call(
                    f"get trainingruntemplate {ref_name}",
                    self._custom.get_namespaced_custom_object,
                    c.GROUP,
                    c.VERSION,
                    ns,
                    c.TEMPLATE_PLURAL,
                    ref_name,
                )
            else:
                obj = self._call(
                    f"get clustertrainingruntemplate {ref_name}",
                    self._custom.get_cluster_custom_object,
                    c.GROUP,
                    c.VERSION,
                    c.CLUSTER_TEMPLATE_PLURAL,
                    ref_name,
                )
            found.append({**obj, "kind": kind})
        return found

    def get(self, name: str, *, namespace: str | None = None) -> TrainingRun:
        """The run called `name`, with its current status.

        Args:
            name: the run's name.
            namespace: default the client's.

        Returns:
            The run.

        Raises:
            NotFoundError: no such run.
            ValidationFailedError: `name` or `namespace` cannot name a run or namespace.
            ApiError: any other API failure.

        Example:
            >>> client.get("pytorch-ddp").status.phase  # doctest: +SKIP
        """
        _check(run_name_problem(name))
        obj = self._call(
            f"get trainingrun {name}",
            self._custom.get_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            self._ns(namespace),
            c.PLURAL,
            name,
        )
        return self._parse(obj)

    def list(
        self,
        *,
        labels: Mapping[str, str] | str | None = None,
        phase: str | Phase | Sequence[str | Phase] | None = None,
        namespace: str | None = None,
        all_namespaces: bool = False,
    ) -> builtins.list[TrainingRun]:
        """Runs of the namespace (or of all namespaces), sorted by namespace and name.

        Args:
            labels: a label selector, as a dict (all must match) or selector text (`team=ml,tier!=dev`).
            phase: keep only runs in this phase (or any of these phases).
            namespace: default the client's.
            all_namespaces: list every namespace the credentials can read.

        Returns:
            The matching runs.

        Raises:
            ApiError: the API call failed.

        Example:
            >>> [r.name for r in client.list(phase="Running")]  # doctest: +SKIP
        """
        selector = _label_selector(labels)
        kwargs: dict[str, Any] = {"label_selector": selector} if selector else {}
        if all_namespaces:
            result = self._call(
                "list trainingruns",
                self._custom.list_cluster_custom_object,
                c.GROUP,
                c.VERSION,
                c.PLURAL,
                **kwargs,
            )
        else:
            result = self._call(
                "list trainingruns",
                self._custom.list_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                self._ns(namespace),
                c.PLURAL,
                **kwargs,
            )
        runs = [self._parse(item) for item in result.get("items", [])]
        if phase is not None:
            wanted = {Phase(phase)} if isinstance(phase, str) else {Phase(p) for p in phase}
            runs = [r for r in runs if _phase(r) in wanted]
        return sorted(runs, key=lambda r: (r.metadata.namespace or "", r.metadata.name or ""))

    def delete(self, name: str, *, namespace: str | None = None, wait: bool = False, timeout: float = 60) -> None:
        """Delete a run; its Jobs, pods and Services go with it (owner references).

        Args:
            name: the run's name.
            namespace: default the client's.
            wait: return only once the run is gone (the operator's finalizer has run).
            timeout: how long `wait` waits.

        Raises:
            NotFoundError: no such run.
            WaitTimeoutError: `wait` and the run still exists after `timeout` seconds.
            ApiError: any other API failure.

        Example:
            >>> client.delete("pytorch-ddp", wait=True)  # doctest: +SKIP
        """
        _check(run_name_problem(name))
        self._call(
            f"delete trainingrun {name}",
            self._custom.delete_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            self._ns(namespace),
            c.PLURAL,
            name,
            propagation_policy="Background",
        )
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get(name, namespace=namespace)
            except NotFoundError:
                return
            time.sleep(0.5)
        raise WaitTimeoutError(f"run {name} still exists {timeout:g}s after it was deleted")

    # --- watching and waiting ------------------------------------------------------------------------

    def watch(
        self,
        name: str | None = None,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | str | None = None,
        timeout: float | None = None,
    ) -> Iterator[WatchEvent]:
        """Status changes of one run (or of every run of the namespace), from the watch API.

        The current state comes first (one `ADDED` event per existing run); after that an event is yielded only
        when a run's status changes or it is deleted. Expired watches (HTTP 410) are resumed from a fresh list.

        Args:
            name: one run, or None for every run of the namespace.
            namespace: default the client's.
            labels: label selector (dict or text), as for `list`.
            timeout: stop after this many seconds; None watches until the caller stops iterating.

        Yields:
            WatchEvent(type, run) per change.

        Raises:
            ApiError: the API calls failed.

        Example:
            >>> for event in client.watch("pytorch-ddp", timeout=60):  # doctest: +SKIP
            ...     print(event.type, event.run.status.phase)
        """
        from kubernetes import watch as k8s_watch
        from kubernetes.client.exceptions import ApiException

        if name is not None:
            _check(run_name_problem(name))
        ns = self._ns(namespace)
        deadline = None if timeout is None else time.monotonic() + timeout
        kwargs: dict[str, Any] = {}
        if name:
            kwargs["field_selector"] = f"metadata.name={name}"
        selector = _label_selector(labels)
        if selector:
            kwargs["label_selector"] = selector
        seen: dict[str, Any] = {}

        def relist() -> tuple[str, builtins.list[WatchEvent]]:
            listing = self._call(
                "list trainingruns",
                self._custom.list_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                ns,
                c.PLURAL,
                **kwargs,
            )
            events: builtins.list[WatchEvent] = []
            current = set()
            for item in listing.get("items", []):
                key = item["metadata"]["name"]
                current.add(key)
                if seen.get(key, object()) != item.get("status"):
                    seen[key] = item.get("status")
                    events.append(WatchEvent("ADDED", self._parse(item)))
            for key in set(seen) - current:
                del seen[key]
            return str(listing["metadata"].get("resourceVersion", "")), events

        resource_version, initial = relist()
        yield from initial
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            # Server-side timeouts end each watch request cleanly; the loop reconnects until our own deadline.
            server_timeout = 60 if remaining is None else max(1, min(60, int(remaining + 0.999)))
            watcher = k8s_watch.Watch()
            expired = False
            try:
                stream = watcher.stream(
                    self._custom.list_namespaced_custom_object,
                    c.GROUP,
                    c.VERSION,
                    ns,
                    c.PLURAL,
                    resource_version=resource_version,
                    timeout_seconds=server_timeout,
                    allow_watch_bookmarks=True,
                    _request_timeout=server_timeout + 10,
                    **kwargs,
                )
                for raw in stream:
                    kind, obj = raw["type"], raw["raw_object"]
                    if kind == "ERROR":
                        expired = obj.get("code") == 410
                        if not expired:
                            raise ApiError(f"watch trainingruns: {obj.get('message', obj)}", status=obj.get("code"))
                        break
                    resource_version = obj["metadata"].get("resourceVersion", resource_version)
                    if kind == "BOOKMARK":
                        continue
                    key = obj["metadata"]["name"]
                    if kind == "DELETED":
                        seen.pop(key, None)
                        yield WatchEvent("DELETED", self._parse(obj))
                    elif seen.get(key, object()) != obj.get("status"):
                        seen[key] = obj.get("status")
                        yield WatchEvent(kind, self._parse(obj))
                    if deadline is not None and time.monotonic() >= deadline:
                        return
            except ApiException as exc:
                if exc.status != 410:
                    raise self._translate("watch trainingruns", exc) from exc
                expired = True
            except (OSError, ValueError) as exc:
                # A dropped connection (or urllib3's read timeout) ends this request only: reconnect below.
                if deadline is not None and time.monotonic() >= deadline:
                    return
                del exc
            finally:
                watcher.stop()
            if expired:
                resource_version, events = relist()
                yield from events

    def wait(
        self,
        name: str,
        for_: str | Phase = Phase.SUCCEEDED,
        *,
        timeout: float | None = 600,
        namespace: str | None = None,
        callback: Callable[[TrainingRun], None] | None = None,
    ) -> TrainingRun:
        """Block until the run reaches a phase.

        Waiting for a non-terminal phase (`Running`) also returns when the run already Succeeded. Statuses that
        predate the run's current spec generation are ignored, so a resumed run is not reported finished early.

        Args:
            name: the run's name.
            for_: the phase to wait for (`Succeeded`, `Running`, `Failed`...).
            timeout: seconds; None waits forever.
            namespace: default the client's.
            callback: called with the run on every status change (progress displays).

        Returns:
            The run in the wanted phase.

        Raises:
            RunFailedError: the run Failed (and `for_` is not Failed); `.failure` has role, pod, exit code, reason.
            WaitTimeoutError: the phase was not reached in time.
            NotFoundError: the run does not exist or was deleted while waiting.
            ApiError: any other API failure.

        Example:
            >>> try:                                                     # doctest: +SKIP
            ...     client.wait("pytorch-ddp", timeout=600)
            ... except RunFailedError as err:
            ...     print(err.failure.pod, err.exit_code)
        """
        target = Phase(for_)
        last = self.get(name, namespace=namespace)
        if (done := self._wait_check(WatchEvent("ADDED", last), target, callback)) is not None:
            return done
        for event in self.watch(name, namespace=namespace, timeout=timeout):
            last = event.run
            if (done := self._wait_check(event, target, callback)) is not None:
                return done
        phase = _phase(last)
        raise WaitTimeoutError(
            f"run {name} did not reach {target.value} within {timeout:g}s (phase {phase.value if phase else 'unknown'})",
            last,
        )

    @staticmethod
    def _wait_check(
        event: WatchEvent, target: Phase, callback: Callable[[TrainingRun], None] | None
    ) -> TrainingRun | None:
        run = event.run
        if event.type == "DELETED":
            raise NotFoundError(f"run {run.metadata.name} was deleted while waiting for {target.value}", status=404)
        if callback is not None:
            callback(run)
        phase = _phase(run)
        if phase is None or not _status_is_current(run):
            return None
        if phase == target:
            return run
        if phase == Phase.FAILED:
            raise RunFailedError(run)
        if phase == Phase.SUCCEEDED and target not in TERMINAL_PHASES:
            return run
        if phase == Phase.SUCCEEDED:
            raise WaitTimeoutError(f"run {run.metadata.name} Succeeded; it will never be {target.value}", run)
        return None

    # --- pods, logs and events -----------------------------------------------------------------------

    def replicas(self, name: str, namespace: str | None = None) -> builtins.list[Replica]:
        """The run's pods (every restart attempt still present), in role and index order.

        Args:
            name: the run.
            namespace: its namespace (default: the client's).

        Returns:
            One Replica per pod, with its node and pod IP once scheduled and started.
        """
        pods = sorted(self._pods(name, namespace), key=lambda p: (p.attempt, p.role, p.index))
        return [Replica(p.role, p.index, p.name, p.phase, p.node, p.ip, p.attempt) for p in pods]

    def _pods(self, name: str, namespace: str | None) -> builtins.list[_Pod]:
        result = self._call(
            f"list pods of {name}",
            self._core.list_namespaced_pod,
            self._ns(namespace),
            label_selector=f"{c.LABEL_RUN_NAME}={name}",
        )
        pods = []
        for pod in result.items:
            meta = pod.metadata
            labels, annotations = meta.labels or {}, meta.annotations or {}
            index_text = (
                annotations.get(c.ANNOTATION_JOB_COMPLETION_INDEX)
                or labels.get(c.ANNOTATION_JOB_COMPLETION_INDEX)
                or labels.get(c.LABEL_REPLICA_INDEX)
                or "0"
            )
            pods.append(
                _Pod(
                    name=meta.name,
                    uid=meta.uid,
                    role=labels.get(c.LABEL_ROLE, "?"),
                    index=int(index_text) if index_text.isdigit() else 0,
                    attempt=int(labels.get(c.LABEL_RESTART_ATTEMPT, "0") or 0),
                    phase=(pod.status.phase if pod.status else None) or "Unknown",
                    created=meta.creation_timestamp,
                    node=(pod.spec.node_name if pod.spec else None) or "",
                    ip=(pod.status.pod_ip if pod.status else None) or "",
                )
            )
        return pods

    @staticmethod
    def _ranks(run: TrainingRun) -> builtins.list[tuple[str, int]]:
        """(role, index) of every replica in canonical order; `--rank N` is the N-th of them."""
        return [(role, i) for role in frameworks.roles_of(run.spec) for i in range(run.spec.replicas[role].replicas)]

    @staticmethod
    def _select(pods: builtins.list[_Pod], wanted: set[tuple[str, int]] | None) -> builtins.list[_Pod]:
        if not pods:
            return []
        latest = max(p.attempt for p in pods)
        chosen = [p for p in pods if p.attempt == latest and (wanted is None or (p.role, p.index) in wanted)]
        order = {role: i for i, role in enumerate(frameworks.all_roles())}
        # A replaced pod (same index, same attempt) sorts after the one it replaced.
        return sorted(chosen, key=lambda p: (order.get(p.role, 99), p.index, p.created or datetime.min))

    def _wanted(self, run: TrainingRun, rank: int | None, role: str | None) -> set[tuple[str, int]] | None:
        if rank is None and role is None:
            return None
        ranks = self._ranks(run)
        if role is not None:
            if role not in run.spec.replicas:
                raise ValidationFailedError(
                    f"run {run.name} has no role {role!r}; roles: {', '.join(frameworks.roles_of(run.spec))}"
                )
            ranks = [r for r in ranks if r[0] == role]
            if rank is not None:
                ranks = [r for r in ranks if r[1] == rank]
        elif rank is not None:
            if not 0 <= rank < len(ranks):
                raise ValidationFailedError(f"run {run.name} has ranks 0..{len(ranks) - 1}, not {rank}")
            ranks = [ranks[rank]]
        return set(ranks)

    def logs(
        self,
        name: str,
        rank: int | None = None,
        *,
        role: str | None = None,
        follow: bool = False,
        namespace: str | None = None,
        poll_interval: float = 1.0,
        attempt: int | None = None,
        store: str | None = None,
    ) -> Iterator[LogLine]:
        """Log lines of the run's replicas (those of the newest gang-restart attempt), each with its `[role-index]`.

        Without `follow`, each replica's log is returned whole, one replica after another. With `follow`, lines of
        all replicas are interleaved as they arrive; replicas still Pending are picked up when they start, a gang
        restart switches to the new attempt's pods, and the iterator ends once the run finished and every stream
        ended. Replicas whose logs cannot be read (not started, or a node without a kubelet such as kwok's fake
        nodes, where the API server answers pods/log with an error) give one `notice` line instead of failing.

        A replica whose pod is gone (cleanPodPolicy, TTL, deleted Jobs, an earlier attempt) is read from the log
        archive the operator wrote to the run's artifact store (`status.artifacts.logs`, s3:// stores), after a
        `notice` line naming the archived file. s3:// archives are read with boto3 and this process's AWS
        environment (`AWS_ENDPOINT_URL` wins over the run's `spec.artifacts.s3.endpoint`), file:// ones from the
        local disk; pvc:// stores hold no archive. What replicas printed until a suspension or a Kueue preemption
        stopped them (`status.artifacts.logs.stops`) comes first for each rank, after its own `notice` line.

        Args:
            name: the run's name.
            rank: replica ordinal over all roles in canonical order (pytorch/jax/generic: the node index);
                with `role`, the index within that role.
            role: only this role's replicas.
            follow: stream until the run ends (a finished run, or an earlier attempt, is read once).
            namespace: default the client's.
            poll_interval: how often (seconds) `follow` looks for new pods.
            attempt: this gang-restart attempt (0 is the first) instead of the newest: its pods if they still
                exist, else its archive.
            store: the artifact store (as in `spec.artifacts.store`) whose archive to read when the run itself is
                gone (ttlSecondsAfterFinished deleted it).

        Yields:
            LogLine per line; `str(line)` is `[role-index] text`.

        Raises:
            NotFoundError: no such run (and, with `store`, no archive of it there).
            ValidationFailedError: `rank`, `role` or `attempt` does not exist in the run.
            ApiError: listing pods failed.

        Example:
            >>> for line in client.logs("pytorch-ddp", follow=True):  # doctest: +SKIP
            ...     print(line)
            >>> for line in client.logs("pytorch-ddp", attempt=0):  # doctest: +SKIP
            ...     print(line)  # the first attempt's lines, from its archive once its pods are gone
        """
        try:
            run = self.get(name, namespace=namespace)
        except NotFoundError:
            if store is None:
                raise
            yield from self._archived_logs_of_deleted_run(name, store, rank, role, attempt)
            return
        wanted = self._wanted(run, rank, role)
        current = (run.status.restarts if run.status else None) or 0
        if attempt is not None and attempt > current:
            raise ValidationFailedError(f"run {name} has attempts 0..{current}, not {attempt}")
        pods = self._pods(name, namespace)
        target = lg.select_attempt(attempt, current, {p.attempt for p in pods})
        live = self._select([p for p in pods if p.attempt == target], wanted)
        finished = _phase(run) in TERMINAL_PHASES and _status_is_current(run)
        if follow and target == current and not finished:
            yield from self._follow(name, namespace, wanted, poll_interval)
            return
        # A finished run, or an earlier attempt, has nothing more to say: read once (live pods, then the archive).
        gone = target < current or finished  # the attempt's pods existed once: missing ones are gone, not pending
        yield from self._logs_of_attempt(run, namespace, target, live, wanted, gone, attempt is not None, store)

    def _logs_of_attempt(
        self,
        run: TrainingRun,
        namespace: str | None,
        attempt: int,
        live: builtins.list[_Pod],
        wanted: set[tuple[str, int]] | None,
        gone: bool,
        asked: bool,
        store: str | None,
    ) -> Iterator[LogLine]:
        """One attempt's logs: live pods as they are, and the ranks whose pod is gone from the archive, rank order.

        When the attempt's pods are `gone` and nothing was archived, a notice per rank says why, if the attempt was
        `asked` for by number or the run has an archive status; a run without a store otherwise yields nothing, as
        before archives existed.
        """
        ranks = [r for r in self._ranks(run) if wanted is None or r in wanted]
        logs = run.status.artifacts.logs if run.status and run.status.artifacts else None
        archived = attempt in ((logs.attempts if logs else None) or [])
        stops = [s for s in (logs.stops if logs else None) or [] if s.attempt == attempt]
        from_archive = lg.archive_ranks(ranks, {(p.role, p.index) for p in live}, archived)
        order = {r: i for i, r in enumerate(self._ranks(run))}
        sources: builtins.list[tuple[int, int, _Pod | tuple[str, int]]] = [
            (order.get((p.role, p.index), len(order)), i, p) for i, p in enumerate(live)
        ]
        sources += [(order[r], len(live) + i, r) for i, r in enumerate(from_archive)]
        archive: lg.LogArchive | None = None
        entries: dict[str, lg.RankLog] | None = None
        if from_archive or stops:
            try:
                archive = self._log_archive(run, store)
                entries = {e.rank: e for e in archive.index(attempt) or ()} if from_archive else None
            except lg.LogArchiveError as exc:
                for role, index in from_archive or ranks:
                    yield LogLine(role, index, "", f"cannot read the log archive: {exc}", attempt, notice=True)
                sources = [s for s in sources if isinstance(s[2], _Pod)]
                archive, stops = None, []
        # Ranks with nothing but what their stopped replicas printed (a run still suspended) show that alone.
        shown = {(p.role, p.index) if isinstance(p, _Pod) else p for _, _, p in sources}
        stopped_only = [(order[r], -1, r) for r in ranks if r not in shown] if stops else []
        before: set[tuple[str, int]] = set()
        for _, position, source in sorted([*sources, *stopped_only], key=lambda s: s[:2]):
            rank = (source.role, source.index) if isinstance(source, _Pod) else source
            if archive is not None and rank not in before:
                # What a suspension stopped comes first: the attempt went on from there when the run resumed.
                before.add(rank)
                for stop in stops:
                    yield from self._read_stopped(archive, attempt, stop, *rank)
            if isinstance(source, _Pod):
                yield from self._read_log(source, namespace)
            elif archive is not None and position >= 0:
                yield from self._read_archived(archive, attempt, *source, entries)
        if not sources and not stops and gone and not archived and (asked or logs is not None):
            # Pods gone and no archive: say why, rather than "no pods (yet)" for an attempt that once had pods.
            has_store = bool(run.spec.artifacts.store or (run.status and run.status.artifacts))
            why = (logs.message if logs else None) or (
                "its logs were not archived" if has_store else "the run has no artifact store to archive them to"
            )
            for role, index in ranks:
                yield LogLine(role, index, "", f"no logs of attempt {attempt}: its pods are gone; {why}", attempt, True)

    def _log_archive(self, run: TrainingRun, store: str | None) -> lg.LogArchive:
        """The run's log archive, reached the way this process reaches the store (its AWS environment)."""
        artifacts = run.status.artifacts if run.status else None
        run_uri = (artifacts.store_uri if artifacts else None) or (
            StoreURI.parse(store).run(run.name).uri() if store else None
        )
        if not run_uri:
            raise lg.LogArchiveError(f"run {run.name} names no artifact store")
        s3 = run.spec.artifacts.s3
        # The spec's endpoint is the one pods use; a user reaching the store elsewhere sets AWS_ENDPOINT_URL.
        own = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        endpoint = None if own else (s3.endpoint if s3 else None)
        return lg.LogArchive(run_uri, endpoint=endpoint, region=s3.region if s3 else None)

    @staticmethod
    def _read_archived(
        archive: lg.LogArchive, attempt: int, role: str, index: int, entries: Mapping[str, lg.RankLog] | None
    ) -> Iterator[LogLine]:
        rank = rank_name(role, index)
        entry = (entries or {}).get(rank)
        pod = entry.pod if entry else ""
        path = lg.log_path(attempt, rank)

        def notice(text: str) -> LogLine:
            return LogLine(role, index, pod, text, attempt, notice=True)

        if entry is not None and not entry.archived:
            yield notice(f"no archived log of attempt {attempt}: {entry.error}")
            return
        header = [f"pod gone: attempt {attempt}'s log from the archive {archive.uri(path)}"]
        if entry is not None and entry.error:
            header.append(f"archived log incomplete: {entry.error}")
        missing = f"no archived log of attempt {attempt} at {archive.uri(path)}"
        yield from Client._archived_lines(
            archive, path, notice, header, missing, lambda text: LogLine(role, index, pod, text, attempt)
        )

    @staticmethod
    def _archived_lines(
        archive: lg.LogArchive,
        path: str,
        notice: Callable[[str], LogLine],
        header: Sequence[str],
        missing: str,
        line: Callable[[str], LogLine],
    ) -> Iterator[LogLine]:
        """One archived file as log lines after its `header` notices; a notice instead when it cannot be read."""
        try:
            data = archive.read(path)
        except lg.LogArchiveError as exc:
            yield notice(f"cannot read the log archive: {exc}")
            return
        if data is None:
            yield notice(missing)
            return
        yield from (notice(text) for text in header)
        yield from (line(text) for text in data.decode(errors="replace").splitlines())

    @staticmethod
    def _read_stopped(
        archive: lg.LogArchive, attempt: int, stop: StoppedLogs, role: str, index: int
    ) -> Iterator[LogLine]:
        """What one rank printed until a suspension or a preemption stopped it (archived while it stopped)."""
        path = lg.log_path(attempt, rank_name(role, index), stop.segment)
        when = f"{stop.reason or 'stopped'} at {stop.time}" if stop.time else (stop.reason or "stopped")
        why = f": {stop.message}" if stop.message else ""
        yield from Client._archived_lines(
            archive,
            path,
            lambda text: LogLine(role, index, "", text, attempt, notice=True),
            [f"{when}: the stopped replica's log from the archive {archive.uri(path)}"],
            f"no archived log of the replica stopped ({when}){why}",
            lambda text: LogLine(role, index, "", text, attempt),
        )

    def _archived_logs_of_deleted_run(
        self, name: str, store: str, rank: int | None, role: str | None, attempt: int | None
    ) -> Iterator[LogLine]:
        """The archive of a run that no longer exists, found under `store` by the run's name."""
        try:
            archive = lg.LogArchive(StoreURI.parse(store).run(name).uri())
            attempts = archive.attempts()
        except (ValueError, lg.LogArchiveError) as exc:
            raise NotFoundError(f"run {name} not found, and its log archive cannot be read: {exc}") from None
        if not attempts:
            raise NotFoundError(f"run {name} not found, and {archive.uri(LOGS_DIR)} holds no log archive")
        target = attempts[-1] if attempt is None else attempt
        if target not in attempts:
            raise ValidationFailedError(
                f"run {name}: attempt {target} is not archived; archived: {', '.join(map(str, attempts))}"
            )
        try:
            entries = {e.rank: e for e in archive.index(target) or ()}
        except lg.LogArchiveError as exc:
            raise NotFoundError(f"run {name} not found, and its log archive cannot be read: {exc}") from None
        order = {r: i for i, r in enumerate(frameworks.all_roles())}
        ranks = sorted(
            ((r.rsplit("-", 1)[0], int(r.rsplit("-", 1)[1])) for r in entries if is_rank_name(r)),
            key=lambda r: (order.get(r[0], len(order)), r[1]),
        )
        if role is not None:
            ranks = [r for r in ranks if r[0] == role and (rank is None or r[1] == rank)]
        elif rank is not None:
            ranks = ranks[rank : rank + 1]
        if not ranks:
            raise ValidationFailedError(f"run {name}: no such replica in the archive of attempt {target}")
        for r in ranks:
            yield from self._read_archived(archive, target, *r, entries)

    def _read_log(self, pod: _Pod, namespace: str | None) -> Iterator[LogLine]:
        try:
            # The raw body: the kubernetes client (v36) turns a deserialized log into the repr of its bytes ("b'...'").
            response = self._call(
                f"logs of {pod.name}",
                self._core.read_namespaced_pod_log,
                pod.name,
                self._ns(namespace),
                container=c.CONTAINER_NAME,
                _preload_content=False,
                _request_timeout=LOG_REQUEST_TIMEOUT,
            )
        except (ClientError, ValidationFailedError) as exc:
            yield self._notice(pod, f"no logs ({pod.phase}): {exc}")
            return
        try:
            text = response.data.decode(errors="replace")
        finally:
            response.release_conn()
        for line in text.splitlines():
            yield LogLine(pod.role, pod.index, pod.name, line, pod.attempt)

    @staticmethod
    def _notice(pod: _Pod, text: str) -> LogLine:
        return LogLine(pod.role, pod.index, pod.name, text, pod.attempt, notice=True)

    def _stream_pod(self, pod: _Pod, namespace: str | None, out: queue.Queue[Any], streams: builtins.list[Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._core.read_namespaced_pod_log(
                pod.name,
                self._ns(namespace),
                container=c.CONTAINER_NAME,
                follow=True,
                _preload_content=False,
                _request_timeout=(LOG_REQUEST_TIMEOUT, None),
            )
        except ApiException as exc:
            message, _ = _api_message(exc)
            out.put(self._notice(pod, f"no logs ({pod.phase}): {message}"))
            out.put(("done", pod.uid))
            return
        except Exception as exc:  # connection errors of any kind: one notice, never a crash
            out.put(self._notice(pod, f"no logs ({pod.phase}): {exc}"))
            out.put(("done", pod.uid))
            return
        streams.append(response)
        try:
            pending = b""
            for chunk in response.stream(4096, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    out.put(LogLine(pod.role, pod.index, pod.name, line.decode(errors="replace"), pod.attempt))
            if pending:
                out.put(LogLine(pod.role, pod.index, pod.name, pending.decode(errors="replace"), pod.attempt))
        except Exception as exc:  # the pod was deleted (gang restart) or the connection dropped
            out.put(self._notice(pod, f"log stream ended: {exc.__class__.__name__}"))
        finally:
            response.release_conn()
            out.put(("done", pod.uid))

    def _follow(
        self, name: str, namespace: str | None, wanted: set[tuple[str, int]] | None, poll_interval: float
    ) -> Iterator[LogLine]:
        out: queue.Queue[Any] = queue.Queue()
        streams: builtins.list[Any] = []
        started: set[str] = set()
        running: set[str] = set()
        attempt: int | None = None
        try:
            while True:
                try:
                    run = self.get(name, namespace=namespace)
                except NotFoundError:
                    return
                finished = _phase(run) in TERMINAL_PHASES and _status_is_current(run)
                pods = self._select(self._pods(name, namespace), wanted)
                if pods and attempt is not None and pods[0].attempt != attempt:
                    first = pods[0]
                    yield self._notice(first, f"gang restart: following restart attempt {first.attempt}")
                for pod in pods:
                    attempt = pod.attempt
                    if pod.uid in started or pod.phase == "Pending":
                        continue
                    started.add(pod.uid)
                    running.add(pod.uid)
                    threading.Thread(target=self._stream_pod, args=(pod, namespace, out, streams), daemon=True).start()
                deadline = time.monotonic() + poll_interval
                while (remaining := deadline - time.monotonic()) > 0 or (finished and running):
                    try:
                        item = out.get(timeout=max(remaining, 0.05))
                    except queue.Empty:
                        continue
                    if isinstance(item, tuple):
                        running.discard(item[1])
                    else:
                        yield item
                if finished and not running:
                    return
        finally:
            for response in list(streams):
                response.close()

    def events(self, name: str, *, namespace: str | None = None) -> builtins.list[RunEvent]:
        """Kubernetes Events of the run, its Jobs and its pods, oldest first.

        Args:
            name: the run's name.
            namespace: default the client's.

        Returns:
            The events (Events expire after an hour by default).

        Raises:
            ApiError: the API calls failed.

        Example:
            >>> [e.reason for e in client.events("pytorch-ddp")]  # doctest: +SKIP
        """
        _check(run_name_problem(name))
        ns = self._ns(namespace)
        objects = {("TrainingRun", name)}
        jobs = self._call(
            f"list jobs of {name}", self._batch.list_namespaced_job, ns, label_selector=f"{c.LABEL_RUN_NAME}={name}"
        )
        objects |= {("Job", j.metadata.name) for j in jobs.items}
        objects |= {("Pod", p.name) for p in self._pods(name, namespace)}
        result = self._call(f"list events of {name}", self._core.list_namespaced_event, ns)
        events = []
        for event in result.items:
            involved = event.involved_object
            if (involved.kind, involved.name) not in objects:
                continue
            last = (
                event.last_timestamp or event.event_time or event.first_timestamp or event.metadata.creation_timestamp
            )
            events.append(
                RunEvent(
                    type=event.type or "Normal",
                    reason=event.reason or "",
                    message=(event.message or "").strip(),
                    kind=involved.kind,
                    object_name=involved.name,
                    count=event.count or 1,
                    last_seen=last,
                )
            )
        return sorted(events, key=lambda e: e.last_seen.timestamp() if e.last_seen else 0.0)
