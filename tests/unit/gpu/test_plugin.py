"""GPUPlugin with a fake source and sink and the controller's merge: status.gpu, GPUsIdle, Events, /metrics, tracker,
finish, restart. The plugin never calls the API: its status and Events reach the run through contributions."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import generate_latest

from runyard.api import TrainingRun
from runyard_operator import metrics
from runyard_operator.config import OperatorConfig
from runyard_operator.controller import status_patch
from runyard_operator.gpu.accounting import Point
from runyard_operator.gpu.config import GPUMetricsConfig
from runyard_operator.gpu.parser import GPUSample
from runyard_operator.gpu.plugin import GPUPlugin
from runyard_operator.gpu.sinks import MLflowSink, mlflow_keys
from runyard_operator.gpu.sources import Target
from runyard_operator.observe import PodView
from runyard_operator.plugins import PluginContext, StatusContributions

NS, NAME, UID = "team", "llm", "run-uid-1"


def pod_view(index: int, node: str, gpus: int = 2, phase: str = "Running") -> PodView:
    return PodView(
        name=f"{NAME}-node-{index}",
        uid=f"pod-{index}",
        run_uid=UID,
        role="node",
        attempt=0,
        index=index,
        phase=phase,
        node=node,
        ready=True,
        unschedulable_message="",
        termination=None,
        gpus=gpus,
        deleting=False,
        start_time="2026-01-01T00:00:00Z",
        reason="",
        message="",
    )


T0 = 1767225600.0  # 2026-01-01T00:00:00Z


class NoKube:
    """The API door a plugin gets: the GPU plugin (with its source given) must not use it, least of all to patch."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the GPU plugin called Kube.{name}: the controller is the status' only writer")


class Writer:
    """What the controller does when a contribution wakes the run: merge it into the status, write once, post Events.

    (tests/unit/operator/test_controller.py drives the real controller through the same contributions.)
    """

    def __init__(self, body: dict[str, Any], store: StatusContributions) -> None:
        self.body = body
        self.store = store
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []

    def reconcile(self, key: tuple[str, str]) -> None:
        assert key == (NS, NAME)
        pending = self.store.pending(UID)
        if pending is None:
            return
        old = self.body.get("status") or {}
        new = pending.apply(old)
        if patch := status_patch(old, new):
            self.patches.append(patch)
            self.body["status"] = new
            self.events += pending.event_list()
        self.store.written(UID, pending)


class FakeSource:
    def __init__(self) -> None:
        self.util = 90.0
        self.energy = 1e9
        self.calls: list[tuple[list[Target], set[str]]] = []
        self.clock = T0

    async def collect(self, targets: Sequence[Target], devices: Collection[str]) -> list[GPUSample]:
        self.calls.append((list(targets), set(devices)))
        self.energy += 400_000.0 * 15  # 400 W for 15 s, per GPU
        return [self.sample(t, i) for t in targets for i in range(2)]

    def sample(self, t: Target, i: int) -> GPUSample:
        """GPU `i` of the pod `t` names, as a plain DCGM exporter reports it."""
        return GPUSample(
            node=t.node,
            uuid=f"GPU-{t.node}-{i}",
            index=str(i),
            time=self.clock,
            namespace=t.namespace,
            pod=t.pod,
            container="trainer",
            utilization=self.util,
            memory_used_bytes=1e9 * (i + 1),
            power_watts=400.0,
            energy_mj=self.energy,
        )

    async def close(self) -> None:
        pass


class FakeSink:
    def __init__(self) -> None:
        self.series: list[tuple[str, list[Point], int]] = []
        self.summaries: list[tuple[str, dict[str, float]]] = []

    async def log_series(self, run_id: str, points: Sequence[Point], step: int) -> None:
        self.series.append((run_id, list(points), step))

    async def log_summary(self, run_id: str, summary: Mapping[str, float], when: float) -> None:
        self.summaries.append((run_id, dict(summary)))


def run_body(phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "runyard.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 3},
        "spec": {"framework": "pytorch", "image": "x", "replicas": {"node": {"replicas": 2}}},
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "Running", "status": "True", "reason": "Started"},
                {"type": "Custom", "status": "True"},
            ],
            "tracking": {"mlflow": {"runId": "mlflow-run"}},
        },
    }


class Harness:
    def __init__(self, cfg: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> None:
        self.body = body or run_body()
        store = StatusContributions()
        self.writer = Writer(self.body, store)
        self.source = FakeSource()
        self.sink = FakeSink()
        self.now = T0
        self.pods = [pod_view(0, "n0"), pod_view(1, "n1")]
        config = GPUMetricsConfig.model_validate(
            {"intervalSeconds": 15, "statusIntervalSeconds": 0, "idle": {"thresholdPercent": 10, "afterSeconds": 30}}
            | (cfg or {})
        )
        self.plugin = GPUPlugin(config, source=self.source, sink=self.sink, clock=lambda: self.now)
        self.ctx = PluginContext(
            kube=NoKube(),  # type: ignore[arg-type]
            runs=self.runs,
            pods_of=lambda uid: list(self.pods) if uid == UID else [],
            reconcile=self.writer.reconcile,
            status=store,
            # The pods in `pods` belong to Jobs the run controls; any other pod is foreign.
            owned_pod=lambda uid: next((((NS, NAME), p) for p in self.pods if p.uid == uid), None),
            run=lambda key: self.body if key == (NS, NAME) else None,
        )
        self.plugin.attach(self.ctx)  # drive rounds by hand instead of the timer loop

    def runs(self) -> Iterable[tuple[tuple[str, str], Mapping[str, Any]]]:
        return [((NS, NAME), self.body)]

    def round(self, util: float | None = None) -> None:
        if util is not None:
            self.source.util = util
        self.now += 15
        self.source.clock = self.now

        async def one_round() -> None:
            await self.plugin.tick()
            await self.plugin.flush()

        asyncio.run(one_round())


def test_from_config() -> None:
    assert GPUPlugin.from_config(OperatorConfig()) is None
    assert GPUPlugin.from_config(OperatorConfig.model_validate({"gpuMetrics": {"enabled": False}})) is None
    plugin = GPUPlugin.from_config(
        OperatorConfig.model_validate(
            {
                "gpuMetrics": {"source": "dcgm", "intervalSeconds": 5},
                "tracking": {"mlflow": {"trackingUri": "http://m"}},
            }
        )
    )
    assert plugin is not None and plugin.cfg.interval_seconds == 5 and isinstance(plugin._sink, MLflowSink)
    with pytest.raises(ValueError, match="prometheus"):
        GPUMetricsConfig.model_validate({"source": "prometheus"})


def test_rounds_write_status_series_and_metrics() -> None:
    h = Harness()
    for _ in range(4):
        h.round()
    gpu = h.body["status"]["gpu"]
    # 2 pods x 2 GPUs since the pods' start (T0) until the 4th round (T0 + 60 s).
    assert gpu["gpuHours"] == pytest.approx(4 * 60 / 3600)
    assert gpu["avgUtilization"] == pytest.approx(90.0)
    assert gpu["peakMemoryBytes"] == 2e9
    assert gpu["avgPowerWatts"] == pytest.approx(400.0)
    # 3 counter deltas on 4 GPUs, and the head (the pods' start to the first sample) at the first interval's 400 W.
    assert gpu["energyKWh"] == pytest.approx(4 * (3 + 1) * 400 * 15 / 3.6e6)
    assert len(gpu["allocations"]) == 4 and all(a["device"].startswith("GPU-") for a in gpu["allocations"])
    # The sources got the run's pods on their nodes and, once known, the GPU UUIDs.
    targets, devices = h.source.calls[-1]
    assert sorted((t.pod, t.node) for t in targets) == [("llm-node-0", "n0"), ("llm-node-1", "n1")]
    assert len(devices) == 4
    # Tracker: MLflow system-metric names per node and GPU, one step per round.
    run_id, points, step = h.sink.series[-1]
    assert (run_id, step) == ("mlflow-run", 4)
    keys = {k for p in points for k in mlflow_keys(p)}
    assert "system/n0/gpu_0_utilization_percentage" in keys
    assert "system/n1/gpu_1_memory_usage_megabytes" in keys
    assert "system/n1/gpu_1_power_usage_watts" in keys
    text = generate_latest(metrics.REGISTRY).decode()
    labels = 'framework="pytorch",namespace="team",run="llm"'
    assert f"runyard_trainingrun_gpus_allocated{{{labels}}} 4.0" in text
    assert f"runyard_trainingrun_gpu_utilization_ratio{{{labels}}} 0.9" in text
    assert f"runyard_trainingrun_gpu_seconds_total{{{labels}}} 240.0" in text
    assert "runyard_trainingrun_gpu_energy_joules_total{" in text
    assert "runyard_trainingrun_gpu_memory_used_peak_bytes{" in text
    assert not h.writer.events and "conditions" not in h.writer.patches[-1]


def test_idle_condition_and_events_keep_other_conditions() -> None:
    h = Harness()
    h.round(util=2.0)
    h.round(util=1.0)
    assert not h.writer.events  # 15 s idle so far, threshold is 30 s
    h.round(util=1.0)
    h.round(util=1.0)
    assert [e[:2] for e in h.writer.events] == [("Warning", "GPUsIdle")]
    conditions = {c["type"]: c for c in h.body["status"]["conditions"]}
    assert set(conditions) == {"Running", "Custom", "GPUsIdle"}  # the full list, ours replaced or appended
    idle = conditions["GPUsIdle"]
    assert (idle["status"], idle["reason"], idle["observedGeneration"]) == ("True", "LowUtilization", 3)
    assert idle["lastTransitionTime"].endswith("Z") and "below 10%" in idle["message"]
    h.round(util=1.0)
    assert len(h.writer.events) == 1  # no repeat while it stays idle
    h.round(util=80.0)
    assert [e[1] for e in h.writer.events] == ["GPUsIdle", "GPUsActive"]
    conditions = {c["type"]: c for c in h.body["status"]["conditions"]}
    assert (conditions["GPUsIdle"]["status"], conditions["GPUsIdle"]["reason"]) == ("False", "GPUsActive")


def test_summary_waits_for_the_status_interval_but_an_idle_transition_does_not() -> None:
    h = Harness({"statusIntervalSeconds": 60})
    h.round(util=1.0)  # the first round always publishes a summary
    assert [set(p) for p in h.writer.patches] == [{"gpu"}]
    h.round(util=1.0)
    h.round(util=1.0)  # idle for 30 s: the condition and its Event go out now, the summary waits
    assert [set(p) for p in h.writer.patches] == [{"gpu"}, {"conditions"}]
    assert [e[1] for e in h.writer.events] == ["GPUsIdle"]
    h.round(util=1.0)
    h.round(util=1.0)  # 60 s after the first summary
    assert [set(p) for p in h.writer.patches] == [{"gpu"}, {"conditions"}, {"gpu"}]


def test_idle_condition_is_merged_by_type_and_survives_a_restart_without_a_second_event() -> None:
    h = Harness()
    for _ in range(4):
        h.round(util=0.0)
    conditions = h.body["status"]["conditions"]
    assert [c["type"] for c in conditions] == ["Running", "Custom", "GPUsIdle"]  # map list: ours appended once
    since = conditions[-1]["lastTransitionTime"]
    # A new operator process: the plugin's state comes back from status (status.gpu and the condition).
    h2 = Harness(body=h.body)
    h2.now, h2.source.energy = h.now, h.source.energy
    h2.round(util=0.0)
    assert not h2.writer.events and h2.body["status"]["conditions"][-1]["lastTransitionTime"] == since
    h2.round(util=90.0)
    assert [e[1] for e in h2.writer.events] == ["GPUsActive"]
    assert [c["type"] for c in h2.body["status"]["conditions"]] == ["Running", "Custom", "GPUsIdle"]


def test_finished_closes_intervals_and_logs_summary() -> None:
    h = Harness()
    for _ in range(2):
        h.round()
    h.body["status"] |= {"phase": "Succeeded", "completionTime": "2026-01-01T00:01:00Z"}
    run = TrainingRun.model_validate({k: h.body[k] for k in ("apiVersion", "kind", "metadata", "spec")})

    async def finish() -> dict[str, Any]:
        out = await h.plugin.finished(run, h.body["status"])
        await h.plugin.flush()
        return out

    result = asyncio.run(finish())
    gpu = result["gpu"]
    assert gpu["gpuHours"] == pytest.approx(4 * 60 / 3600)  # closed at completionTime, not at "now"
    assert all(a.get("end") for a in gpu["allocations"])
    ((run_id, summary),) = h.sink.summaries
    assert run_id == "mlflow-run" and summary["gpu_hours"] == pytest.approx(4 * 60 / 3600)
    h.body["status"]["gpu"] = gpu
    h.round()  # a finished run is never sampled or written again
    assert h.body["status"]["gpu"] == gpu
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'runyard_trainingrun_gpus_allocated{framework="pytorch",namespace="team",run="llm"} 0.0' in text


def test_restart_resumes_from_status() -> None:
    h = Harness()
    for _ in range(3):
        h.round()
    saved = dict(h.body["status"]["gpu"])
    # A new operator process: fresh plugin, same cached run body (with status.gpu), same source.
    h2 = Harness(body=h.body)
    h2.now, h2.source.energy = h.now, h.source.energy
    h2.round()
    gpu = h2.body["status"]["gpu"]
    assert gpu["gpuHours"] == pytest.approx(saved["gpuHours"] + 4 * 15 / 3600)
    assert gpu["energyKWh"] == pytest.approx(saved["energyKWh"] + 4 * 400 * 15 / 3.6e6)
    assert gpu["samples"] == saved["samples"] + 4


def test_finished_without_samples_changes_nothing() -> None:
    h = Harness()
    run = TrainingRun.model_validate({k: h.body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    assert asyncio.run(h.plugin.finished(run, {"phase": "Succeeded"})) == {}


def test_pending_and_cpu_runs_are_not_sampled() -> None:
    h = Harness(body=run_body("Pending"))
    h.round()
    assert h.source.calls == [] and h.writer.patches == []


class FakeMlflowClient:
    def __init__(self) -> None:
        self.batches: list[tuple[str, list[Any]]] = []

    def log_batch(self, run_id: str, metrics: list[Any]) -> None:
        self.batches.append((run_id, metrics))


def test_mlflow_sink_batches_by_1000() -> None:
    client = FakeMlflowClient()
    sink = MLflowSink("http://unused", client=client)
    points = [Point("n0", str(i), T0, 50.0, 2e9, 300.0) for i in range(400)]
    asyncio.run(sink.log_series("rid", points, step=7))
    assert [len(m) for _, m in client.batches] == [1000, 200]
    first = client.batches[0][1][0]
    assert (first.key, first.value, first.timestamp, first.step) == (
        "system/n0/gpu_0_utilization_percentage",
        50.0,
        int(T0 * 1000),
        7,
    )
    mem = next(m for m in client.batches[0][1] if m.key.endswith("memory_usage_megabytes"))
    assert mem.value == 2000.0  # MB as MLflow logs it, not MiB


def test_mlflow_sink_swallows_errors() -> None:
    class Broken:
        def log_batch(self, *_: Any, **__: Any) -> None:
            raise RuntimeError("tracker down")

    asyncio.run(MLflowSink("x", client=Broken()).log_summary("rid", {"gpu_hours": 1.0}, T0))


def test_the_documented_config_example_parses() -> None:
    import re
    from pathlib import Path

    import yaml

    from runyard_operator.gpu.config import parse_gpu_config

    doc = (Path(__file__).resolve().parents[3] / "docs" / "gpu-metrics.md").read_text()
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", doc, re.S).group(1))  # type: ignore[union-attr]
    example["gpuMetrics"]["source"] = "prometheus"  # the example fills every source's section
    cfg = parse_gpu_config(OperatorConfig.model_validate(example).gpu_metrics)
    assert cfg is not None and cfg.prometheus is not None and cfg.dcgm.port_name == "gpu-metrics"


def test_a_slow_tracker_does_not_hold_up_sampling() -> None:
    h = Harness()

    class SlowSink(FakeSink):
        async def log_series(self, run_id: str, points: Sequence[Point], step: int) -> None:
            await asyncio.sleep(0.5)
            await super().log_series(run_id, points, step)

    h.plugin._sink = slow = SlowSink()

    async def rounds() -> float:
        started = asyncio.get_running_loop().time()
        for _ in range(3):
            h.now += 15
            h.source.clock = h.now
            await h.plugin.tick()
        elapsed = asyncio.get_running_loop().time() - started
        await h.plugin.flush()
        return elapsed

    assert asyncio.run(rounds()) < 0.4
    assert [step for _, _, step in slow.series] == [1, 2, 3]  # queued rounds are sent, in order


def test_start_runs_one_loop_and_stop_ends_it() -> None:
    h = Harness({"intervalSeconds": 0.2})
    h.plugin = GPUPlugin(h.plugin.cfg, source=h.source, sink=h.sink)

    async def body() -> None:
        await h.plugin.start(h.ctx)
        await asyncio.sleep(0.7)
        await h.plugin.stop()

    asyncio.run(body())
    assert 2 <= len(h.source.calls) <= 5
    assert h.body["status"]["gpu"]["samples"] >= 4


class CountingSource(FakeSource):
    """Runyard's agent: the GPUs are busy until `stop_busy`, idle after, and the counters say so."""

    def __init__(self, stop_busy: float) -> None:
        super().__init__()
        self.stop_busy = stop_busy
        self.pod_labels = True

    def sample(self, t: Target, i: int) -> GPUSample:
        busy = min(self.clock, self.stop_busy) - T0
        idle = max(self.clock - self.stop_busy, 0.0)
        util = 90.0 if self.clock < self.stop_busy else 0.0
        owner = {} if self.pod_labels else {"namespace": "", "pod": "", "container": ""}
        return replace(
            super().sample(t, i),
            utilization=util,
            power_watts=400.0 if util else 70.0,
            energy_mj=1e9 + (400.0 * busy + 70.0 * idle) * 1000,
            busy_seconds=0.9 * busy,
            idle_seconds=idle,
            sampled_seconds=self.clock - T0,
            **owner,  # type: ignore[arg-type]
        )


def test_finished_reads_the_gpus_once_more_so_the_tail_is_measured() -> None:
    h = Harness()
    h.source = CountingSource(stop_busy=T0 + 40)
    h.plugin._source = h.source
    for _ in range(2):
        h.round()  # reads at T0+15 and T0+30: busy all along
    # The pods end at T0+40 (the job's last 20 s idle: it ended at T0+60); the operator hears of it at T0+62.
    h.pods = []
    h.source.pod_labels = False  # the agent no longer names the pod
    h.now = h.source.clock = T0 + 62
    h.body["status"] |= {"phase": "Succeeded", "completionTime": "2026-01-01T00:01:00Z"}
    run = TrainingRun.model_validate({k: h.body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    gpu = asyncio.run(h.plugin.finished(run, h.body["status"]))["gpu"]
    targets, devices = h.source.calls[-1]
    assert sorted(t.node for t in targets) == ["n0", "n1"] and len(devices) == 4
    # 4 GPUs x 60 s: busy 40 s, idle 20 s (a tail extrapolated from the busy interval would say 0 s idle).
    assert gpu["gpuHours"] == pytest.approx(4 * 60 / 3600)
    assert gpu["idleGpuHours"] == pytest.approx(4 * 20 / 3600)
    assert gpu["avgUtilization"] == pytest.approx(90.0 * 40 / 60)
    assert gpu["energyKWh"] == pytest.approx(4 * (400 * 40 + 70 * 20) / 3.6e6)
    assert gpu["samples"] == 3 * 4


def test_a_failing_final_read_still_ends_the_run() -> None:
    class Broken(FakeSource):
        async def collect(self, targets: Sequence[Target], devices: Collection[str]) -> list[GPUSample]:
            if len(self.calls) >= 2:  # the two rounds read; the final read fails
                raise RuntimeError("exporter down")
            return await super().collect(targets, devices)

    h = Harness()
    h.source = Broken()
    h.plugin._source = h.source
    h.round()
    h.round()
    h.body["status"] |= {"phase": "Failed", "completionTime": "2026-01-01T00:00:40Z"}
    run = TrainingRun.model_validate({k: h.body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    gpu = asyncio.run(h.plugin.finished(run, h.body["status"]))["gpu"]
    assert all(a.get("end") for a in gpu["allocations"]) and gpu["gpuHours"] == pytest.approx(4 * 40 / 3600)


def test_a_starting_pod_gets_an_early_round_of_its_own() -> None:
    h = Harness({"intervalSeconds": 300})
    h.plugin = GPUPlugin(h.plugin.cfg, source=h.source, sink=h.sink, clock=lambda: h.now)

    async def body() -> None:
        await h.plugin.start(h.ctx)
        await wait_for(lambda: len(h.source.calls) == 1)  # the first regular round, at once
        h.plugin.pod_changed(UID, h.pods[0])  # already sampled: nothing to do
        assert not h.plugin._wake.is_set()
        h.plugin.pod_changed(UID, pod_view(2, "n2", phase="Pending"))  # not running yet
        assert not h.plugin._wake.is_set()
        h.plugin.pod_changed(UID, pod_view(2, "n2"))  # running, but no Job of the run owns it (only its label)
        assert not h.plugin._wake.is_set()
        h.pods.append(pod_view(2, "n2"))
        h.plugin.pod_changed(UID, h.pods[-1])
        await wait_for(lambda: len(h.source.calls) == 2)  # not five minutes later
        await h.plugin.stop()

    asyncio.run(body())
    targets, _ = h.source.calls[1]
    assert "llm-node-2" in {t.pod for t in targets}


async def wait_for(done: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_an_early_round_is_tried_again_until_the_cache_shows_the_run_active() -> None:
    h = Harness({"intervalSeconds": 300}, body=run_body(phase="Pending"))
    h.plugin = GPUPlugin(h.plugin.cfg, source=h.source, sink=h.sink, clock=lambda: h.now)

    async def body() -> None:
        await h.plugin.start(h.ctx)
        await asyncio.sleep(0)  # the first regular round: the run is not active yet, nothing to read
        h.plugin.pod_changed(UID, h.pods[0])  # its pod runs before the run's phase says so
        await wait_for(lambda: not h.plugin._wake.is_set() and ((NS, NAME), UID, "pod-0") in h.plugin._early)
        assert not h.source.calls
        h.body["status"]["phase"] = "Running"  # the controller's write reaches the cache
        await wait_for(lambda: len(h.source.calls) == 1)
        await wait_for(lambda: not h.plugin._early)
        await h.plugin.stop()

    asyncio.run(body())
    assert h.body["status"]["gpu"]["samples"] == 4
