"""Runyard beside the Kubeflow training-operator v1.8.1 (PyTorchJob) on one control plane, with one observer.

Each side runs out of cluster as its own user (a client certificate per operator), so the apiserver's audit log tells
their requests apart. The same scenarios run for both, one side after the other: CR admission with the operator
stopped, idle create-to-Running, a burst of 2-pod jobs whose pods run 1 s (kwok), and the operator's memory before
and after the burst is deleted. Writes bench/results/*-peer.json and appends a ratio table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "hack"))

import localcluster  # noqa: E402

from bench.kube import BenchKube, WatchWaiter, drop_namespace, gather_limited, new_namespace  # noqa: E402
from bench.run import RESULTS, cpu_ticks, log, machine, parse_apiserver, pct, summarize_profile  # noqa: E402
from runyard.ports import free_port  # noqa: E402

CACHE = Path(os.environ.get("RUNYARD_CACHE", Path.home() / ".cache" / "runyard"))
PEER_VERSION = os.environ.get("PEER_VERSION", "v1.8.1")
PEER_DIR = CACHE / "bin" / f"training-operator-{PEER_VERSION}"
PEER_NS = "kubeflow"
PEER_SECRET = "training-operator-webhook-cert"
PEER_VWC = "validator.training-operator.kubeflow.org"
# v1.8.1 reads its serving certificates from this fixed path (a mounted Secret in its pod); out of cluster the bench
# copies the Secret it writes there, which is what lets it start its controllers.
PEER_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")
POD_SECONDS = "1s"  # kwok: how long each pod runs (hack/kwok-stages.yaml)
SIZES = {
    "full": {"admission": 2000, "idle": 30, "burst": 2000},
    "quick": {"admission": 300, "idle": 10, "burst": 200},
}


def _now() -> float:
    return time.perf_counter()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": round(pct(values, 50), 3), "p99": round(pct(values, 99), 3)}


# --- the two sides --------------------------------------------------------------------------------------


@dataclass
class Side:
    """One operator under test: how to start it, what its jobs look like, how to read a job's phase."""

    name: str
    user: str
    plural_path: str  # format(ns=...)
    job_label: str  # the pod label that names the job
    status_resource: str  # audit resource whose status subresource is the job's status
    proc: subprocess.Popen[bytes] | None = None
    ticks_before: int = 0  # CPU of earlier processes of this side (the admission scenario stops it)
    ready_url: str = ""

    def manifest(self, name: str, *, suspend: bool = False, seconds: str = POD_SECONDS) -> dict[str, Any]:
        raise NotImplementedError

    def phase(self, obj: dict[str, Any]) -> str:
        raise NotImplementedError

    def start(self, paths: localcluster.Paths) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=1) as r:
                return self._ready_text(r.read().decode())
        except OSError:
            return False

    def _ready_text(self, text: str) -> bool:
        return True

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"{self.name} operator exited with {self.proc.returncode}")
            if self.ready():
                return
            time.sleep(0.1)
        raise SystemExit(f"{self.name} operator not ready within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.ticks_before += cpu_ticks(self.proc.pid)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def ticks(self) -> int:
        return self.ticks_before + (cpu_ticks(self.proc.pid) if self.proc else 0)

    def _spawn(self, argv: list[str], env: dict[str, str]) -> None:
        log_file = open(RESULTS / f"peer-bench-{self.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **env})
        log_file.close()


def _pod_template(seconds: str, container: str) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {"sim.runyard.dev/duration": seconds}},
        "spec": {
            "containers": [
                {"name": container, "image": "ghcr.io/runyard/examples:0.1.0", "command": ["python", "train.py"]}
            ]
        },
    }


class RunyardSide(Side):
    def __init__(self) -> None:
        super().__init__(
            name="runyard",
            user=localcluster.AUDITED_USERS[0],
            plural_path="/apis/runyard.dev/v1alpha1/namespaces/{ns}/trainingruns",
            job_label="runyard.dev/run-name",
            status_resource="trainingruns",
        )

    def manifest(self, name: str, *, suspend: bool = False, seconds: str = POD_SECONDS) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "framework": "pytorch",
            "image": "ghcr.io/runyard/examples:0.1.0",
            "command": ["python", "train.py"],
            "replicas": {"node": {"replicas": 2}},
            "podTemplate": {"metadata": {"annotations": {"sim.runyard.dev/duration": seconds}}},
        }
        if suspend:
            spec["runPolicy"] = {"suspend": True}
        return {"apiVersion": "runyard.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name}, "spec": spec}

    def phase(self, obj: dict[str, Any]) -> str:
        return str((obj.get("status") or {}).get("phase") or "")

    def start(self, paths: localcluster.Paths) -> None:
        port = free_port()
        self.ready_url = f"http://127.0.0.1:{port}/readyz"
        exe = ROOT / ".venv" / "bin" / "runyard-operator"
        argv = [str(exe), "run", "--log-format", "plain", "--log-level", "WARNING", "--metrics-port", str(port)]
        self._spawn(argv, {"KUBECONFIG": str(localcluster.user_kubeconfig(paths, self.user))})


class PeerSide(Side):
    def __init__(self) -> None:
        super().__init__(
            name="kubeflow",
            user=localcluster.AUDITED_USERS[1],
            plural_path="/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs",
            job_label="training.kubeflow.org/job-name",
            status_resource="pytorchjobs",
        )

    def manifest(self, name: str, *, suspend: bool = False, seconds: str = POD_SECONDS) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "pytorchReplicaSpecs": {
                role: {"replicas": 1, "restartPolicy": "OnFailure", "template": _pod_template(seconds, "pytorch")}
                for role in ("Master", "Worker")
            }
        }
        if suspend:
            spec["runPolicy"] = {"suspend": True}
        return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name}, "spec": spec}

    def phase(self, obj: dict[str, Any]) -> str:
        true = {c.get("type") for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
        for phase in ("Failed", "Succeeded", "Running", "Restarting", "Created"):
            if phase in true:
                return phase
        return ""

    def start(self, paths: localcluster.Paths) -> None:
        metrics, probe = free_port(), free_port()
        self.ready_url = f"http://127.0.0.1:{metrics}/metrics"
        argv = [
            str(PEER_DIR / "training-operator"),
            "--enable-scheme=pytorchjob",
            f"--metrics-bind-address=127.0.0.1:{metrics}",
            f"--health-probe-bind-address=127.0.0.1:{probe}",
            f"--webhook-server-port={free_port()}",
            # its default logs every reconcile at debug level; Runyard's runs at WARNING, so both log errors only
            "--zap-log-level=error",
        ]
        self._spawn(
            argv, {"KUBECONFIG": str(localcluster.user_kubeconfig(paths, self.user)), "MY_POD_NAMESPACE": PEER_NS}
        )

    def _ready_text(self, text: str) -> bool:
        # Its controllers start only once its webhook certificates are in place; the worker gauge appears then.
        return 'controller_runtime_active_workers{controller="pytorchjob-controller"}' in text


# --- observer ---------------------------------------------------------------------------------------------


@dataclass
class JobTimes:
    created: float = 0.0
    pods: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # pod -> (running, terminal)
    phases: dict[str, float] = field(default_factory=dict)  # first time each phase was seen


class Observer(WatchWaiter):
    """One watch on the side's jobs and one on their pods; records when each job's pods and phases change."""

    def __init__(self, kube: BenchKube, side: Side, ns: str, pods_per_job: int = 2) -> None:
        super().__init__(kube)
        self.side, self.ns, self.pods_per_job = side, ns, pods_per_job
        self.jobs: dict[str, JobTimes] = defaultdict(JobTimes)

    def start(self) -> None:
        self.watch(self.side.plural_path.format(ns=self.ns), {}, self._job)
        self.watch(f"/api/v1/namespaces/{self.ns}/pods", {"labelSelector": self.side.job_label}, self._pod)

    def _job(self, event: dict[str, Any], now: float) -> None:
        obj = event["object"]
        phase = self.side.phase(obj)
        if phase:
            self.jobs[obj["metadata"]["name"]].phases.setdefault(phase, now)

    def _pod(self, event: dict[str, Any], now: float) -> None:
        obj = event["object"]
        job = (obj["metadata"].get("labels") or {}).get(self.side.job_label)
        if not job:
            return
        phase = (obj.get("status") or {}).get("phase", "")
        running, terminal = self.jobs[job].pods.get(obj["metadata"]["name"], (None, None))
        if phase in ("Running", "Succeeded", "Failed") and running is None:
            running = now
        if phase in ("Succeeded", "Failed") and terminal is None:
            terminal = now
        self.jobs[job].pods[obj["metadata"]["name"]] = (running, terminal)

    def pods_running_at(self, job: str) -> float | None:
        pods = self.jobs[job].pods.values()
        if len(pods) < self.pods_per_job or any(r is None for r, _ in pods):
            return None
        return max(r for r, _ in pods if r is not None)

    def pods_terminal_at(self, job: str) -> float | None:
        pods = self.jobs[job].pods.values()
        if len(pods) < self.pods_per_job or any(t is None for _, t in pods):
            return None
        return max(t for _, t in pods if t is not None)

    def done(self, job: str) -> float | None:
        phases = self.jobs[job].phases
        return phases.get("Succeeded") or phases.get("Failed")


# --- audit log ----------------------------------------------------------------------------------------


def audit_counts(path: Path, offset: int, user: str, until: int | None = None) -> Counter[str]:
    """Requests of `user` logged from byte `offset` (to `until`), by "verb resource[/subresource]" (ResponseComplete)."""
    counts: Counter[str] = Counter()
    with path.open("rb") as f:
        f.seek(offset)
        for line in f:
            if until is not None and f.tell() > until:
                break
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("stage") != "ResponseComplete" or ev.get("user", {}).get("username") != user:
                continue
            ref = ev.get("objectRef") or {}
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            counts[f"{ev.get('verb', '')} {resource}"] += 1
    return counts


def audit_offset(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


# --- the bench ----------------------------------------------------------------------------------------


class PeerBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = SIZES["quick" if args.quick else "full"]
        self.paths = localcluster.Paths(localcluster.STATE_DIR)
        self.sides: list[Side] = [RunyardSide(), PeerSide()]

    def kubectl(self, *argv: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [localcluster.kubectl_path(), f"--kubeconfig={self.paths.kubeconfig}", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def setup(self) -> None:
        if not (PEER_DIR / "training-operator").exists():
            subprocess.run([str(ROOT / "hack" / "build-binaries.sh"), "peer"], check=True)
        localcluster.up(self.args.nodes)
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / "runyard.dev_trainingruns.yaml")
        )
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEER_DIR / "crds"))
        self.kubectl(
            "wait", "--for=condition=Established", "crd/trainingruns.runyard.dev", "crd/pytorchjobs.kubeflow.org"
        )
        # The peer's out-of-cluster needs (../shared/notes/peer-bench.md): its namespace, the Secret its cert
        # rotator fills, and a webhook configuration with no webhooks, so the apiserver never calls it.
        objects = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PEER_NS}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": PEER_SECRET, "namespace": PEER_NS}},
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": PEER_VWC},
                "webhooks": [],
            },
        ]
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))

    def start(self, side: Side) -> None:
        side.start(self.paths)
        if isinstance(side, PeerSide):
            self._install_peer_certs()
        side.wait_ready()

    def _install_peer_certs(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            data = json.loads(self.kubectl("get", "secret", PEER_SECRET, "-n", PEER_NS, "-o", "json")).get("data") or {}
            if "tls.crt" in data and "tls.key" in data:
                PEER_CERT_DIR.mkdir(parents=True, exist_ok=True)
                for key, value in data.items():
                    (PEER_CERT_DIR / key).write_bytes(base64.b64decode(value))
                return
            time.sleep(0.2)
        raise SystemExit("the training-operator wrote no webhook certificates within 60s")

    def apiserver_ticks(self) -> int:
        info = localcluster.load_info(self.paths) or {}
        return cpu_ticks(int(info["pids"]["kube-apiserver"]))  # type: ignore[index]

    # --- scenarios ---

    async def admission(self, kube: BenchKube, side: Side) -> dict[str, Any]:
        """Create N CRs at 64 in flight with no operator running: the apiserver's admission and storage alone."""
        n = self.sizes["admission"]
        ns = await new_namespace(kube, f"adm-{side.name}")
        path = side.plural_path.format(ns=ns)
        # A pass that is not counted: the first requests of a kind pay for the API server's cold caches (its CEL
        # programs, the CRD's handlers, etcd's first pages), which would land on whichever side goes first.
        await gather_limited([kube.request("POST", path, side.manifest(f"w-{i}", suspend=True)) for i in range(50)], 64)
        api0 = self.apiserver_ticks()
        t0 = _now()
        codes = await gather_limited(
            [kube.request("POST", path, side.manifest(f"a-{i}", suspend=True)) for i in range(n)], 64
        )
        seconds = _now() - t0
        bad = Counter(c for c, _ in codes if c != 201)
        await drop_namespace(kube, ns)
        ticks = os.sysconf("SC_CLK_TCK")
        return {
            "objects": n,
            "seconds": round(seconds, 2),
            "per_s": round(n / seconds, 1),
            "apiserver_cpu_ms_per_object": round((self.apiserver_ticks() - api0) / ticks * 1000 / n, 2),
            "errors": dict(bad),
        }

    async def idle(self, kube: BenchKube, side: Side) -> dict[str, Any]:
        """One job at a time: create -> both pods Running, create -> the job's status says Running."""
        ns = await new_namespace(kube, f"idle-{side.name}")
        obs = Observer(kube, side, ns)
        obs.start()
        await asyncio.sleep(0.5)
        pods, status = [], []
        for i in range(self.sizes["idle"]):
            name = f"i-{i}"
            obs.jobs[name].created = _now()
            code, body = await kube.request("POST", side.plural_path.format(ns=ns), side.manifest(name, seconds="20s"))
            assert code == 201, body
            await obs.until(lambda n=name: obs.pods_running_at(n) is not None and "Running" in obs.jobs[n].phases, 60)  # type: ignore[misc]
            job = obs.jobs[name]
            pods.append(obs.pods_running_at(name) - job.created)  # type: ignore[operator]
            status.append(job.phases["Running"] - job.created)
        await obs.stop()
        await drop_namespace(kube, ns)
        return {"create_to_pods_running_s": _stats(pods), "create_to_status_running_s": _stats(status)}

    async def burst(self, kube: BenchKube, side: Side) -> dict[str, Any]:
        n = self.sizes["burst"]
        ns = await new_namespace(kube, f"burst-{side.name}")
        obs = Observer(kube, side, ns)
        obs.start()
        await asyncio.sleep(1)
        # the idle request rate of everything else (controllers, kwok, the observer), subtracted per job below
        idle_api0, idle_t0 = parse_apiserver(await kube.text("/metrics")), _now()
        await asyncio.sleep(10)
        idle_api1, idle_t1 = parse_apiserver(await kube.text("/metrics")), _now()
        idle_rate = (sum(idle_api1.values()) - sum(idle_api0.values())) / (idle_t1 - idle_t0)

        audit_path = localcluster.audit_log(self.paths)
        offset = audit_offset(audit_path)
        api0, op0, tick0 = parse_apiserver(await kube.text("/metrics")), side.ticks(), self.apiserver_ticks()
        profiler = self.start_profiler(side) if self.args.profile else None
        names = [f"b-{i}" for i in range(n)]
        t0 = _now()
        for name in names:
            obs.jobs[name].created = t0
        await gather_limited(
            [kube.request("POST", side.plural_path.format(ns=ns), side.manifest(name)) for name in names], 64
        )
        created = _now() - t0
        # CPU accounting of the create window: what competed with admission for the same cores
        op_created, api_created = side.ticks(), self.apiserver_ticks()
        # ...and what that CPU bought: the operator's creates (audit log) and the pods that exist when the last CR lands
        offset_created = audit_offset(audit_path)
        pods_at_created = sum(len(obs.jobs[j].pods) for j in names)
        await obs.until(lambda: all(obs.pods_running_at(j) is not None for j in names), 1800)
        all_running = max(obs.pods_running_at(j) for j in names) - t0  # type: ignore[type-var]
        await obs.until(lambda: all(obs.done(j) is not None for j in names), 1800)
        all_done = max(obs.done(j) for j in names) - t0  # type: ignore[type-var]
        await asyncio.sleep(5)  # trailing writes belong to the lifecycle
        window = _now() - t0
        api1, op1, tick1 = parse_apiserver(await kube.text("/metrics")), side.ticks(), self.apiserver_ticks()
        profile = self.stop_profiler(*profiler) if profiler else None
        await obs.stop()
        ticks = os.sysconf("SC_CLK_TCK")
        lag = [obs.done(j) - obs.pods_terminal_at(j) for j in names if obs.pods_terminal_at(j) is not None]  # type: ignore[operator]
        audit = audit_counts(audit_path, offset, side.user)
        window_creates = audit_counts(audit_path, offset, side.user, until=offset_created)
        per_job = {k: round(v / n, 2) for k, v in sorted(audit.items())}
        writes = {k: v for k, v in per_job.items() if k.split(" ")[0] in ("create", "update", "patch", "delete")}
        status_writes = sum(v for k, v in writes.items() if k.endswith(f"{side.status_resource}/status"))
        event_writes = sum(v for k, v in writes.items() if k.split(" ")[1] == "events")
        api_total = sum(api1.values()) - sum(api0.values()) - idle_rate * window
        out = {
            "jobs": n,
            "create_seconds": round(created, 2),
            "all_pods_running_s": round(all_running, 2),
            "all_done_s": round(all_done, 2),
            "jobs_per_s_running": round(n / all_running, 2),
            "jobs_per_s_done": round(n / all_done, 2),
            "pods_terminal_to_done_s": _stats(lag),
            "status_writes_per_job": round(status_writes, 2),
            "writes_per_job_excluding_events": round(sum(writes.values()) - event_writes, 2),
            "event_writes_per_job": round(event_writes, 2),
            "operator_requests_per_job": per_job,
            "apiserver_requests_per_job_minus_idle": round(api_total / n, 1),
            "operator_cpu_ms_per_job": round((op1 - op0) / ticks * 1000 / n, 1),
            "apiserver_cpu_ms_per_job": round((tick1 - tick0) / ticks * 1000 / n, 1),
            "create_window_operator_cpu_s": round((op_created - op0) / ticks, 2),
            "create_window_apiserver_cpu_s": round((api_created - tick0) / ticks, 2),
            "create_window_operator_creates": {
                k.split(" ", 1)[1]: v for k, v in sorted(window_creates.items()) if k.startswith("create ")
            },
            "create_window_pods_seen": pods_at_created,
        }
        if profile:
            out["profile"] = profile
        self.burst_ns = ns
        return out

    def start_profiler(self, side: Side) -> tuple[subprocess.Popen[bytes], Path] | None:
        """py-spy on Runyard's operator during the burst (the peer is Go: its CPU is accounted, not profiled)."""
        exe = shutil.which("py-spy", path=str(ROOT / ".venv" / "bin")) or shutil.which("py-spy")
        if not exe or side.proc is None or not isinstance(side, RunyardSide):
            return None
        out = RESULTS / f"profile-peer-burst-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.txt"
        argv = [exe, "record", "--pid", str(side.proc.pid), "--format", "raw", "--rate", "100", "--nonblocking"]
        return subprocess.Popen(
            [*argv, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ), out

    def stop_profiler(self, proc: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
        import gzip
        import signal

        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not out.exists():
            return {"error": "py-spy wrote no output"}
        summary = summarize_profile(out)
        packed = out.with_suffix(".txt.gz")
        packed.write_bytes(gzip.compress(out.read_bytes()))
        out.unlink()
        summary["file"] = str(packed.relative_to(ROOT))
        return summary

    async def side_run(self, kube: BenchKube, side: Side) -> dict[str, Any]:
        out: dict[str, Any] = {}
        log(f"{side.name}: admission")
        out["admission"] = await self.admission(kube, side)
        self.start(side)
        await asyncio.sleep(5)
        assert side.proc is not None
        out["rss_idle_mb"] = _rss_mb(side.proc.pid)
        log(f"{side.name}: idle")
        out["idle"] = await self.idle(kube, side)
        log(f"{side.name}: burst of {self.sizes['burst']}")
        out["burst"] = await self.burst(kube, side)
        out["rss_after_burst_mb"] = _rss_mb(side.proc.pid)
        await drop_namespace(kube, self.burst_ns, 600)
        await asyncio.sleep(15)  # let the operator see the deletions and settle
        out["rss_after_delete_mb"] = _rss_mb(side.proc.pid)
        side.stop()
        log(f"{side.name}: {json.dumps(out)}")
        return out

    async def run(self) -> dict[str, Any]:
        results: dict[str, Any] = {}
        async with BenchKube(self.paths.kubeconfig) as kube:
            for side in self.sides:
                if self.args.only and side.name not in self.args.only:
                    continue
                try:
                    results[side.name] = await self.side_run(kube, side)
                finally:
                    side.stop()
        return results


# --- report -------------------------------------------------------------------------------------------


ROWS: list[tuple[str, Callable[[dict[str, Any]], float], str, bool]] = [
    # label, getter, unit, lower is better
    ("burst: jobs/s to all pods Running", lambda r: r["burst"]["jobs_per_s_running"], "", False),
    ("burst: jobs/s to all jobs Succeeded", lambda r: r["burst"]["jobs_per_s_done"], "", False),
    ("burst: pods terminal -> job Succeeded p50 (s)", lambda r: r["burst"]["pods_terminal_to_done_s"]["p50"], "", True),
    ("burst: pods terminal -> job Succeeded p99 (s)", lambda r: r["burst"]["pods_terminal_to_done_s"]["p99"], "", True),
    ("idle: create -> both pods Running p50 (s)", lambda r: r["idle"]["create_to_pods_running_s"]["p50"], "", True),
    ("idle: create -> status Running p50 (s)", lambda r: r["idle"]["create_to_status_running_s"]["p50"], "", True),
    ("status writes per job (burst, audit log)", lambda r: r["burst"]["status_writes_per_job"], "", True),
    ("operator writes per job excluding Events", lambda r: r["burst"]["writes_per_job_excluding_events"], "", True),
    ("Event writes per job", lambda r: r["burst"]["event_writes_per_job"], "", True),
    (
        "apiserver requests per job, all clients, minus idle",
        lambda r: r["burst"]["apiserver_requests_per_job_minus_idle"],
        "",
        True,
    ),
    ("operator CPU ms per job (burst)", lambda r: r["burst"]["operator_cpu_ms_per_job"], "", True),
    ("apiserver CPU ms per job (burst)", lambda r: r["burst"]["apiserver_cpu_ms_per_job"], "", True),
    (
        "burst: seconds to create the CRs, 64 in flight, operator running",
        lambda r: r["burst"]["create_seconds"],
        "",
        True,
    ),
    (
        "create window: operator CPU s while the CRs are created",
        lambda r: r["burst"]["create_window_operator_cpu_s"],
        "",
        True,
    ),
    (
        "create window: apiserver CPU s while the CRs are created",
        lambda r: r["burst"]["create_window_apiserver_cpu_s"],
        "",
        True,
    ),
    (
        "create window: objects (not Events) the operator created meanwhile",
        lambda r: sum(v for k, v in r["burst"]["create_window_operator_creates"].items() if k != "events"),
        "",
        True,
    ),
    (
        "create window: pods the observer saw when the last CR was created",
        lambda r: r["burst"]["create_window_pods_seen"],
        "",
        True,
    ),
    ("admission: seconds to create the CRs, 64 in flight, no operator", lambda r: r["admission"]["seconds"], "", True),
    ("admission: apiserver CPU ms per CR", lambda r: r["admission"]["apiserver_cpu_ms_per_object"], "", True),
    ("operator RSS idle (MB)", lambda r: r["rss_idle_mb"], "", True),
    ("operator RSS after the burst is deleted (MB)", lambda r: r["rss_after_delete_mb"], "", True),
]


# Issue 18's targets that this side-by-side measures: label, Runyard's figure, the limit (from Runyard's and the
# peer's results), and how the limit was formed. The footprint after 10,000 runs, `runyard submit` and local runs are
# measured by bench/run.py and bench/local_run.py.
TARGETS: list[tuple[str, Callable[[dict[str, Any]], float], Callable[[dict[str, Any], dict[str, Any]], float], str]] = [
    ("status writes per job (burst)", lambda r: r["burst"]["status_writes_per_job"], lambda r, p: 2.0, "<= 2"),
    (
        "operator CPU ms per job (burst)",
        lambda r: r["burst"]["operator_cpu_ms_per_job"],
        lambda r, p: p["burst"]["operator_cpu_ms_per_job"],
        "<= the peer's",
    ),
    (
        "apiserver CPU ms per job (burst)",
        lambda r: r["burst"]["apiserver_cpu_ms_per_job"],
        lambda r, p: 1.1 * p["burst"]["apiserver_cpu_ms_per_job"],
        "<= 1.1 x the peer's",
    ),
    (
        "seconds to create the CRs, 64 in flight",
        lambda r: r["burst"]["create_seconds"],
        lambda r, p: 1.5 * p["burst"]["create_seconds"],
        "<= 1.5 x the peer's",
    ),
    (
        "idle: create -> status Running p50 (s)",
        lambda r: r["idle"]["create_to_status_running_s"]["p50"],
        lambda r, p: 0.5,
        "<= 0.5",
    ),
    ("operator RSS idle (MB)", lambda r: r["rss_idle_mb"], lambda r, p: 60.0, "<= 60"),
]


def targets_markdown(doc: dict[str, Any]) -> str:
    """Each target of issue 18 this run measured, met or missed; misses are explained in bench/RESULTS.md."""
    ours, peer = doc["results"].get("runyard"), doc["results"].get("kubeflow")
    if not ours or not peer:
        return ""
    lines = ["\n| target (issue 18) | Runyard | limit | |", "|---|---|---|---|"]
    for label, get, limit, how in TARGETS:
        try:
            value, bound = get(ours), limit(ours, peer)
        except (KeyError, TypeError):
            continue
        lines.append(f"| {label} | {value} | {bound:.3g} ({how}) | {'met' if value <= bound else '**missed**'} |")
    return "\n".join(lines) + "\n"


def markdown(doc: dict[str, Any]) -> str:
    res = doc["results"]
    ours, peer = res.get("runyard"), res.get("kubeflow")
    lines = [
        f"\n## Beside the Kubeflow training-operator {PEER_VERSION} ({doc['date']}, {doc['mode']}, commit {doc['commit']})\n",
        f"{doc['sizes']['burst']} jobs in the burst (2 pods each, pods run {POD_SECONDS}, {doc['nodes']} kwok nodes), "
        f"{doc['sizes']['idle']} idle jobs, {doc['sizes']['admission']} CRs admitted; {doc['machine'].get('cores')} "
        "cores shared by the control plane, the operator under test and the observer. Ratio: Runyard / peer.\n",
        "| measure | Runyard | KF training-operator | ratio |",
        "|---|---|---|---|",
    ]
    for label, get, _, _lower in ROWS:
        try:
            a, b = get(ours) if ours else float("nan"), get(peer) if peer else float("nan")
        except (KeyError, TypeError):
            continue
        ratio = f"{a / b:.2f}" if b else "—"
        lines.append(f"| {label} | {a} | {b} | {ratio} |")
    return "\n".join(lines) + "\n" + targets_markdown(doc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("NODES", "100")))
    parser.add_argument("--only", nargs="*", choices=["runyard", "kubeflow"])
    parser.add_argument("--profile", action="store_true", help="py-spy record Runyard's operator during the burst")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    bench = PeerBench(args)
    t0 = time.perf_counter()
    bench.setup()
    results = asyncio.run(bench.run())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    doc = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "commit": commit.strip(),
        "nodes": args.nodes,
        "sizes": bench.sizes,
        "machine": machine(),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}-{doc['mode']}-peer.json").write_text(json.dumps(doc, indent=2))
    md = markdown(doc)
    if not args.only:
        with (ROOT / "bench" / "RESULTS.md").open("a") as f:
            f.write(md)
    print(md)
    shutil.rmtree(PEER_CERT_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
