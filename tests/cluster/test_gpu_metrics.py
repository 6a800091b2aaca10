"""GPU metrics end to end: fake DCGM exporters per kwok node feed the operator; MLflow, status, /metrics and GPUsIdle."""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from runyard_operator.timestamps import parse_epoch
from tests.cluster.conftest import OperatorProcess, Runs, training_run, wait_until
from tests.conftest import Cluster
from tests.mlflow_server import run_mlflow_server

# The MLflow client warns about its own deprecations; this module only reads metrics back through it.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

GPUS_PER_NODE = 8
UTIL = {"busy": 90.0, "idle": 1.0, "short": 60.0}
POWER = {"busy": 400.0, "idle": 70.0, "short": 300.0}
INTERVALS = 10  # scrape intervals per GPU before the busy run's means are checked


# --- MLflow ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


# --- fake DCGM exporters ----------------------------------------------------------------------------------------


class FakeExporters:
    """One HTTP server per GPU node, printing DCGM 4.x lines with the pod labels of the pods kwok put there."""

    def __init__(self, api: Any, namespace: str, nodes: list[str]) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.nodes = nodes
        self.pods: dict[str, list[tuple[str, str, int]]] = {n: [] for n in nodes}  # node -> (pod, run, gpus)
        self.t0 = time.time()
        self.servers: list[ThreadingHTTPServer] = []
        self.urls: dict[str, str] = {}
        self._stop = threading.Event()

    def owners(self, node: str) -> list[tuple[str, str] | None]:
        """(pod, run) holding each GPU of the node, in index order: the pods' GPUs handed out by pod name."""
        owners: list[tuple[str, str] | None] = []
        for pod, run, gpus in sorted(self.pods.get(node, [])):
            owners += [(pod, run)] * gpus
        return (owners + [None] * GPUS_PER_NODE)[:GPUS_PER_NODE]

    def render(self, node: str) -> str:
        lines: dict[str, list[str]] = {
            m: [] for m in ("GPU_UTIL", "FB_USED", "POWER_USAGE", "TOTAL_ENERGY_CONSUMPTION")
        }
        elapsed = time.time() - self.t0
        for i, owner in enumerate(self.owners(node)):
            labels = (
                f'gpu="{i}",UUID="GPU-{node}-{i:04d}",pci_bus_id="00000000:{i:02X}:00.0",device="nvidia{i}",'
                f'modelName="NVIDIA H100 80GB HBM3",Hostname="{node}",DCGM_FI_DRIVER_VERSION="550.90.07"'
            )
            run = owner[1] if owner else ""
            if owner:
                labels += f',container="trainer",namespace="{self.namespace}",pod="{owner[0]}"'
            power = POWER.get(run, 60.0)
            lines["GPU_UTIL"].append(f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} {int(UTIL.get(run, 0.0))}")
            lines["FB_USED"].append(f"DCGM_FI_DEV_FB_USED{{{labels}}} {4096 * (i + 1) if owner else 0}")
            lines["POWER_USAGE"].append(f"DCGM_FI_DEV_POWER_USAGE{{{labels}}} {power:f}")
            energy = int(1e9 + elapsed * power * 1000)
            lines["TOTAL_ENERGY_CONSUMPTION"].append(f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{labels}}} {energy}")
        out = []
        for metric, body in lines.items():
            kind = "counter" if metric == "TOTAL_ENERGY_CONSUMPTION" else "gauge"
            out += [f"# HELP DCGM_FI_DEV_{metric} test", f"# TYPE DCGM_FI_DEV_{metric} {kind}", *body]
        return "\n".join(out) + "\n"

    def _refresh(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.namespace, label_selector="runyard.dev/run-name").items
                found: dict[str, list[tuple[str, str, int]]] = {n: [] for n in self.nodes}
                for p in pods:
                    if p.spec.node_name in found and p.status.phase == "Running" and not p.metadata.deletion_timestamp:
                        limits = p.spec.containers[0].resources.limits or {}
                        found[p.spec.node_name].append(
                            (
                                p.metadata.name,
                                p.metadata.labels["runyard.dev/run-name"],
                                int(limits.get("nvidia.com/gpu", 0)),
                            )
                        )
                self.pods = found
            except Exception:  # the namespace goes away at teardown
                pass
            self._stop.wait(0.3)

    def start(self) -> None:
        exporters = self

        for node in self.nodes:

            class Handler(BaseHTTPRequestHandler):
                node_name = node

                def do_GET(self) -> None:
                    body = exporters.render(self.node_name).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *_: Any) -> None:
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
            self.urls[node] = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        threading.Thread(target=self._refresh, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()


class FakeAgents(FakeExporters):
    """Runyard's node agent as the operator scrapes it: DCGM gauges plus busy/idle/sampled seconds and the energy
    counter, integrated every 50 ms from this fake's own state, whose history is the truth.

    A GPU a pod holds is idle (0 %, 80 W) for the first `IDLE_HEAD` s after this fake sees the pod running, busy
    (100 %, 400 W) for `BUSY` s, then idle again until the pod ends; a GPU nobody holds is idle at 60 W.
    """

    IDLE_HEAD, BUSY = 3.0, 10.0

    def __init__(self, api: Any, namespace: str, nodes: list[str]) -> None:
        super().__init__(api, namespace, nodes)
        self.lock = threading.Lock()
        self.seen: dict[str, float] = {}  # pod -> when this fake first saw it running
        self.totals: dict[str, list[float]] = {}  # uuid -> [busy s, idle s, sampled s, energy J]
        self.gauges: dict[str, tuple[float, float, str]] = {}  # uuid -> (util %, power W, owning pod)
        self.history: dict[str, list[tuple[float, float, float]]] = {}  # uuid -> [(from, util %, power W)]

    def _state(self, pod: str | None, now: float) -> tuple[float, float]:
        if pod is None:
            return 0.0, 60.0
        since = now - self.seen.setdefault(pod, now)
        return (100.0, 400.0) if self.IDLE_HEAD <= since < self.IDLE_HEAD + self.BUSY else (0.0, 80.0)

    def _integrate(self) -> None:
        last = time.time()
        while not self._stop.wait(0.05):
            now = time.time()
            dt, last = now - last, now
            with self.lock:
                for node in self.nodes:
                    for i, owner in enumerate(self.owners(node)):
                        uuid = f"GPU-{node}-{i:04d}"
                        pod = owner[0] if owner else None
                        util, power = self._state(pod, now)
                        history = self.history.setdefault(uuid, [])
                        if not history or history[-1][1:] != (util, power):
                            history.append((now - dt, util, power))  # this step's state holds from its start
                        total = self.totals.setdefault(uuid, [0.0, 0.0, 0.0, 0.0])
                        total[0] += util / 100 * dt
                        total[1] += dt if util < 5 else 0.0
                        total[2] += dt
                        total[3] += power * dt
                        self.gauges[uuid] = (util, power, pod or "")

    def truth(self, uuid: str, start: float, end: float) -> tuple[float, float, float]:
        """Busy seconds, idle seconds and joules of one GPU between `start` and `end`, from the same steps."""
        busy = idle = joules = 0.0
        with self.lock:
            steps = [*self.history[uuid], (float("inf"), 0.0, 0.0)]
        for (t0, util, power), (t1, _, _) in itertools.pairwise(steps):
            span = max(min(t1, end) - max(t0, start), 0.0)
            busy += util / 100 * span
            idle += span if util < 5 else 0.0
            joules += power * span
        return busy, idle, joules

    def render(self, node: str) -> str:
        out: dict[str, list[str]] = {}
        with self.lock:
            for i in range(GPUS_PER_NODE):
                uuid = f"GPU-{node}-{i:04d}"
                if uuid not in self.totals:
                    continue
                util, power, pod = self.gauges[uuid]
                busy, idle, sampled, joules = self.totals[uuid]
                labels = (
                    f'gpu="{i}",UUID="{uuid}",device="nvidia{i}",modelName="NVIDIA H100 80GB HBM3",Hostname="{node}"'
                )
                if pod:
                    labels += f',container="trainer",namespace="{self.namespace}",pod="{pod}"'
                for metric, value in (
                    ("DCGM_FI_DEV_GPU_UTIL", util),
                    ("DCGM_FI_DEV_FB_USED", 4096.0 if pod else 0.0),
                    ("DCGM_FI_DEV_POWER_USAGE", power),
                    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", joules * 1000),
                    ("runyard_gpu_busy_seconds_total", busy),
                    ("runyard_gpu_idle_seconds_total", idle),
                    ("runyard_gpu_sampled_seconds_total", sampled),
                ):
                    out.setdefault(metric, []).append(f"{metric}{{{labels}}} {value:f}")
        return "".join(f"# TYPE {m} gauge\n" + "\n".join(body) + "\n" for m, body in out.items())

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._integrate, daemon=True).start()


# --- the operator with GPU metrics on ----------------------------------------------------------------------------


@contextlib.contextmanager
def gpu_operator(
    cluster: Cluster, api: Any, namespace: str, operator: OperatorProcess, tmp_path: Path, exporters: FakeExporters,
    config: dict[str, Any],
) -> Iterator[OperatorProcess]:  # fmt: skip
    """The session operator (no config) steps aside for one with GPU metrics on, reading `exporters`."""
    exporters.start()
    config["gpuMetrics"]["dcgm"] = {"endpoints": exporters.urls}
    config_path = tmp_path / "operator.yaml"
    config_path.write_text(yaml.safe_dump(config))
    operator.stop()
    log_dir = tmp_path / "gpu-operator"
    log_dir.mkdir()
    # Namespaced: other sessions may be running their own operators on the shared local cluster.
    gpu_op = OperatorProcess(
        cluster.kubeconfig, log_dir, extra_args=["--config", str(config_path), "--namespace", namespace]
    )
    try:
        gpu_op.start()
        yield gpu_op
    finally:
        gpu_op.stop()
        exporters.stop()
        operator.start()


def gpu_nodes(api: Any) -> list[str]:
    return sorted(n.metadata.name for n in client.CoreV1Api(api).list_node(label_selector="runyard.dev/pool=gpu").items)


@pytest.fixture
def gpu_setup(
    cluster: Cluster, api: Any, namespace: str, operator: OperatorProcess, mlflow_server: str, tmp_path: Path
) -> Iterator[tuple[Runs, OperatorProcess, FakeExporters, str]]:
    exporters = FakeExporters(api, namespace, gpu_nodes(api))
    config = {
        "tracking": {"mlflow": {"trackingUri": mlflow_server}},
        "gpuMetrics": {
            "source": "dcgm",
            "intervalSeconds": 1,
            "statusIntervalSeconds": 1,
            "idle": {"thresholdPercent": 10, "afterSeconds": 3},
        },
    }
    with gpu_operator(cluster, api, namespace, operator, tmp_path, exporters, config) as gpu_op:
        yield Runs(api, namespace), gpu_op, exporters, mlflow_server


def mlflow_run(tracking_uri: str, experiment: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(tracking_uri=tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(experiment)
    return str(mlflow.create_run(exp_id, run_name=name).info.run_id)


def run_id_of(runs: Runs, name: str) -> str | None:
    run_id = ((runs.status(name).get("tracking") or {}).get("mlflow") or {}).get("runId")
    return str(run_id) if run_id else None


def set_tracking(runs: Runs, name: str, tracking_uri: str) -> str:
    """The run's MLflow run id in *our* server: the tracking plugin's if it made one there, else one we create.

    Coordination is only through status.tracking.mlflow.runId. An id our server does not know was written by some other
    operator sharing the local cluster (with its own MLflow): replace it.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(tracking_uri=tracking_uri)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if existing := run_id_of(runs, name):
            try:
                mlflow.get_run(existing)
                return existing
            except MlflowException:
                break
        time.sleep(0.2)
    run_id = mlflow_run(tracking_uri, f"gpu-{runs.namespace}", name)
    runs.api.patch_namespaced_custom_object_status(
        "runyard.dev",
        "v1alpha1",
        runs.namespace,
        "trainingruns",
        name,
        {"status": {"tracking": {"mlflow": {"runId": run_id}}}},
    )
    return run_id


def test_gpu_metrics_end_to_end(gpu_setup: tuple[Runs, OperatorProcess, FakeExporters, str]) -> None:
    runs, op, exporters, tracking_uri = gpu_setup
    ns = runs.namespace
    try:
        runs.create(training_run("busy", "pytorch", {"node": 2}, gpus=4, outcome="running"))
        runs.create(training_run("idle", "pytorch", {"node": 1}, gpus=4, outcome="running"))
        runs.create(training_run("short", "pytorch", {"node": 1}, gpus=4, sim={"sim.runyard.dev/duration": "12s"}))
        run_ids = {name: set_tracking(runs, name, tracking_uri) for name in ("busy", "idle", "short")}
        runs.wait_phase("busy", "Running")
        runs.wait_phase("idle", "Running")
        assert run_ids == {name: run_id_of(runs, name) for name in run_ids}

        # status.gpu: allocation-based GPU-hours, utilisation from the exporters, ten intervals per GPU.
        def busy_gpu() -> dict[str, Any] | None:
            gpu = runs.status("busy").get("gpu") or {}
            devices = [a.get("device") for a in gpu.get("allocations") or []]
            enough = gpu.get("samples", 0) >= 8 * (INTERVALS + 1)
            return gpu if enough and len(devices) == 8 and all(devices) and gpu.get("avgUtilization") else None

        gpu = wait_until(busy_gpu, timeout=90, interval=0.5, what="status.gpu of busy")
        assert gpu["avgUtilization"] == pytest.approx(UTIL["busy"], abs=0.5)
        assert gpu["gpuHours"] > 0 and gpu["peakMemoryBytes"] > 0
        # Mean power is Δenergy/Δt: the exporter reads its counter when it renders the page, the operator stamps the
        # sample when it has read the reply, and the gap between the two moves with the machine's load. Over T seconds
        # of samples the mean is off by at most (largest gap - smallest gap) / T; a 300 ms swing over ten 1 s intervals
        # is 3 %. (One interval and a 1 % bound failed once in CI: 395.5 W for 400 W.)
        assert gpu["avgPowerWatts"] == pytest.approx(POWER["busy"], rel=0.03)
        assert {a["node"] for a in gpu["allocations"]} <= set(exporters.nodes)
        wait_until(lambda: (runs.status("busy").get("gpu") or {}).get("energyKWh", 0) > 0, timeout=20, what="energy")

        # The tracker: MLflow's own system-metric names, per node and GPU index.
        from mlflow.tracking import MlflowClient

        mlflow = MlflowClient(tracking_uri=tracking_uri)

        def busy_series() -> list[str]:
            keys = list(mlflow.get_run(run_ids["busy"]).data.metrics)
            return [k for k in keys if k.startswith("system/") and k.endswith("_utilization_percentage")]

        keys = wait_until(lambda: len(busy_series()) >= 8 and busy_series(), timeout=30, what="MLflow series")
        node = gpu["allocations"][0]["node"]
        assert any(k.startswith(f"system/{node}/gpu_") for k in keys)
        history = mlflow.get_metric_history(run_ids["busy"], keys[0])
        assert len(history) >= 2 and history[-1].value == pytest.approx(UTIL["busy"])
        assert any(k.endswith("_memory_usage_megabytes") for k in mlflow.get_run(run_ids["busy"]).data.metrics)
        assert any(k.endswith("_power_usage_watts") for k in mlflow.get_run(run_ids["busy"]).data.metrics)

        # /metrics: per-run series, not per GPU.
        labels = f'framework="pytorch",namespace="{ns}",run="busy"'
        text = wait_until(
            lambda: (t := op.metrics()) and f"runyard_trainingrun_gpus_allocated{{{labels}}} 8.0" in t and t,
            timeout=20,
            what="per-run GPU series on /metrics",
        )
        assert f"runyard_trainingrun_gpu_utilization_ratio{{{labels}}} 0.9" in text
        assert f"runyard_trainingrun_gpu_seconds_total{{{labels}}}" in text
        assert f"runyard_trainingrun_gpu_energy_joules_total{{{labels}}}" in text
        assert "GPU-kwok" not in text  # no per-GPU labels on the operator's metrics

        # The idle run: condition GPUsIdle (full list kept) and a Warning Event.
        def idle_condition() -> dict[str, Any] | None:
            conditions = {c["type"]: c for c in runs.status("idle").get("conditions") or []}
            cond = conditions.get("GPUsIdle")
            return conditions if cond and cond["status"] == "True" else None

        conditions = wait_until(idle_condition, timeout=30, what="GPUsIdle on the idle run")
        assert conditions["GPUsIdle"]["reason"] == "LowUtilization"
        assert conditions["Running"]["status"] == "True"  # the lifecycle's conditions are still there
        wait_until(lambda: "GPUsIdle" in [e.reason for e in runs.events("idle")], timeout=15, what="GPUsIdle Event")
        busy_conditions = {c["type"] for c in runs.status("busy").get("conditions") or []}
        assert "GPUsIdle" not in busy_conditions

        # A run that ends: final summary in status (intervals closed) and in the tracker.
        final = runs.wait_phase("short", "Succeeded", timeout=60)
        summary = final.get("gpu") or {}
        assert summary.get("gpuHours", 0) > 0, final
        assert all(a.get("end") for a in summary["allocations"])
        metrics = wait_until(
            lambda: (m := mlflow.get_run(run_ids["short"]).data.metrics) and "gpu_hours" in m and m,
            timeout=20,
            what="summary metrics in MLflow",
        )
        assert metrics["gpu_hours"] == pytest.approx(summary["gpuHours"], rel=1e-6)
        assert "gpu_energy_kwh" in metrics and metrics["gpu_util_avg_pct"] == pytest.approx(UTIL["short"], abs=0.5)
    except BaseException:
        print(op.logs()[-20000:], file=sys.stderr)
        raise
    finally:
        for name in ("busy", "idle", "short"):
            with contextlib.suppress(Exception):
                runs.delete(name)


def test_operator_restart_keeps_gpu_totals(gpu_setup: tuple[Runs, OperatorProcess, FakeExporters, str]) -> None:
    runs, op, _, _ = gpu_setup
    try:
        runs.create(training_run("keep", "pytorch", {"node": 1}, gpus=2, outcome="running"))
        runs.wait_phase("keep", "Running")
        before = wait_until(
            lambda: (g := runs.status("keep").get("gpu") or {}).get("samples", 0) >= 6 and g, timeout=60, what="samples"
        )
        op.kill()  # no graceful shutdown: totals must come back from status alone
        op.start()
        after = wait_until(
            lambda: (g := runs.status("keep").get("gpu") or {}).get("samples", 0) > before["samples"] + 2 and g,
            timeout=60,
            what="sampling after the restart",
        )
        saved_at = datetime.fromisoformat(before["lastSampleTime"].replace("Z", "+00:00")).timestamp()
        elapsed_h = (time.time() - saved_at) / 3600
        # GPU-hours keep growing from the saved total (2 GPUs x wall time), not from zero and not twice.
        assert before["gpuHours"] < after["gpuHours"] <= before["gpuHours"] + 2 * elapsed_h + 1e-6
        assert after["energyKWh"] >= before["energyKWh"]
        assert {a["podUid"] for a in after["allocations"]} == {a["podUid"] for a in before["allocations"]}
    except BaseException:
        print(op.logs()[-20000:], file=sys.stderr)
        raise


def test_the_edges_of_an_allocation_are_read_not_extrapolated(
    cluster: Cluster, api: Any, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """Rounds every 300 s: every sample of a 40 s run comes from the operator's own edge reads, an early round when its
    pod starts and a final read when it ends (by GPU UUID: the pod's labels are gone by then). Checked against the
    fake agent's own history over the allocation."""
    agents = FakeAgents(api, namespace, gpu_nodes(api))
    config = {"gpuMetrics": {"source": "dcgm", "intervalSeconds": 300, "statusIntervalSeconds": 0}}
    runs = Runs(api, namespace)
    with gpu_operator(cluster, api, namespace, operator, tmp_path, agents, config) as op:
        try:
            runs.create(training_run("edges", "pytorch", {"node": 1}, gpus=4, sim={"sim.runyard.dev/duration": "40s"}))
            # The early round's summary: its time is when the head (the pod's start to the first read) ended.
            first = wait_until(lambda: (runs.status("edges").get("gpu") or {}).get("samples") and runs.status("edges")["gpu"], timeout=60, what="the early read")  # fmt: skip
            assert first["samples"] == 4
            final = runs.wait_phase("edges", "Succeeded", timeout=120)["gpu"]
            assert final["samples"] == 8  # the early read and the final one, and no round in between
            allocations = final["allocations"]
            assert len(allocations) == 4 and all(a["device"] and a.get("end") for a in allocations)
            start, end = parse_epoch(allocations[0]["start"]), parse_epoch(allocations[0]["end"])
            first_read = parse_epoch(first["lastSampleTime"])
            assert start is not None and end is not None and first_read is not None
            busy = idle = joules = 0.0
            for a in allocations:
                b, i, j = agents.truth(a["device"], start, end)
                busy, idle, joules = busy + b, idle + i, joules + j
            span = 4 * (end - start)
            # What is extrapolated is the head only: at most its length of each GPU's time misattributed, at most the
            # fake's power range per second (plus a second at the end, where the fake may see the pod's end late).
            head = max(first_read - start, 0.0)
            assert final["avgUtilization"] == pytest.approx(100 * busy / span, abs=100 * head / (end - start) + 0.5)
            assert final["idleGpuHours"] * 3600 == pytest.approx(idle, abs=4 * head + 0.5)
            assert final["energyKWh"] * 3.6e6 == pytest.approx(joules, abs=4 * (head + 1) * 340)
            assert busy > 4 * 9  # the busy stretch lay inside the allocation: the check is not vacuous
        except BaseException:
            print(op.logs()[-20000:], file=sys.stderr)
            raise
        finally:
            with contextlib.suppress(Exception):
                runs.delete("edges")
