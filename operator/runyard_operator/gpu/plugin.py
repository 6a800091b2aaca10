"""GPUPlugin: one operator-wide sampling loop feeding per-run accounting, status.gpu, GPUsIdle, /metrics and MLflow.

It never writes a run's status: it contributes `status.gpu` (at most once per `statusIntervalSeconds`) and the
GPUsIdle condition with its Event (on transitions) to the controller, which writes them with its own status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from runyard_operator import metrics
from runyard_operator.gpu.accounting import PodRef, Point, RunAccount, SampleIndex
from runyard_operator.gpu.config import GPUMetricsConfig, parse_gpu_config
from runyard_operator.gpu.sinks import MetricSink, MLflowSink
from runyard_operator.gpu.sources import MetricSource, Target, build_source
from runyard_operator.plugins import PluginContext, RunPlugin
from runyard_operator.policies import conditions as cond
from runyard_operator.timestamps import parse_epoch

if TYPE_CHECKING:
    from runyard.api import TrainingRun
    from runyard_operator.config import OperatorConfig
    from runyard_operator.observe import PodView

logger = logging.getLogger(__name__)

RunKey = tuple[str, str]
ACTIVE_PHASES = frozenset({"Running", "Starting", "Restarting"})
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
CONDITION = "GPUsIdle"
EDGE_READ_SECONDS = 5.0  # the longest a run's end waits for its final read
MIN_EARLY_GAP_SECONDS = 1.0  # between early rounds for starting pods
EARLY_RETRY_SECONDS = 30.0  # how long a starting pod's run is tried in early rounds before it waits for a regular one
MAX_BACKLOG = 10_000  # tracker batches kept while the tracker is slow or down; the oldest go first
_LABELS = ["namespace", "run", "framework"]

SAMPLING_SECONDS = Histogram(
    "runyard_gpu_sampling_duration_seconds",
    "Time of one operator-wide GPU sampling round (collection, accounting, writes).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=metrics.REGISTRY,
)
SAMPLING_ERRORS = Counter(
    "runyard_gpu_sampling_errors_total",
    "GPU sampling rounds or per-run steps that failed.",
    ["stage"],
    registry=metrics.REGISTRY,
)
RUNS_SAMPLED = Gauge(
    "runyard_gpu_runs_sampled", "Runs whose GPUs the last sampling round covered.", registry=metrics.REGISTRY
)


@dataclass
class _RunState:
    key: RunKey
    uid: str
    framework: str
    account: RunAccount
    idle: bool | None = None
    idle_since: float | None = None
    condition: dict[str, Any] | None = None
    last_write: float = 0.0  # when status.gpu was last contributed
    written: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    retired_at: float | None = None


def _pod_ref(pod: PodView) -> PodRef:
    return PodRef(name=pod.name, uid=pod.uid, node=pod.node, gpus=pod.gpus, start=parse_epoch(pod.start_time))


def _mlflow_run_id(body: Mapping[str, Any]) -> str | None:
    status = body.get("status") or {}
    run_id = ((status.get("tracking") or {}).get("mlflow") or {}).get("runId")
    return str(run_id) if run_id else None


class _GPUCollector(Collector):
    """Per-run series at scrape time from the plugin's accounts (labels namespace, run, framework; never per GPU)."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[_RunState]] = list
        self.clock: Callable[[], float] = time.time

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        allocated = GaugeMetricFamily(
            "runyard_trainingrun_gpus_allocated", "GPUs held by the run's pods.", labels=_LABELS
        )
        util = GaugeMetricFamily(
            "runyard_trainingrun_gpu_utilization_ratio",
            "Mean utilisation (0-1) of the run's GPUs in the last sampling round.",
            labels=_LABELS,
        )
        avg = GaugeMetricFamily(
            "runyard_trainingrun_gpu_utilization_avg_ratio",
            "Time-weighted mean utilisation (0-1) of the run's GPUs so far.",
            labels=_LABELS,
        )
        memory = GaugeMetricFamily(
            "runyard_trainingrun_gpu_memory_used_peak_bytes",
            "Highest memory use sampled on any of the run's GPUs.",
            labels=_LABELS,
        )
        seconds = CounterMetricFamily(
            "runyard_trainingrun_gpu_seconds", "GPU-seconds allocated to the run.", labels=_LABELS
        )
        energy = CounterMetricFamily(
            "runyard_trainingrun_gpu_energy_joules",
            "Energy of the run's GPUs from the GPU energy counter (sensor limits: docs/gpu-metrics.md).",
            labels=_LABELS,
        )
        now = self.clock()
        for state in self.source():
            labels = [state.key[0], state.key[1], state.framework]
            account = state.account
            allocated.add_metric(labels, 0.0 if state.retired_at else account.allocated())
            if account.current_utilization is not None and not state.retired_at:
                util.add_metric(labels, account.current_utilization / 100)
            if account.avg_utilization is not None:
                avg.add_metric(labels, account.avg_utilization / 100)
            if account.peak_memory_bytes is not None:
                memory.add_metric(labels, account.peak_memory_bytes)
            seconds.add_metric(labels, account.gpu_seconds(now))
            energy.add_metric(labels, account.energy_mj / 1000)
        yield from (allocated, util, avg, memory, seconds, energy)


_COLLECTOR = _GPUCollector()
_COLLECTOR_REGISTERED = False


def _register_collector() -> None:
    global _COLLECTOR_REGISTERED
    if not _COLLECTOR_REGISTERED:
        metrics.register_collector(_COLLECTOR)
        _COLLECTOR_REGISTERED = True


class GPUPlugin(RunPlugin):
    """Samples the GPUs of every running run in one loop; feeds status.gpu, GPUsIdle, /metrics and the tracker."""

    name = "gpu"

    def __init__(
        self,
        cfg: GPUMetricsConfig,
        tracking_uri: str | None = None,
        *,
        source: MetricSource | None = None,
        sink: MetricSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self._source = source
        self._sink: MetricSink | None = sink
        if self._sink is None and tracking_uri and cfg.log_to_tracker:
            self._sink = MLflowSink(tracking_uri)
        self._clock = clock
        self._ctx: PluginContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._runs: dict[str, _RunState] = {}
        self._finished: dict[str, float] = {}
        # Tracker writes run in the background: a slow or unreachable MLflow (its client retries for minutes) must
        # neither delay sampling rounds nor hold a reconcile worker in `finished`.
        self._backlog: list[tuple[str, list[Point], int]] = []
        self._sink_tasks: set[asyncio.Task[None]] = set()
        self._series_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # (run key, run UID, pod UID) of a pod that started and no read has named the GPUs of yet -> since when
        self._early: dict[tuple[RunKey, str, str], float] = {}

    @classmethod
    def from_config(cls, config: OperatorConfig) -> GPUPlugin | None:
        cfg = parse_gpu_config(config.gpu_metrics)
        if cfg is None:
            return None
        mlflow = config.tracking.mlflow
        return cls(cfg, mlflow.tracking_uri if mlflow else None)

    # --- lifecycle hooks --------------------------------------------------------------------------------------

    def attach(self, ctx: PluginContext) -> None:
        """Bind to the operator's services and /metrics without starting the loop (tests drive `tick` by hand)."""
        self._ctx = ctx
        if self._source is None:
            self._source = build_source(self.cfg, ctx.kube)
        _COLLECTOR.source = lambda: list(self._runs.values())
        _COLLECTOR.clock = self._clock
        _register_collector()

    async def start(self, ctx: PluginContext) -> None:
        self.attach(ctx)
        self._task = asyncio.create_task(self._loop(), name="runyard-gpu-sampling")
        logger.info("gpu: sampling every %.1fs from %s", self.cfg.interval_seconds, self.cfg.source)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout=10)
        if self._source is not None:
            await self._source.close()

    async def flush(self) -> None:
        """Wait for the tracker writes in flight (tests and shutdown)."""
        while self._sink_tasks:
            await asyncio.gather(*list(self._sink_tasks), return_exceptions=True)

    def _background(self, job: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(job)
        self._sink_tasks.add(task)
        task.add_done_callback(self._sink_tasks.discard)
        return task

    def _queue_series(self, series: list[tuple[str, list[Point], int]]) -> None:
        if self._sink is None:
            return
        self._backlog += series
        if len(self._backlog) > MAX_BACKLOG:
            logger.warning("gpu: tracker backlog full, dropping %d old batches", len(self._backlog) - MAX_BACKLOG)
            del self._backlog[: len(self._backlog) - MAX_BACKLOG]
        if self._backlog and (self._series_task is None or self._series_task.done()):
            batch, self._backlog = self._backlog, []
            self._series_task = self._background(self._send_series(self._sink, batch))

    async def _send_series(self, sink: MetricSink, batch: list[tuple[str, list[Point], int]]) -> None:
        sem = asyncio.Semaphore(self.cfg.max_concurrency)

        async def one(run_id: str, points: list[Point], step: int) -> None:
            async with sem:
                await sink.log_series(run_id, points, step)

        while batch:  # then whatever queued up meanwhile, in order
            await asyncio.gather(*(one(*item) for item in batch))
            batch, self._backlog = self._backlog, []

    async def finished(self, run: TrainingRun, status: Mapping[str, Any]) -> dict[str, Any]:
        """Close the run's intervals at its completion time, write the final summary to status and the tracker."""
        uid = str(run.metadata.uid or "")
        now = self._clock()
        self._finished[uid] = now
        async with self._lock:  # wait for a round in flight, so it cannot write an older summary after this one
            state = self._runs.get(uid)
            if state is None:
                if not status.get("gpu"):
                    return {}  # never sampled: a CPU-only run, or GPU metrics were off
                namespace = str(run.metadata.namespace or "")
                account = RunAccount.from_status(namespace, status.get("gpu"), self.cfg.gap_seconds)
                state = _RunState((namespace, run.name), uid, str(run.spec.framework), account)
                self._runs[uid] = state
            end = parse_epoch(status.get("completionTime")) or now
        # The edge read, outside the lock (a round may go on meanwhile; `_finished` keeps it off this run).
        index = await self._edge_read(state.account)
        async with self._lock:
            state.account.finish(index, end)
            summary = state.account.summary(end)
            state.retired_at = now
            run_id = _mlflow_run_id({"status": status})
        if self._sink is not None and run_id:
            self._background(self._sink.log_summary(run_id, state.account.tracker_summary(end), end))
        return {"gpu": summary}

    async def _edge_read(self, account: RunAccount) -> SampleIndex:
        """A read of the run's GPUs now, for the tail from the last round to the run's end; bounded, as the reconcile
        that ends the run waits for it. Nothing comes back when the source cannot answer in time: the tail is then
        extrapolated, as before."""
        held = [a for a in account.open_allocations() if a.device]
        if self._source is None or not held:
            return SampleIndex([])
        ns = account.namespace
        targets = list({a.pod_uid: Target(ns, a.pod, a.pod_uid, a.node) for a in held}.values())
        try:
            samples = await asyncio.wait_for(
                self._source.collect(targets, {a.uuid for a in held}), timeout=EDGE_READ_SECONDS
            )
        except Exception:  # a failed edge read costs accuracy, never the run's end
            SAMPLING_ERRORS.labels("edge").inc()
            logger.warning("gpu: the final read of %s/%s failed; its tail is extrapolated", ns, held[0].pod)
            return SampleIndex([])
        return SampleIndex(samples)

    def pod_changed(self, run_uid: str, pod: PodView) -> None:
        """A pod of a run that is not yet sampled started running: read its node now rather than at the next round,
        so the allocation's head (its start to the first sample) is seconds, not up to an interval."""
        if pod.phase != "Running" or not pod.node or pod.gpus <= 0 or run_uid in self._finished:
            return
        if self._named(run_uid, pod.uid):
            return
        # Only a pod of a Job the run controls (owner UIDs): a pod carrying a run's label proves nothing.
        owned = self._ctx.owned_pod(pod.uid) if self._ctx is not None else None
        if owned is None:
            return
        self._early.setdefault((owned[0], run_uid, pod.uid), time.monotonic())
        self._wake.set()

    def _named(self, run_uid: str, pod_uid: str) -> bool:
        """Whether a read has named the GPUs of the run's pod (placeholder slots do not count)."""
        state = self._runs.get(run_uid)
        return state is not None and state.account.names_pod(pod_uid)

    # --- the loop --------------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        """A round every interval; between rounds, an early round for the runs whose pods just started (no timer per
        run: `pod_changed` sets one event)."""
        due = time.monotonic()
        while True:
            wait = due - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()
            early, self._early = self._early, {}
            regular = time.monotonic() >= due
            if not regular and not early:
                continue
            started = time.monotonic()
            try:
                await self.tick(None if regular else {key for key, _, _ in early})
            except Exception:  # one bad round must not end sampling for the operator's lifetime
                SAMPLING_ERRORS.labels("round").inc()
                logger.exception("gpu: sampling round failed")
            elapsed = time.monotonic() - started
            SAMPLING_SECONDS.observe(elapsed)
            if regular:
                due = started + max(self.cfg.interval_seconds, elapsed + 0.05)
            # A run the round could not sample yet (the cache has not caught up with its phase) is tried again.
            for (key, uid, pod_uid), since in early.items():
                if not self._named(uid, pod_uid) and started - since < EARLY_RETRY_SECONDS:
                    self._early.setdefault((key, uid, pod_uid), since)
            if not regular:
                await asyncio.sleep(MIN_EARLY_GAP_SECONDS)  # a burst of starting pods shares early rounds
                if self._early:
                    self._wake.set()

    def _select(self, now: float) -> list[tuple[Mapping[str, Any], _RunState, list[PodRef]]]:
        """Runs to sample this round: active ones with running pods, plus known ones whose pods went away."""
        assert self._ctx is not None
        work: list[tuple[Mapping[str, Any], _RunState, list[PodRef]]] = []
        present: set[str] = set()
        for key, body in self._ctx.runs():
            present.add(str((body.get("metadata") or {}).get("uid", "")))
            if (item := self._work_for(key, body)) is not None:
                work.append(item)
        retain = self.cfg.retain_finished_seconds
        for uid, state in list(self._runs.items()):
            if uid not in present or (state.retired_at is not None and now - state.retired_at > retain):
                del self._runs[uid]
        for uid in list(self._finished):
            if uid not in present and uid not in self._runs:
                del self._finished[uid]
        return work

    def _select_some(self, keys: set[RunKey]) -> list[tuple[Mapping[str, Any], _RunState, list[PodRef]]]:
        """Runs to sample in an early round: only those named, read from the cache by key (never a scan of them all)."""
        assert self._ctx is not None
        bodies = [(key, body) for key in sorted(keys) if (body := self._ctx.run(key)) is not None]
        return [item for key, body in bodies if (item := self._work_for(key, body)) is not None]

    def _work_for(
        self, key: RunKey, body: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], _RunState, list[PodRef]] | None:
        """One run's part of a round: its state (new once it has running pods) and its running pods; None to skip."""
        assert self._ctx is not None
        uid = str((body.get("metadata") or {}).get("uid", ""))
        phase = str((body.get("status") or {}).get("phase") or "")
        if uid in self._finished or phase in TERMINAL_PHASES:
            return None
        pods: list[PodRef] = []
        if phase in ACTIVE_PHASES:
            pods = [_pod_ref(p) for p in self._ctx.pods_of(uid) if p.node and p.phase == "Running"]
        state = self._runs.get(uid)
        if state is None:
            if not pods:
                return None
            state = self._new_state(key, uid, body)
            self._runs[uid] = state
        return body, state, pods

    def _new_state(self, key: RunKey, uid: str, body: Mapping[str, Any]) -> _RunState:
        status = body.get("status") or {}
        account = RunAccount.from_status(key[0], status.get("gpu"), self.cfg.gap_seconds)
        state = _RunState(key, uid, str((body.get("spec") or {}).get("framework", "")), account)
        # A restarted operator picks up GPUsIdle where the status left it: no second Event for the same idleness.
        mine = cond.find(status.get("conditions") or [], CONDITION)
        if mine is not None:
            state.condition = dict(mine)
            state.idle = mine.get("status") == "True"
            if state.idle:
                state.idle_since = parse_epoch(mine.get("lastTransitionTime"))
        return state

    async def tick(self, only: set[RunKey] | None = None) -> None:
        """One sampling round for all running runs, or for the runs `only` names (public so tests can drive rounds
        without the timer)."""
        assert self._ctx is not None and self._source is not None
        now = self._clock()
        if only is None:
            work = self._select(now)
            RUNS_SAMPLED.set(len(work))
        else:
            work = self._select_some(only)
        targets = [Target(st.key[0], p.name, p.uid, p.node) for _, st, pods in work for p in pods]
        devices = {d for _, st, _ in work for d in st.account.known_devices()}
        samples = []
        if targets or devices:
            try:
                samples = await self._source.collect(targets, devices)
            except Exception:
                SAMPLING_ERRORS.labels("collect").inc()
                logger.exception("gpu: collecting samples failed")
        index = SampleIndex(samples)
        series: list[tuple[str, list[Point], int]] = []
        async with self._lock:
            for body, state, pods in work:
                if state.uid in self._finished:
                    continue
                points = state.account.observe(pods, index, now)
                run_id = _mlflow_run_id(body)
                if points and run_id:
                    state.step += 1
                    series.append((run_id, points, state.step))
                self._contribute(body, state, now)
        self._queue_series(series)

    # --- status, condition, event ----------------------------------------------------------------------------

    def _idle_transition(self, state: _RunState, generation: int, now: float) -> tuple[str, str, str] | None:
        """Update the GPUsIdle condition from this round's utilisation; returns an Event on a transition."""
        idle_cfg = self.cfg.idle
        util = state.account.current_utilization
        if not idle_cfg.enabled or util is None:
            return None  # no data is not idleness
        threshold, after = idle_cfg.threshold_percent, idle_cfg.after_seconds
        if util < threshold:
            state.idle_since = state.idle_since if state.idle_since is not None else now
            if state.idle is not True and now - state.idle_since >= after:
                avg = state.account.avg_utilization
                message = (
                    f"GPU utilisation {util:.1f}% has stayed below {threshold:g}% for {now - state.idle_since:.0f}s "
                    f"on {state.account.allocated():g} allocated GPUs (run average {avg or 0.0:.1f}%)"
                )
                state.idle = True
                state.condition = self._condition("True", "LowUtilization", message, generation, now, state)
                return ("Warning", CONDITION, message)
        else:
            state.idle_since = None
            if state.idle is True:
                message = f"GPU utilisation back at {util:.1f}% (threshold {threshold:g}%)"
                state.idle = False
                state.condition = self._condition("False", "GPUsActive", message, generation, now, state)
                return ("Normal", "GPUsActive", message)
        return None

    @staticmethod
    def _condition(
        status: str, reason: str, message: str, generation: int, now: float, state: _RunState
    ) -> dict[str, Any]:
        moment = datetime.fromtimestamp(now, UTC)
        return cond.condition(CONDITION, status, reason, message, generation, moment, state.condition)

    def _contribute(self, body: Mapping[str, Any], state: _RunState, now: float) -> None:
        """Hand this round's news to the controller: a GPUsIdle transition (with its Event) and, at most once per
        status interval, a changed summary. The controller writes them; nothing here touches the API."""
        assert self._ctx is not None
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        event = self._idle_transition(state, generation, now)
        conditions = [state.condition] if event and state.condition is not None else []
        fields: dict[str, Any] = {}
        if now - state.last_write >= self.cfg.status_interval_seconds:
            summary = state.account.summary(now)
            if _strip_time(summary) != _strip_time(state.written):
                fields["gpu"] = summary
                state.written, state.last_write = summary, now
        if conditions or fields:
            events = [event] if event else []
            self._ctx.contribute(state.key, state.uid, fields=fields, conditions=conditions, events=events)


def _strip_time(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "lastSampleTime"}
