"""The reconcile loop: caches fed by watch events, one level-based reconcile per TrainingRun, actions through k8s.py."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ctypes
import gc
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from runyard import constants as c
from runyard import frameworks, templating
from runyard.api import TrainingRun
from runyard.builders import BuildContext, build_children, build_pod_template
from runyard.frameworks.ssh import build_ssh_secret
from runyard_operator import metrics
from runyard_operator.k8s import ApiError, Kube
from runyard_operator.observe import JobView, PodView, summarize_job, summarize_pod
from runyard_operator.plugins import PluginContext, RunPlugin, StatusContributions
from runyard_operator.policies import admission as adm
from runyard_operator.policies import conditions as cond
from runyard_operator.policies import lifecycle as lc
from runyard_operator.policies import stop as stop_policy
from runyard_operator.policies import triage
from runyard_operator.workqueue import WorkQueue

logger = logging.getLogger(__name__)

RunKey = tuple[str, str]  # (namespace, name)

# Only these metadata fields are part of the API model; the rest (managedFields, resourceVersion...) is not validated.
_META_FIELDS = ("name", "namespace", "uid", "generation", "labels", "annotations")


class CachedRun:
    """A run as the cache keeps it: its body as compact JSON plus the few fields read without a reconcile.

    A decoded body costs about 8 KB of Python objects, its JSON about 2 KB; at 10,000 runs that difference is
    most of the operator's memory (bench/RESULTS.md). A reconcile decodes its own fresh, mutable copy.
    """

    __slots__ = ("_raw", "deleting", "framework", "phase", "rv", "uid")

    def __init__(self, body: Mapping[str, Any]) -> None:
        compact = _compact(body)
        self._raw = json.dumps(compact, separators=(",", ":")).encode()
        meta = compact.get("metadata") or {}
        self.uid = str(meta.get("uid") or "")
        self.rv = _rv(compact)
        self.deleting = bool(meta.get("deletionTimestamp"))
        self.phase = str((compact.get("status") or {}).get("phase") or "")
        self.framework = str((compact.get("spec") or {}).get("framework"))

    def body(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self._raw)
        return result


@dataclass
class RunCache:
    """Latest bodies of runs and summaries of their children, fed by watch events."""

    runs: dict[RunKey, CachedRun] = field(default_factory=dict)
    uid_to_key: dict[str, RunKey] = field(default_factory=dict)
    jobs: dict[str, dict[str, JobView]] = field(default_factory=dict)
    pods: dict[str, dict[str, PodView]] = field(default_factory=dict)
    pod_runs: dict[str, str] = field(default_factory=dict)  # pod UID -> run UID (its label), for owned_pod
    created: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    # Job UID -> {Event UID: (last time, message)}: the Job controller's FailedCreate Events (a field-selected watch)
    refused: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)


# Status fields whose in-progress changes may be coalesced; anything else (restarts, failure, plugin data) is urgent,
# and so is any write that carries a plugin's contribution.
_COALESCIBLE = frozenset(
    {
        "phase",
        "message",
        "conditions",
        "readyReplicas",
        "totalReplicas",
        "nodes",
        "gpus",
        "observedGeneration",
        "startTime",
        "schedulingMessage",
        "template",
    }
)
_COALESCIBLE_PHASES = frozenset({lc.PENDING, lc.STARTING, lc.RUNNING, lc.QUEUED, lc.SUSPENDED})
# How many coalescing windows quiet progress (Decision.quiet) waits before it is written, by default 5 min on the way
# in (a run reads Pending until then, the CRD's default) and 10 s for counts moving while it runs. The start's hold
# outlasts a scheduler backlog: in the 2,000-run burst (bench/peer.py) runs waited up to about 220 s for their pods,
# and a 60 s hold cost one or two writes per run that said only "still starting" (3.0 writes per run, not 2).
QUIET_START_HOLD_FACTOR = 300
QUIET_RUNNING_HOLD_FACTOR = 10


def _rv(body: Mapping[str, Any]) -> int:
    try:
        return int(body.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _compact(body: Mapping[str, Any]) -> dict[str, Any]:
    """Drop managedFields (often the largest part of an object) before caching."""
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


# After a burst drains, hand the burst's transient buffers back to the OS (see release_memory).
_TRIM_AFTER_RECONCILES = 200
_TRIM_QUIET_SECONDS = 5.0


def release_memory() -> None:
    """Collect cycles and return free heap pages to the OS (glibc); a no-op where malloc_trim does not exist.

    A burst leaves tens of MB of freed response and event buffers in the C heap, which glibc keeps mapped;
    without this, RSS shows the burst's high-water mark for the life of the process.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


_NAMESPACE_LABELS_TTL = 30.0
# Templates are read when a run is first seen (then kept in its status), through a short-lived cache: a burst of
# 2,000 runs costs one list of the default templates per interval, not one per run.
_TEMPLATE_TTL = 10.0


class TemplateError(Exception):
    """The run's template cannot be applied (missing or invalid); `reason` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ChildExistsError(Exception):
    """A child's name is taken (409): whether by the run's own object is for the caller to check."""


class ChildRefusedError(Exception):
    """The API server refused a child (invalid, forbidden) or its name is held by an object the run does not own."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _consequential(previous: Mapping[str, Any], decision: lc.Decision) -> bool:
    """A decision that cannot be taken back: a gang restart or an end (to be confirmed by a fresh read)."""
    phase = decision.status.get("phase")
    return phase != previous.get("phase") and phase in (lc.FAILED, lc.SUCCEEDED, lc.RESTARTING)


def _refuse(
    facts: lc.RunFacts, previous: Mapping[str, Any], decision: lc.Decision, reason: str, message: str, now: datetime
) -> None:
    """Turn the decision into a terminal refusal: nothing more is created, and the status says why."""
    status = decision.status
    status |= {"phase": lc.FAILED, "message": message, "completionTime": lc.fmt_time(now), "gpus": 0}
    status["failure"] = triage.triage({"reason": reason, "message": message}, {})
    status["conditions"] = cond.compute(
        previous.get("conditions") or [], lc.FAILED, reason, message, facts.generation, now
    )
    decision.create_children = False
    decision.requeue_at = (
        now + timedelta(seconds=facts.ttl_seconds_after_finished)
        if facts.ttl_seconds_after_finished is not None
        else None
    )
    decision.events.append(("Warning", reason, message))


def _superseded(cached: Any, meta: Mapping[str, Any]) -> bool:
    """An event for an older attempt's Job than the cached one of the same name (Jobs are `<run>-<role>` each attempt).

    A watch that reconnects (an apiserver restart) can deliver the old Job's last MODIFIED or DELETED after the new
    Job was created; keyed by name, it would replace or remove the new Job's entry.
    """
    if cached is None or not meta.get("uid") or cached.uid == meta.get("uid"):
        return False
    try:
        attempt = int((meta.get("labels") or {}).get(c.LABEL_RESTART_ATTEMPT) or 0)
    except ValueError:
        return False
    return bool(attempt < cached.attempt)


def run_facts(run: TrainingRun) -> lc.RunFacts:
    spec, policy = run.spec, run.spec.run_policy
    retry = policy.retry_on
    return lc.RunFacts(
        name=run.name,
        generation=int(run.metadata.generation or 0),
        framework=spec.framework,
        replicas={role: r.replicas for role, r in spec.replicas.items()},
        success_roles=frameworks.of(spec).success_roles(spec),
        backoff_limit=policy.backoff_limit,
        backoff_seconds=float(policy.backoff_seconds),
        retry=lc.RetryPolicy.of(
            retry.exit_codes,
            retry.reasons,
            [str(cat) for cat in retry.categories] if retry.categories is not None else None,
        ),
        active_deadline_seconds=policy.active_deadline_seconds,
        start_timeout_seconds=policy.start_timeout_seconds,
        ttl_seconds_after_finished=policy.ttl_seconds_after_finished,
        clean_pod_policy=str(policy.clean_pod_policy),
        suspend=policy.suspend,
        queue_name=spec.queue_name,
        rank_layout=frameworks.of(spec).rank_layout(spec),
        stall_timeout_seconds=policy.stall_timeout_seconds,
        restart_on_stall=policy.restart_on_stall,
    )


def _parse_doc(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion", c.API_VERSION),
        "kind": body.get("kind", c.KIND),
        "metadata": {k: meta[k] for k in _META_FIELDS if k in meta},
        "spec": body.get("spec"),
    }


def parse_run(body: Mapping[str, Any]) -> TrainingRun:
    return TrainingRun.model_validate(_parse_doc(body))


def _problems(err: ValidationError) -> list[str]:
    return [
        f"spec.{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
        if e["loc"] and e["loc"][0] == "spec"
        else f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in err.errors()[:10]
    ]


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning `old` into `new`: removed keys become null at every depth, since a merge
    patch merges nested objects (status.progress without its silentRanks would otherwise keep them); lists whole."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        patch[key] = (
            status_patch(before, value) if isinstance(before, Mapping) and isinstance(value, Mapping) else value
        )
    patch.update({k: None for k in old if k not in new})
    return patch


class Controller:
    """Owns the caches and the work queue; every change to the cluster goes through `self.kube`."""

    def __init__(
        self,
        kube: Kube,
        plugins: Sequence[RunPlugin] = (),
        workers: int = 16,
        ssh_keygen: Any = None,
        coalesce_seconds: float = 1.0,
        namespace_policy: adm.NamespacePolicy | None = None,
        pod_policy: adm.PodPolicy | None = None,
    ) -> None:
        self.kube = kube
        self.cache = RunCache()
        self.plugins = list(plugins)
        # The plugins' status changes: the controller is the status subresource's only writer and merges them in.
        self.contributions = StatusContributions()
        self.queue = WorkQueue(self.reconcile, workers=workers)
        self._ssh_keygen = ssh_keygen
        self.namespace_policy = namespace_policy or adm.NamespacePolicy()
        self.pod_policy = pod_policy or adm.PodPolicy()
        self._ns_labels: dict[str, tuple[float, dict[str, str]]] = {}
        self._templates: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._failures: dict[RunKey, int] = {}
        self.coalesce_seconds = coalesce_seconds
        self._first_seen: dict[RunKey, float] = {}
        self._last_write: dict[RunKey, float] = {}
        self._since_trim = 0
        self._trim_timer: asyncio.TimerHandle | None = None
        metrics.register_collector(metrics.RunsByPhase(self._phases))

    # --- cache feeding (called from the kopf event handlers; never block) --------------------------------

    def on_run_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key: RunKey = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.cache.runs.pop(key, None)
            self._first_seen.pop(key, None)
            self._last_write.pop(key, None)
            self._failures.pop(key, None)
            uid = meta.get("uid", "")
            self.cache.uid_to_key.pop(uid, None)
            self.cache.created.pop(uid, None)
            self.contributions.forget(uid)
            return
        current = self.cache.runs.get(key)
        if current is not None and current.uid == meta.get("uid") and current.rv > _rv(body):
            return  # our own write already put a newer version in the cache
        self.cache.runs[key] = CachedRun(body)
        self.cache.uid_to_key[meta.get("uid", "")] = key
        self.queue.add(key)

    def on_child_event(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        run_uid = (meta.get("labels") or {}).get(c.LABEL_RUN_UID)
        if not run_uid:
            return
        store = self.cache.jobs if kind == "Job" else self.cache.pods
        children = store.setdefault(run_uid, {})
        child_key = meta.get("name", "") if kind == "Job" else meta.get("uid", "")
        if kind == "Job" and _superseded(children.get(child_key), meta):
            pass  # a late event of the previous attempt's Job, which had the same name: the current one stays
        elif event_type == "DELETED":
            children.pop(child_key, None)
            if kind == "Pod":
                self.cache.pod_runs.pop(child_key, None)
            else:
                # A gone Job's refusals explain nothing; and an Event that expired while the watch was being
                # re-listed never reports its own deletion.
                self.cache.refused.pop(str(meta.get("uid") or ""), None)
            if not children:
                store.pop(run_uid, None)
        else:
            view = summarize_job(body) if kind == "Job" else summarize_pod(body)
            children[child_key] = view  # type: ignore[assignment]
            if isinstance(view, PodView):
                self.cache.pod_runs[child_key] = run_uid
                for plugin in self.plugins:
                    try:
                        plugin.pod_changed(run_uid, view)
                    except Exception:  # a plugin's bug must not stop the cache from following the cluster
                        logger.exception("plugin %s failed on a pod change", plugin.name)
        key = self.cache.uid_to_key.get(run_uid)
        if key:
            self.queue.add(key)

    def on_refusal_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A FailedCreate Event of some Job (quota, Pod Security, a missing ServiceAccount): wake the run that owns it.

        Events have no watch cache in the API server, so a list of a namespace's Events reads all of them from etcd;
        one watch selected by reason costs a filter per Event written instead (bench/RESULTS.md, issue 18).
        """
        involved = body.get("involvedObject") or {}
        job_uid = str(involved.get("uid") or "")
        event_uid = str((body.get("metadata") or {}).get("uid") or "")
        if not job_uid or involved.get("kind") != "Job":
            return
        seen = self.cache.refused.setdefault(job_uid, {})
        if event_type == "DELETED":
            seen.pop(event_uid, None)
        else:
            when = str(body.get("lastTimestamp") or body.get("eventTime") or "")
            seen[event_uid] = (when, str(body.get("message") or "pod creation refused")[:1024])
        if not seen:
            self.cache.refused.pop(job_uid, None)
        # FailedCreate Events are rare (and repeat at the Job controller's back-off): a scan of the Jobs is cheaper
        # than an index kept for every Job.
        for run_uid, jobs in self.cache.jobs.items():
            if any(j.uid == job_uid for j in jobs.values()):
                key = self.cache.uid_to_key.get(run_uid)
                if key:
                    self.queue.add(key)
                return

    def plugin_context(self) -> PluginContext:
        return PluginContext(
            kube=self.kube,
            # decoded one at a time as a plugin iterates, so a sweep never holds every body at once
            runs=lambda: ((key, run.body()) for key, run in list(self.cache.runs.items())),
            pods_of=lambda uid: list(self.cache.pods.get(uid, {}).values()),
            reconcile=self.queue.add,
            status=self.contributions,
            owned_pod=self._owned_pod,
            run=lambda key: cached.body() if (cached := self.cache.runs.get(key)) else None,
        )

    def _owned_pod(self, pod_uid: str) -> tuple[RunKey, PodView] | None:
        """The pod and its run's key when the pod's Job is controlled by that run (owner UIDs, not labels)."""
        run_uid = self.cache.pod_runs.get(pod_uid)
        key = self.cache.uid_to_key.get(run_uid or "")
        pod = self.cache.pods.get(run_uid or "", {}).get(pod_uid)
        if key is None or pod is None or pod.namespace != key[0]:
            return None
        jobs = self.cache.jobs.get(pod.run_uid, {}).values()
        if not any(j.uid == pod.owner_uid and j.owned and j.run_uid == run_uid for j in jobs):
            return None
        return key, pod

    async def start_plugins(self) -> None:
        ctx = self.plugin_context()
        for plugin in self.plugins:
            await plugin.start(ctx)

    async def stop_plugins(self) -> None:
        for plugin in self.plugins:
            await plugin.stop()

    def _phases(self) -> list[tuple[str, str]]:
        return [(run.phase or "Pending", run.framework) for run in self.cache.runs.values()]

    # --- reconcile ---------------------------------------------------------------------------------------

    async def reconcile(self, key: RunKey) -> None:
        cached = self.cache.runs.get(key)
        if cached is None:
            return
        body = cached.body()
        started = time.perf_counter()
        try:
            await self._reconcile(key, body)
            self._failures.pop(key, None)
        except ApiError as err:
            if err.status == 404:
                return  # the run is gone; its DELETED event clears the cache
            if err.status == 403 and "being terminated" in err.message:
                return  # its namespace is being deleted, and the run with it: nothing left to converge
            self._retry_later(key, err)
        except Exception as err:  # never let one object take the operator down
            logger.exception("reconcile %s/%s failed", *key)
            self._retry_later(key, err)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
            metrics.QUEUE_DEPTH.set(len(self.queue))
            self._since_trim += 1
            if not len(self.queue) and self._since_trim >= _TRIM_AFTER_RECONCILES and self._trim_timer is None:
                self._trim_timer = asyncio.get_running_loop().call_later(_TRIM_QUIET_SECONDS, self._trim_if_quiet)

    def _trim_if_quiet(self) -> None:
        self._trim_timer = None
        if not len(self.queue):
            self._since_trim = 0
            release_memory()

    def _retry_later(self, key: RunKey, err: Exception) -> None:
        metrics.RECONCILE_ERRORS.inc()
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        delay = min(0.5 * 2 ** (n - 1), 60.0)
        logger.warning("reconcile %s/%s: %s; retrying in %.1fs", key[0], key[1], err, delay)
        self.queue.add_at(key, time.monotonic() + delay)

    async def _reconcile(self, key: RunKey, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        namespace, name, uid = key[0], key[1], meta["uid"]
        previous: dict[str, Any] = copy.deepcopy(body.get("status") or {})
        now = datetime.now(UTC)

        try:
            if meta.get("deletionTimestamp"):
                layers = templating.layers_from_status(previous) or []  # no reads for a run on its way out
            else:
                layers = await self._template_layers(body, previous)
        except TemplateError as err:
            await self._mark_invalid(body, previous, [err.message], now, err.reason)
            return
        template_status = templating.template_status(layers)
        if layers:
            doc = _parse_doc(body)
            # One parse: the merged run as its validation parsed it (the CRD's rules checked on the merged spec).
            merged, templated, problems = templating.effective_run(doc, layers)
            if problems or templated is None:
                locked = bool(templating.lock_problems(layers, doc["spec"] or {}))
                reason = lc.REASON_TEMPLATE_LOCKED if locked else lc.REASON_INVALID
                await self._mark_invalid(body, previous, [str(p) for p in problems], now, reason)
                return
            body = {**body, "spec": merged["spec"]}
            run = templated
        else:
            try:
                run = parse_run(body)
            except ValidationError as err:
                await self._mark_invalid(body, previous, _problems(err), now)
                return

        if meta.get("deletionTimestamp"):
            await self._finalize(body, run, previous)
            return
        if any(p.needs_finalizer(run) for p in self.plugins) and c.FINALIZER not in (meta.get("finalizers") or []):
            await self._add_finalizer(body)

        facts = run_facts(run)
        jobs, pods = self._children(uid, namespace)
        refusals = await self._refusals(facts, previous, jobs, pods, fresh=False)
        # The lifecycle decides with what plugins have just contributed (silent ranks, a GPU fault): the rule that
        # acts on a plugin's fact sees it in the very write that records it, not one write later.
        pending = self.contributions.pending(uid)
        known = pending.apply(previous) if pending is not None else previous
        decision = lc.decide(facts, known, jobs, pods, now, refusals)
        if decision.confirm_children and not _consequential(previous, decision):
            jobs, pods = await self._read_children(uid, namespace)
            decision = lc.decide(facts, known, jobs, pods, now, refusals)
        if _consequential(previous, decision):
            # A restart or an end is decided from what the API holds now, not from what the watch caches happened
            # to have seen (after an operator restart the Job watch can lead the Pod watch by seconds).
            jobs, pods = await self._read_children(uid, namespace)
            refusals = await self._refusals(facts, previous, jobs, pods, fresh=True)
            decision = lc.decide(facts, known, jobs, pods, now, refusals)
            failed_pod = triage.log_tail_pod(previous.get("failure"), decision.status.get("failure"))
            if failed_pod:
                # Read once, when the failure is first recorded: the tail can name the cause (a GPU Xid), so the
                # decision is taken again with it; the pods' deletion follows this reconcile.
                tail = await self._log_tail(namespace, failed_pod)
                if tail:
                    decision = lc.decide(facts, known, jobs, pods, now, refusals, {failed_pod: tail})
        status = decision.status
        if template_status is not None:
            status["template"] = template_status
        if _consequential(previous, decision):
            # The attempt ends: plugins keep what dies with its pods (their logs) before any of its Jobs is deleted.
            attempt = int(previous.get("restarts") or 0)
            ending = [p for p in pods if p.attempt == attempt]
            for plugin in self.plugins:
                status |= await plugin.retiring(run, status, attempt, ending)

        stopping = stop_policy.stopping(facts, jobs, pods, int(previous.get("restarts") or 0))
        if stopping is not None:
            # The Job controller is deleting the replicas a suspension stopped: their logs are kept while they stop.
            for plugin in self.plugins:
                plugin.stopping(run, status, stopping)

        for job_name in decision.delete_jobs:
            # Foreground: the Job stays (deleting) until its pods are gone, so a gang restart waits for the old
            # replicas' sidecars to store their last checkpoint before the new replicas look for it.
            await self.kube.delete("Job", namespace, job_name, propagation="Foreground")
            self._forget_job(uid, job_name)
        for job_name, suspend in decision.suspend_jobs.items():
            await self.kube.patch("Job", namespace, job_name, {"spec": {"suspend": suspend}})
        if decision.create_children:
            refused = await self._admit(run, namespace)
            if refused is None:
                try:
                    await self._create_children(body, run, status, resume=decision.resume)
                except ChildRefusedError as err:
                    refused = (err.reason, err.message)
            if refused is not None:
                _refuse(facts, previous, decision, refused[0], refused[1], now)

        # Plugins' pending contributions go into this write; what a plugin returns when the run ends comes last.
        contribution = self.contributions.pending(uid)
        events = list(decision.events)
        if contribution is not None:
            status = contribution.apply(status)
            events += contribution.event_list()
        if status.get("phase") in lc.TERMINAL and previous.get("phase") not in lc.TERMINAL:
            for plugin in self.plugins:
                status |= await plugin.finished(run, status)

        delay = self._coalesce_delay(key, previous, status, decision, urgent=contribution is not None)
        if delay is None:
            pass  # not news: written with the next change that is
        elif delay > 0:
            # An in-progress change (Pending/Starting/Running, counts) waits briefly so quick successions of
            # them cost one status write; terminal phases, restarts and plugin fields are written at once.
            self.queue.add_at(key, time.monotonic() + delay)
        else:
            await self._write_status(key, body, previous, status, events, facts.framework)
            if contribution is not None:
                self.contributions.written(uid, contribution)

        if decision.requeue_at is not None:
            delay = max((decision.requeue_at - now).total_seconds(), 0.0)
            self.queue.add_at(key, time.monotonic() + delay + 0.05)
        if decision.delete_run:
            await self.kube.delete(c.KIND, namespace, name)

    async def _log_tail(self, namespace: str, pod: str) -> str:
        """The end of a failed pod's trainer log; empty when it cannot be read (gone, forbidden, no kubelet, slow)."""
        try:
            return await asyncio.wait_for(
                self.kube.pod_log(
                    namespace,
                    pod,
                    c.CONTAINER_NAME,
                    tail_lines=c.FAILURE_LOG_TAIL_LINES,
                    limit_bytes=c.FAILURE_LOG_TAIL_BYTES,
                ),
                timeout=c.FAILURE_LOG_TAIL_TIMEOUT_SECONDS,
            )
        except (ApiError, TimeoutError) as err:
            # Best effort: a failure is recorded without its log rather than not at all.
            logger.info("no log tail for pod %s/%s: %s", namespace, pod, err)
            return ""

    async def _create_children(
        self, body: Mapping[str, Any], run: TrainingRun, status: dict[str, Any], resume: bool = False
    ) -> None:
        uid = body["metadata"]["uid"]
        attempt = int(status.get("restarts") or 0)
        extra_env: list[dict[str, Any]] = []
        build: dict[str, Any] = {}
        for plugin in self.plugins:
            prepared = await plugin.prepare(run, status)
            extra_env += prepared.env
            status |= prepared.status
            build |= prepared.build
        ctx = BuildContext(
            **build,
            restart_attempt=attempt,
            resuming=resume,
            extra_env=tuple(extra_env),
            # A restart's replicas resolve the newest checkpoint from the store themselves (RUNYARD_RESUME_FROM is
            # the run's directory): the old replicas' sidecars upload their last checkpoint while they stop, after
            # any status this reconcile could read.
            resume_from=None,
            avoid_nodes=tuple(status.get("avoidNodes") or ()),
        )
        if frameworks.of(run.spec).needs_ssh_keys:
            ctx = replace(ctx, ssh_secret_name=await self._ssh_secret(run, ctx, status))
        created = self.cache.created.setdefault(uid, set())
        known_jobs = {j.name for j in self.cache.jobs.get(uid, {}).values()}
        children = build_children(run, ctx)
        others = [o for o in children if o["kind"] != "Job" and (o["kind"], o["metadata"]["name"]) not in created]
        jobs = [o for o in children if o["kind"] == "Job" and o["metadata"]["name"] not in known_jobs]
        # Service and MPI config first: a name held by someone else refuses the run before any replica exists.
        await asyncio.gather(*(self._create_owned(o, uid) for o in others))
        created.update((o["kind"], o["metadata"]["name"]) for o in others)
        if len(jobs) > 1:
            # Several roles: the API server validates every Job before any is created, so a Job it rejects can never
            # leave the other roles running as a partial gang.
            await asyncio.gather(*(self._dry_run(o) for o in jobs))
        for job, result in zip(jobs, await asyncio.gather(*(self._create_owned(o, uid) for o in jobs)), strict=True):
            self.on_child_event("Job", "ADDED", result or job)

    async def _ssh_secret(self, run: TrainingRun, ctx: BuildContext, status: dict[str, Any]) -> str:
        """The run's SSH Secret: the one recorded in status, or a new one with a server-generated name."""
        if status.get("sshSecret"):
            return str(status["sshSecret"])
        private, public = self._ssh_keygen() if self._ssh_keygen else (None, None)
        secret = build_ssh_secret(run, replace(ctx, ssh_private_key=private, ssh_public_key=public))
        answer = await self._create(secret, decode=True)  # the server picked the name: read it from the answer
        status["sshSecret"] = answer["metadata"]["name"]
        return str(status["sshSecret"])

    async def _dry_run(self, obj: Mapping[str, Any]) -> None:
        with contextlib.suppress(ChildExistsError):
            await self._create(obj, dry_run=True)

    async def _create(self, obj: Mapping[str, Any], dry_run: bool = False, decode: bool = False) -> dict[str, Any]:
        """POST one child; the API server's refusals become ChildRefusedError (the run ends, naming why).

        Only a Job's answer (which feeds the cache before its watch event arrives) or an explicit `decode` is read.
        """
        decode = decode or (obj["kind"] == "Job" and not dry_run)
        try:
            return await self.kube.create(obj, decode=decode, dry_run=dry_run)
        except ApiError as err:
            meta = obj["metadata"]
            if err.status in (400, 403, 422) and "being terminated" not in err.message:
                what = f"{obj['kind']} {meta.get('name') or meta.get('generateName', '') + '*'}"
                raise ChildRefusedError(lc.REASON_REJECTED, f"{what}: {err.message}") from None
            if err.status == 409:
                raise ChildExistsError(err.message) from None
            raise

    async def _create_owned(self, obj: Mapping[str, Any], uid: str) -> dict[str, Any]:
        """Create a child, or accept the existing one only if this run controls it (owner reference UID).

        Never adopts: an object of that name that the run does not own (a user's Secret, the cluster's
        `kubernetes` Service) refuses the run instead of being taken over and later garbage-collected with it.
        """
        meta = obj["metadata"]
        try:
            return await self._create(obj)
        except ChildExistsError:
            pass
        existing = await self.kube.get(obj["kind"], meta["namespace"], meta["name"])
        owners = existing.get("metadata", {}).get("ownerReferences") or []
        controller = next((o for o in owners if o.get("controller")), None)
        if controller is None or controller.get("uid") != uid:
            held = (
                f"controlled by {controller.get('kind')} {controller.get('name')}" if controller else "not owned by it"
            )
            raise ChildRefusedError(
                lc.REASON_NAME_CONFLICT,
                f"{obj['kind']} {meta['namespace']}/{meta['name']} already exists and is {held}; Runyard never "
                f"takes over objects it did not create: rename the run or remove that {obj['kind']}",
            )
        return existing

    def _children(self, uid: str, namespace: str) -> tuple[list[JobView], list[PodView]]:
        """The run's children from the caches: Jobs it controls (owner UID) and the pods those Jobs control.

        Labels alone prove nothing: anyone can label a pod in any namespace with a run's UID.
        """
        jobs = [j for j in self.cache.jobs.get(uid, {}).values() if j.owned and j.namespace in ("", namespace)]
        job_uids = {j.uid for j in jobs}
        pods = [
            p
            for p in self.cache.pods.get(uid, {}).values()
            if p.namespace in ("", namespace) and p.owner_uid in job_uids
        ]
        return jobs, pods

    async def _read_children(self, uid: str, namespace: str) -> tuple[list[JobView], list[PodView]]:
        """The run's Jobs and pods as the API holds them now; the caches are replaced with them."""
        selector = f"{c.LABEL_RUN_UID}={uid}"
        raw_jobs, raw_pods = await asyncio.gather(
            self.kube.list_items("Job", namespace, label_selector=selector),
            self.kube.list_items("Pod", namespace, label_selector=selector),
        )
        self.cache.jobs[uid] = {j["metadata"]["name"]: summarize_job(j) for j in raw_jobs}
        for pod_uid in self.cache.pods.get(uid, {}):
            self.cache.pod_runs.pop(pod_uid, None)
        self.cache.pods[uid] = {p["metadata"]["uid"]: summarize_pod(p) for p in raw_pods}
        self.cache.pod_runs.update(dict.fromkeys(self.cache.pods[uid], uid))
        return self._children(uid, namespace)

    async def _refusals(
        self, facts: lc.RunFacts, previous: Mapping[str, Any], jobs: list[JobView], pods: list[PodView], fresh: bool
    ) -> dict[str, str]:
        """Why Jobs of the current attempt could not create their pods (the Job controller's FailedCreate Events).

        From the watched Events while the run waits; `fresh` reads them from the API instead, for a decision that
        ends or restarts the run (what a watch happened to deliver is not proof).
        """
        attempt = int(previous.get("restarts") or 0)
        current = [j for j in jobs if j.attempt == attempt]
        waiting = lc.awaiting_pods(facts, current, [p for p in pods if p.attempt == attempt])
        refusals: dict[str, str] = {}
        for job in waiting:
            if fresh:
                events = await self.kube.list_items(
                    "Event",
                    job.namespace,
                    field_selector=f"involvedObject.uid={job.uid},reason={lc.REASON_FAILED_CREATE}",
                )
                seen = [
                    (str(e.get("lastTimestamp") or e.get("eventTime") or ""), str(e.get("message") or ""))
                    for e in events
                ]
            else:
                seen = list(self.cache.refused.get(job.uid, {}).values())
            if seen:
                refusals[job.role] = (max(seen)[1] or "pod creation refused")[:1024]
        return refusals

    async def _admit(self, run: TrainingRun, namespace: str) -> tuple[str, str] | None:
        """The platform's policy on where runs may run and what their pods may request; None when admitted."""
        labels = await self._namespace_labels(namespace) if self.namespace_policy.match_labels else None
        why = adm.namespace_refusal(namespace, labels, self.namespace_policy)
        if why:
            return lc.REASON_NAMESPACE_REFUSED, why
        problems = []
        for role in frameworks.roles_of(run.spec):
            template = build_pod_template(run, role, BuildContext())
            problems += [p for p in adm.pod_violations(template, self.pod_policy) if p not in problems]
        if problems:
            return lc.REASON_POLICY, "the platform's pod policy refuses: " + "; ".join(problems[:10])
        return None

    async def _template_layers(
        self, body: Mapping[str, Any], previous: Mapping[str, Any]
    ) -> list[templating.TemplateLayer]:
        """The templates the run inherits from: as recorded in its status, else as they are now (first sight).

        Recorded once, when the run is first seen, so its defaults and locks never change under it (a template edited
        while it waits in a queue or runs applies to new runs only). Until the first status write (which a Pending
        run's coalescing may delay by seconds) they are read again, through the cache. A run already past Pending
        without a record predates templates and keeps its own spec.
        """
        recorded = templating.layers_from_status(previous)
        if recorded is not None:
            return recorded
        meta = body["metadata"]
        if previous.get("phase") not in (None, "", lc.PENDING):
            return []
        defaults = await self._cached_template(c.CLUSTER_TEMPLATE_KIND, "", "")
        layers = [self._layer(obj) for obj in defaults or ()]
        ref = (body.get("spec") or {}).get("templateRef")
        referenced = None
        if isinstance(ref, Mapping) and ref.get("name"):
            kind = str(ref.get("kind") or c.TEMPLATE_KIND)
            namespace = meta["namespace"] if kind == c.TEMPLATE_KIND else ""
            obj = await self._cached_template(kind, namespace, str(ref["name"]))
            if obj is None:
                where = f" in namespace {namespace}" if namespace else ""
                message = f"spec.templateRef: {kind} {ref['name']} not found{where}"
                raise TemplateError(lc.REASON_TEMPLATE_NOT_FOUND, message)
            referenced = self._layer(obj)
        return templating.order_layers(layers, referenced)

    @staticmethod
    def _layer(obj: Mapping[str, Any]) -> templating.TemplateLayer:
        try:
            return templating.TemplateLayer.from_object(obj)
        except ValueError as err:
            raise TemplateError(lc.REASON_INVALID, str(err)) from None

    async def _cached_template(self, kind: str, namespace: str, name: str) -> Any:
        """One template (None when missing), or with no name the default cluster templates (a list)."""
        key = (kind, namespace, name)
        cached = self._templates.get(key)
        if cached and time.monotonic() - cached[0] < _TEMPLATE_TTL:
            return cached[1]
        value: Any
        try:
            if name:
                value = await self.kube.get(kind, namespace, name)
            else:
                value = await self.kube.list_items(kind, "", label_selector=f"{c.LABEL_DEFAULT_TEMPLATE}=true")
                for item in value:
                    item.setdefault("kind", kind)
        except ApiError as err:
            if err.status != 404:
                raise  # forbidden or unavailable: retried, never treated as "no template" (locks would not apply)
            value = None if name else []
        if isinstance(value, dict):
            value.setdefault("kind", kind)
        self._templates[key] = (time.monotonic(), value)
        return value

    async def _namespace_labels(self, namespace: str) -> dict[str, str]:
        cached = self._ns_labels.get(namespace)
        if cached and time.monotonic() - cached[0] < _NAMESPACE_LABELS_TTL:
            return cached[1]
        body = await self.kube.request("GET", "Namespace", None, namespace)
        labels = dict((body.get("metadata") or {}).get("labels") or {})
        self._ns_labels[namespace] = (time.monotonic(), labels)
        return labels

    def _coalesce_delay(
        self,
        key: RunKey,
        previous: Mapping[str, Any],
        status: Mapping[str, Any],
        decision: lc.Decision,
        urgent: bool = False,
    ) -> float | None:
        """Seconds to hold this status before writing it (0: now), or None when it is not worth a write of its own."""
        if self.coalesce_seconds <= 0 or urgent:
            return 0.0
        patch = status_patch(previous, status)
        if status.get("restarts") == int(previous.get("restarts") or 0):
            patch.pop("restarts", None)  # a first write of restarts=0 is not news
        if not patch or not set(patch) <= _COALESCIBLE or decision.delete_jobs:
            return 0.0
        phase = status.get("phase")
        if phase not in _COALESCIBLE_PHASES:
            return 0.0
        if phase == lc.RUNNING and previous.get("phase") != lc.RUNNING:
            return 0.0  # the run started: the news users wait for (create -> Running, bench/RESULTS.md)
        now = time.monotonic()
        since = self._last_write.get(key) or self._first_seen.setdefault(key, now)
        # Progress on the way in (replicas being created or started, counts moving while Running) is written only
        # if it lasts: a run that starts within the hold costs one write for Running and one for its end. A Pending
        # with a reason (unschedulable, an image that cannot be pulled) is news sooner.
        recorded = lc.recorded_on_the_way_in(previous) if phase != lc.RUNNING else None
        if decision.quiet and lc.progress_only(recorded):
            return None  # one "still starting" per start: the next news is Running, a reason or the end
        if decision.quiet and recorded is None:
            factor = QUIET_RUNNING_HOLD_FACTOR if phase == lc.RUNNING else QUIET_START_HOLD_FACTOR
            hold = self.coalesce_seconds * factor
        elif phase in (lc.PENDING, lc.STARTING):
            # Includes progress that replaces a recorded reason (no longer unschedulable): the old message is wrong.
            hold = self.coalesce_seconds * 3
        else:
            hold = self.coalesce_seconds
        return max(since + hold - now, 0.0)

    def _forget_job(self, run_uid: str, job_name: str) -> None:
        """Mark a Job we just deleted, so reconciles before its DELETED event arrives do not count it."""
        job = self.cache.jobs.get(run_uid, {}).get(job_name)
        if job is not None:
            self.cache.jobs[run_uid][job_name] = replace(job, deleting=True)

    async def _write_status(
        self,
        key: RunKey,
        body: dict[str, Any],
        previous: Mapping[str, Any],
        status: dict[str, Any],
        events: Sequence[tuple[str, str, str]],
        framework: str,
    ) -> None:
        patch = status_patch(previous, status)
        if not patch:
            return
        meta = body["metadata"]
        result = await self.kube.patch(c.KIND, key[0], key[1], {"status": patch}, sub="status")
        self._last_write[key] = time.monotonic()
        if result:
            self.on_run_event("MODIFIED", result)
        old_phase, new_phase = previous.get("phase"), status.get("phase")
        if new_phase != old_phase:
            metrics.TRANSITIONS.labels(framework, str(new_phase)).inc()
            if new_phase == lc.RESTARTING:
                metrics.RESTARTS.labels(framework).inc()
            if new_phase == lc.RUNNING and not previous.get("startTime"):
                created = lc.parse_time(meta.get("creationTimestamp"))
                if created:
                    metrics.TIME_TO_RUNNING.labels(framework).observe(
                        max((datetime.now(UTC) - created).total_seconds(), 0.0)
                    )
        for type_, reason, message in events:
            await self.kube.post_event(body, type_, reason, message)

    async def _mark_invalid(
        self,
        body: dict[str, Any],
        previous: Mapping[str, Any],
        problems: Sequence[str],
        now: datetime,
        reason: str = lc.REASON_INVALID,
    ) -> None:
        """End the run before anything is created; the message names every offending field."""
        generation = int(body["metadata"].get("generation") or 0)
        status = dict(previous)
        status |= {
            "phase": lc.FAILED,
            "message": f"invalid TrainingRun: {'; '.join(problems[:10])}",
            "observedGeneration": generation,
        }
        status["conditions"] = cond.compute(
            previous.get("conditions") or [], lc.FAILED, reason, status["message"], generation, now
        )
        status["failure"] = triage.triage({"reason": reason, "message": status["message"]}, {})
        if status_patch(previous, status):
            meta = body["metadata"]
            await self._write_status(
                (meta["namespace"], meta["name"]),
                body,
                previous,
                status,
                [("Warning", reason, status["message"])],
                "invalid",
            )

    async def _add_finalizer(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
        ]
        if meta.get("finalizers"):
            ops.append({"op": "add", "path": "/metadata/finalizers/-", "value": c.FINALIZER})
        else:
            ops.append({"op": "add", "path": "/metadata/finalizers", "value": [c.FINALIZER]})
        result = await self.kube.json_patch(c.KIND, meta["namespace"], meta["name"], ops)
        self.on_run_event("MODIFIED", result)

    async def _finalize(self, body: Mapping[str, Any], run: TrainingRun, previous: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if c.FINALIZER not in finalizers:
            return
        for plugin in self.plugins:
            await plugin.deleted(run, previous)
        index = finalizers.index(c.FINALIZER)
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        await self.kube.json_patch(c.KIND, meta["namespace"], meta["name"], ops)
