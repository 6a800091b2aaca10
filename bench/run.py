"""Runyard benchmarks on the local control plane: latency, burst throughput vs a raw client, status freshness,
API cost per run lifecycle, operator footprint and CLI submit time. Writes bench/results/*.json and bench/RESULTS.md."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "hack"))

import localcluster  # noqa: E402

from bench.kube import BenchKube, WatchWaiter, drop_namespace, gather_limited, new_namespace  # noqa: E402
from runyard.ports import free_port  # noqa: E402

TR_PATH = "/apis/runyard.dev/v1alpha1/namespaces/{ns}/trainingruns"
CHILD_SELECTOR = "app.kubernetes.io/managed-by=runyard-operator"
RESULTS = ROOT / "bench" / "results"
CENSUS = RESULTS / "census"

FULL = {
    "idle": 200,
    "burst": 2000,
    "fresh_active": 2000,
    "fresh_sample": 200,
    "cost": 200,
    "footprint": [1000, 10000],
    "submit": 10,
}
QUICK = {
    "idle": 60,
    "burst": 300,
    "fresh_active": 300,
    "fresh_sample": 60,
    "cost": 60,
    "footprint": [1000],
    "submit": 3,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    """Median and p99 (in ms by default) plus count."""
    return {
        "n": len(values),
        "p50": round(pct(values, 50) * scale, 2),
        "p99": round(pct(values, 99) * scale, 2),
        "max": round(max(values) * scale, 2) if values else float("nan"),
    }


def manifest(
    name: str, *, suspend: bool = False, outcome: str | None = None, duration: str = "1s", replicas: int = 1
) -> dict[str, Any]:
    labels = {"sim.runyard.dev/outcome": outcome} if outcome else {}
    spec: dict[str, Any] = {
        "framework": "pytorch",
        "image": "ghcr.io/runyard/examples:0.1.0",
        "command": ["python", "train.py"],
        "replicas": {"node": {"replicas": replicas}},
        "podTemplate": {"metadata": {"labels": labels, "annotations": {"sim.runyard.dev/duration": duration}}},
    }
    if suspend:
        spec["runPolicy"] = {"suspend": True}
    return {"apiVersion": "runyard.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name}, "spec": spec}


class Watcher(WatchWaiter):
    """Records when each run's Service and Job first appear, pods' and runs' phases, from watch streams."""

    def __init__(self, kube: BenchKube, ns: str) -> None:
        super().__init__(kube)
        self.ns = ns
        self.children: dict[str, dict[str, float]] = defaultdict(dict)
        self.pod_phase: dict[str, tuple[str, float]] = {}
        self.run_phase: dict[str, tuple[str, float]] = {}

    def start(self) -> None:
        sel = {"labelSelector": CHILD_SELECTOR}
        self.watch(f"/api/v1/namespaces/{self.ns}/services", sel, self._child("svc"))
        self.watch(f"/apis/batch/v1/namespaces/{self.ns}/jobs", sel, self._child("job"))
        self.watch(f"/api/v1/namespaces/{self.ns}/pods", sel, self._pod)
        self.watch(TR_PATH.format(ns=self.ns), {}, self._run)

    def _child(self, kind: str) -> Callable[[dict[str, Any], float], None]:
        def handle(event: dict[str, Any], now: float) -> None:
            run = event["object"]["metadata"].get("labels", {}).get("runyard.dev/run-name")
            if run and kind not in self.children[run]:
                self.children[run][kind] = now

        return handle

    def _pod(self, event: dict[str, Any], now: float) -> None:
        obj = event["object"]
        run = obj["metadata"].get("labels", {}).get("runyard.dev/run-name")
        phase = obj.get("status", {}).get("phase", "")
        if run and self.pod_phase.get(run, ("",))[0] != phase:
            self.pod_phase[run] = (phase, now)

    def _run(self, event: dict[str, Any], now: float) -> None:
        obj = event["object"]
        phase = (obj.get("status") or {}).get("phase", "")
        name = obj["metadata"]["name"]
        if self.run_phase.get(name, ("",))[0] != phase:
            self.run_phase[name] = (phase, now)


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: dict[str, Any]) -> None:
        self.args, self.sizes = args, sizes
        self.paths = localcluster.Paths(localcluster.STATE_DIR)
        self.operator: subprocess.Popen[bytes] | None = None
        self.metrics_port = 18931
        self.operator_ticks_before = 0  # CPU ticks of operator processes already stopped (burst restarts it)
        self.results: dict[str, Any] = {}

    # --- setup -------------------------------------------------------------------------------------------

    def setup(self) -> None:
        localcluster.up(self.args.nodes)
        subprocess.run(
            [
                localcluster.kubectl_path(),
                f"--kubeconfig={self.paths.kubeconfig}",
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                str(ROOT / "crds" / "runyard.dev_trainingruns.yaml"),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                localcluster.kubectl_path(),
                f"--kubeconfig={self.paths.kubeconfig}",
                "wait",
                "--for=condition=Established",
                "crd/trainingruns.runyard.dev",
            ],
            check=True,
            capture_output=True,
        )

    def wait_for_old_namespaces(self, timeout: float = 900) -> None:
        """An earlier bench's namespaces may still be terminating (10,000 runs take minutes to collect)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                [localcluster.kubectl_path(), f"--kubeconfig={self.paths.kubeconfig}", "get", "ns", "-o", "name"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            left = [n for n in out.split() if n.startswith("namespace/bench-")]
            if not left:
                return
            log(f"waiting for {len(left)} earlier bench namespace(s) to be deleted")
            time.sleep(5)

    def start_operator(self, wait: bool = True) -> None:
        self.metrics_port = free_port()  # a fresh port: a previous operator may still hold the last one
        exe = ROOT / ".venv" / "bin" / "runyard-operator"
        # --census: the same operator under bench/heap_census.py, which answers SIGUSR1 with a census of its heap
        cmd = [sys.executable, str(ROOT / "bench" / "heap_census.py")] if self.args.census else [str(exe)]
        log_file = open(RESULTS / "operator.log", "ab")  # noqa: SIM115
        env = {**os.environ, "KUBECONFIG": str(self.paths.kubeconfig), "RUNYARD_CENSUS_DIR": str(CENSUS)}
        self.operator = subprocess.Popen(
            [
                *cmd,
                "run",
                "--log-format",
                "plain",
                "--log-level",
                "WARNING",
                "--metrics-port",
                str(self.metrics_port),
                *self.args.operator_args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log_file.close()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("operator did not become ready")

    def stop_operator(self) -> None:
        if self.operator and self.operator.poll() is None:
            self.operator_ticks_before += cpu_ticks(self.operator.pid)
            self.operator.terminate()
            try:
                self.operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait(timeout=10)

    def census(self) -> list[str]:
        """The operator's heap census (--census): RSS by mapping and pymalloc's arenas against its live blocks."""
        if not self.args.census:
            return []
        assert self.operator
        CENSUS.mkdir(parents=True, exist_ok=True)
        before = set(CENSUS.glob(f"census-{self.operator.pid}-*.txt"))
        os.kill(self.operator.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            new = set(CENSUS.glob(f"census-{self.operator.pid}-*.txt")) - before
            if new:
                text = new.pop().read_text()
                log("census: " + text.split("\ngc-tracked")[0].replace("\n", "; "))
                return text.splitlines()[:4]
            time.sleep(0.2)
        return ["no census within 120 s"]

    def proc_usage(self) -> dict[str, float]:
        assert self.operator
        pid = self.operator.pid
        rss_kb = next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return {"rss_mb": round(rss_kb / 1024, 1), "cpu_seconds": round((int(fields[11]) + int(fields[12])) / ticks, 2)}

    async def namespace(self, kube: BenchKube, prefix: str) -> str:
        return await new_namespace(kube, prefix)

    async def drop_namespace(self, kube: BenchKube, ns: str, wait: float = 300) -> None:
        if not await drop_namespace(kube, ns, wait) and wait:
            log(f"namespace {ns} still terminating after {wait}s")

    # --- scenarios -----------------------------------------------------------------------------------------

    async def idle_latency(self, kube: BenchKube) -> dict[str, Any]:
        ns = await self.namespace(kube, "idle")
        watcher = Watcher(kube, ns)
        watcher.start()
        await asyncio.sleep(0.5)
        latencies: list[float] = []
        for i in range(self.sizes["idle"]):
            name = f"idle-{i}"
            status, body = await kube.request("POST", TR_PATH.format(ns=ns), manifest(name, suspend=True))
            created = time.perf_counter()
            assert status == 201, body
            await watcher.until(lambda n=name: len(watcher.children.get(n, {})) == 2, timeout=30)  # type: ignore[misc]
            latencies.append(max(watcher.children[name].values()) - created)
        await watcher.stop()
        await self.drop_namespace(kube, ns)
        return {"runs": len(latencies), "latency_ms": summary(latencies)}

    async def burst(self, kube: BenchKube) -> dict[str, Any]:
        """Two ways a burst reaches the operator, then the raw client's ceiling on the same objects.

        live: runs are created (64 in flight) while the operator works, so the window also holds their creation.
        backlog: runs are created while the operator is stopped, then it starts; the window runs from its readiness
        to the last child, the same work the raw client does (the objects to create are known at t0).
        """
        n = self.sizes["burst"]
        out: dict[str, Any] = {"runs": n}
        profile = self.start_profiler("burst-live") if self.args.profile else None
        cpu0 = self.component_ticks()
        ns = await self.namespace(kube, "burst")
        watcher = Watcher(kube, ns)
        watcher.start()
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        await gather_limited(
            [kube.request("POST", TR_PATH.format(ns=ns), manifest(f"b-{i}", suspend=True)) for i in range(n)], 64
        )
        created = time.perf_counter() - t0
        await watcher.until(lambda: sum(1 for c in watcher.children.values() if len(c) == 2) >= n, timeout=900)
        elapsed = max(max(c.values()) for c in watcher.children.values()) - t0
        out["live"] = {
            "create_seconds": round(created, 2),
            "seconds": round(elapsed, 2),
            "runs_per_s": round(n / elapsed, 1),
            "cpu_seconds": self.cpu_delta(cpu0),
        }
        if profile:
            out["live"]["profile"] = self.stop_profiler(*profile)
        await watcher.stop()
        await self.drop_namespace(kube, ns)

        # backlog: the operator is down while the runs arrive
        self.stop_operator()
        ns = await self.namespace(kube, "backlog")
        await gather_limited(
            [kube.request("POST", TR_PATH.format(ns=ns), manifest(f"q-{i}", suspend=True)) for i in range(n)], 64
        )
        watcher = Watcher(kube, ns)
        watcher.start()
        await asyncio.sleep(0.5)
        spawned = time.perf_counter()
        self.start_operator(wait=False)
        profile = self.start_profiler("burst-backlog") if self.args.profile else None
        await asyncio.to_thread(self.wait_ready)
        ready = time.perf_counter()
        cpu0 = self.component_ticks()
        await watcher.until(lambda: sum(1 for c in watcher.children.values() if len(c) == 2) >= n, timeout=900)
        last = max(max(c.values()) for c in watcher.children.values())
        out["backlog"] = {
            "seconds_from_start": round(last - spawned, 2),
            "seconds": round(last - ready, 2),
            "runs_per_s": round(n / (last - ready), 1),
            "cpu_seconds": self.cpu_delta(cpu0),
            # what the operator had sent when the last child existed: status writes deferred past the burst?
            "operator_requests_per_run": {k: round(v / n, 2) for k, v in self.operator_requests().items()},
        }
        if profile:
            out["backlog"]["profile"] = self.stop_profiler(*profile)
        await watcher.stop()
        await self.drop_namespace(kube, ns)

        # The operator would decode the raw client's objects too (they carry its labels): stop it, so the
        # ceiling gets the machine the apiserver would otherwise share.
        self.stop_operator()
        ceiling = await self.raw_ceiling(kube, n)
        out["ceiling"] = ceiling
        self.start_operator()
        for mode in ("live", "backlog"):
            out[mode]["ratio_to_ceiling"] = round(out[mode]["runs_per_s"] / ceiling["pairs_per_s"], 3)
        return out

    def cpu_delta(self, before: dict[str, int]) -> dict[str, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        after = self.component_ticks()
        return {k: round((after[k] - before.get(k, 0)) / ticks, 1) for k in after}

    async def raw_ceiling(self, kube: BenchKube, n: int) -> dict[str, Any]:
        """The same Service + Job pairs created directly, at the best concurrency found."""
        from runyard.builders import BuildContext, build_children
        from runyard.validation import parse_run

        best: dict[str, Any] = {"pairs_per_s": 0.0}
        for concurrency in self.args.ceiling_concurrency:
            ns = await self.namespace(kube, "raw")
            objs = []
            for i in range(n):
                run = parse_run(
                    {
                        **manifest(f"raw-{i}", suspend=True),
                        "metadata": {"name": f"raw-{i}", "namespace": ns, "uid": str(uuid.uuid4())},
                    }
                )
                for obj in build_children(run, BuildContext()):
                    obj["metadata"].pop("ownerReferences", None)
                    objs.append(obj)
            paths = {"Service": f"/api/v1/namespaces/{ns}/services", "Job": f"/apis/batch/v1/namespaces/{ns}/jobs"}
            # The same observer as in the operator's measurements: the apiserver serves its watches in both.
            watcher = Watcher(kube, ns)
            watcher.start()
            await asyncio.sleep(0.5)
            cpu0 = self.component_ticks()
            t0 = time.perf_counter()
            codes = await gather_limited([kube.request("POST", paths[o["kind"]], o) for o in objs], concurrency)
            elapsed = time.perf_counter() - t0
            cpu = self.cpu_delta(cpu0)
            assert all(c == 201 for c, _ in codes), {c for c, _ in codes}
            await watcher.stop()
            rate = n / elapsed
            log(f"raw client: {n} pairs at concurrency {concurrency}: {rate:.0f} pairs/s; cpu-s {cpu}")
            if rate > best["pairs_per_s"]:
                best = {
                    "pairs_per_s": round(rate, 1),
                    "concurrency": concurrency,
                    "seconds": round(elapsed, 2),
                    "cpu_seconds": cpu,
                }
            await self.drop_namespace(kube, ns)
        return best

    async def freshness(self, kube: BenchKube) -> dict[str, Any]:
        n, sample = self.sizes["fresh_active"], self.sizes["fresh_sample"]
        ns = await self.namespace(kube, "fresh")
        watcher = Watcher(kube, ns)
        watcher.start()
        await asyncio.sleep(0.5)
        await gather_limited(
            [
                kube.request("POST", TR_PATH.format(ns=ns), manifest(f"f-{i}", outcome="running", duration="0s"))
                for i in range(n)
            ],
            64,
        )
        await watcher.until(lambda: sum(1 for p, _ in watcher.run_phase.values() if p == "Running") >= n, 900)
        log(f"freshness: {n} runs Running")
        await asyncio.sleep(2)
        lags: list[float] = []
        for i in range(sample):
            name = f"f-{i}"
            _, pods = await kube.request(
                "GET", f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"runyard.dev/run-name={name}"}
            )
            for pod in pods["items"]:
                await kube.request(
                    "PATCH",
                    f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}",
                    {"metadata": {"labels": {"sim.runyard.dev/outcome": "done"}}},
                    content_type="application/merge-patch+json",
                )
            await watcher.until(
                lambda n_=name: (
                    watcher.run_phase.get(n_, ("",))[0] == "Succeeded"  # type: ignore[misc]
                    and watcher.pod_phase.get(n_, ("",))[0] == "Succeeded"
                ),
                timeout=60,
            )
            lags.append(watcher.run_phase[name][1] - watcher.pod_phase[name][1])
        await watcher.stop()
        await self.drop_namespace(kube, ns)
        return {"active_runs": n, "sampled": len(lags), "lag_ms": summary(lags)}

    async def api_cost(self, kube: BenchKube) -> dict[str, Any]:
        n = self.sizes["cost"]
        ns = await self.namespace(kube, "cost")
        watcher = Watcher(kube, ns)
        watcher.start()
        await asyncio.sleep(1)
        before_api = parse_apiserver(await kube.text("/metrics"))
        before_op = self.operator_requests()
        await gather_limited(
            [kube.request("POST", TR_PATH.format(ns=ns), manifest(f"c-{i}", duration="1s")) for i in range(n)], 32
        )
        await watcher.until(lambda: sum(1 for p, _ in watcher.run_phase.values() if p == "Succeeded") >= n, 600)
        await asyncio.sleep(3)  # trailing writes (clean-up) belong to the lifecycle too
        after_api = parse_apiserver(await kube.text("/metrics"))
        after_op = self.operator_requests()
        await watcher.stop()
        await self.drop_namespace(kube, ns)
        per_run_api = {
            k: round((after_api.get(k, 0) - v) / n, 2)
            for k, v in after_api.items()
            if after_api.get(k, 0) - before_api.get(k, 0) > 0
            for v in [before_api.get(k, 0)]
        }
        per_run_op = {
            k: round((v - before_op.get(k, 0)) / n, 2) for k, v in after_op.items() if v - before_op.get(k, 0) > 0
        }
        op_writes = sum(
            v
            for k, v in per_run_op.items()
            if k.split(" ")[0] in ("post", "patch", "put", "delete") and "events" not in k
        )
        op_events = sum(v for k, v in per_run_op.items() if "events" in k)
        return {
            "runs": n,
            "operator_requests_per_run": per_run_op,
            "operator_writes_per_run": round(op_writes, 2),
            "operator_event_posts_per_run": round(op_events, 2),
            "apiserver_requests_per_run": per_run_api,
        }

    def operator_requests(self) -> dict[str, float]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for m in re.finditer(r'^runyard_api_requests_total\{resource="([^"]+)",verb="([^"]+)"\} (\S+)$', text, re.M):
            out[f"{m.group(2)} {m.group(1)}"] = float(m.group(3))
        return out

    async def footprint(self, kube: BenchKube) -> dict[str, Any]:
        # A fresh process: RSS then reflects the runs present, not the high-water mark of earlier scenarios
        # (CPython seldom returns freed arenas to the OS).
        self.stop_operator()
        self.start_operator()
        ns = await self.namespace(kube, "foot")
        watcher = Watcher(kube, ns)
        watcher.start()
        await asyncio.sleep(0.5)
        out: dict[str, Any] = {"idle": self.proc_usage()}
        if census := self.census():
            out["idle"]["census"] = census
        made = 0
        for target in self.sizes["footprint"]:
            t0 = time.perf_counter()
            await gather_limited(
                [
                    kube.request("POST", TR_PATH.format(ns=ns), manifest(f"m-{i}", suspend=True))
                    for i in range(made, target)
                ],
                64,
            )
            made = target
            await watcher.until(
                lambda t=target: (
                    sum(
                        1
                        for p, _ in watcher.run_phase.values()  # type: ignore[misc]
                        if p == "Suspended"
                    )
                    >= t
                ),
                1800,
            )
            settle = time.perf_counter() - t0
            await asyncio.sleep(5)
            out[str(target)] = {**self.proc_usage(), "seconds_to_settle": round(settle, 1)}
            if census := self.census():
                out[str(target)]["census"] = census
            log(f"footprint at {target} runs: {out[str(target)]}")
        await watcher.stop()
        # Then every run goes (the operator removes each one's finalizer): what stays after the largest count is gone
        # is what the operator failed to return (issue 18: at most 150 MB after 10,000 runs).
        t0 = time.perf_counter()
        gone = await drop_namespace(kube, ns, wait=1800)
        await asyncio.sleep(15)  # the operator trims its heap once its queue drains
        out["gone"] = {**self.proc_usage(), "seconds_to_delete": round(time.perf_counter() - t0, 1), "deleted": gone}
        if census := self.census():
            out["gone"]["census"] = census
        log(f"footprint after the {made} runs are gone: {out['gone']}")
        return out

    def submit_vs_kubectl(self) -> dict[str, Any]:
        runyard = ROOT / ".venv" / "bin" / "runyard"
        kubectl = localcluster.kubectl_path()
        if not runyard.exists():
            return {"skipped": "runyard CLI not installed"}
        ns = f"bench-cli-{uuid.uuid4().hex[:5]}"
        env = {**os.environ, "KUBECONFIG": str(self.paths.kubeconfig)}
        subprocess.run([kubectl, "create", "ns", ns], env=env, check=True, capture_output=True)
        times: dict[str, list[float]] = {"runyard submit": [], "kubectl apply": []}
        tmp = RESULTS / "cli-manifests"
        tmp.mkdir(parents=True, exist_ok=True)
        for i in range(self.sizes["submit"]):
            for tool in times:
                name = f"cli-{tool.split()[0]}-{i}"
                path = tmp / f"{name}.json"
                path.write_text(json.dumps(manifest(name, suspend=True)))
                cmd = (
                    [str(runyard), "submit", "-f", str(path), "-n", ns]
                    if tool == "runyard submit"
                    else [kubectl, "apply", "-f", str(path), "-n", ns]
                )
                t0 = time.perf_counter()
                res = subprocess.run(cmd, env=env, capture_output=True)
                times[tool].append(time.perf_counter() - t0)
                if res.returncode != 0:
                    return {"error": f"{tool}: {res.stderr.decode()[:300]}"}
        subprocess.run([kubectl, "delete", "ns", ns, "--wait=false"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return {tool: summary(v) for tool, v in times.items()}

    # --- driver --------------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        async with BenchKube(self.paths.kubeconfig) as kube:
            for name in self.args.only or ["idle", "burst", "freshness", "cost", "submit", "footprint"]:
                log(f"scenario {name}")
                t0 = time.perf_counter()
                cpu0 = self.component_ticks()
                # burst and footprint restart the operator (which ends a profile); burst profiles its own parts
                profiler = (
                    self.start_profiler(name) if self.args.profile and name not in ("burst", "footprint") else None
                )
                if name == "idle":
                    self.results["idle_latency"] = await self.idle_latency(kube)
                elif name == "burst":
                    self.results["burst"] = await self.burst(kube)
                elif name == "freshness":
                    self.results["status_freshness"] = await self.freshness(kube)
                elif name == "cost":
                    self.results["api_cost"] = await self.api_cost(kube)
                elif name == "footprint":
                    self.results["footprint"] = await self.footprint(kube)
                elif name == "submit":
                    self.results["submit_vs_kubectl"] = self.submit_vs_kubectl()
                wall = time.perf_counter() - t0
                if profiler is not None:
                    self.results.setdefault("profiles", {})[name] = self.stop_profiler(*profiler)
                cpu1 = self.component_ticks()
                ticks = os.sysconf("SC_CLK_TCK")
                self.results.setdefault("cpu_seconds", {})[name] = {
                    "wall": round(wall, 1),
                    **{k: round((cpu1.get(k, 0) - cpu0.get(k, 0)) / ticks, 1) for k in cpu1},
                }
                log(f"scenario {name} took {wall:.1f}s; cpu-s {self.results['cpu_seconds'][name]}")
        return self.results

    def component_ticks(self) -> dict[str, int]:
        """CPU ticks of each control-plane process, the operator (restarts included) and this load generator."""
        info = localcluster.load_info(self.paths) or {}
        pids: dict[str, int] = info.get("pids", {})  # type: ignore[assignment]
        out = {name: cpu_ticks(pid) for name, pid in pids.items()}
        if self.operator:
            out["operator"] = self.operator_ticks_before + cpu_ticks(self.operator.pid)
        out["bench"] = cpu_ticks(os.getpid())
        return out

    def start_profiler(self, scenario: str) -> tuple[subprocess.Popen[bytes], Path, int] | None:
        assert self.operator
        exe = shutil.which("py-spy", path=str(ROOT / ".venv" / "bin")) or shutil.which("py-spy")
        if not exe:
            log("py-spy not installed (make install-bench); no profile")
            return None
        out = RESULTS / f"profile-{scenario}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.txt"
        proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(self.operator.pid),
                "--format",
                "raw",
                "--rate",
                "100",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc, out, self.operator.pid

    def stop_profiler(self, proc: subprocess.Popen[bytes], out: Path, pid: int) -> dict[str, Any]:
        import signal as _signal

        proc.send_signal(_signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not out.exists():
            return {"error": "py-spy wrote no output"}
        summary = summarize_profile(out)
        packed = out.with_suffix(".txt.gz")  # raw collapsed stacks, for flamegraph tools (speedscope, inferno)
        packed.write_bytes(gzip.compress(out.read_bytes()))
        out.unlink()
        summary["file"] = str(packed.relative_to(ROOT))
        return summary


def parse_apiserver(text: str) -> dict[str, float]:
    """apiserver_request_total summed by verb and resource[/subresource]."""
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        out[f"{labels.get('verb', '').lower()} {resource}"] += float(line.rsplit(" ", 1)[1])
    return dict(out)


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def summarize_profile(collapsed: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares from py-spy's collapsed stacks, by function and by package."""
    self_t: dict[str, int] = defaultdict(int)
    incl: dict[str, int] = defaultdict(int)
    package: dict[str, int] = defaultdict(int)
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        self_t[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
        leaf = frames[-1]
        path = leaf[leaf.find("(") + 1 : leaf.rfind(":")] if "(" in leaf else leaf
        package[_package_of(path)] += count

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "self_pct": share(self_t), "inclusive_pct": share(incl), "by_package_pct": share(package)}


def _package_of(path: str) -> str:
    """'site-packages/aiohttp/client.py' -> 'aiohttp'; the operator's own code keeps its module path."""
    for marker in ("site-packages/", "runyard_operator/", "runyard/"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            head = rest.split("/", 1)[0].removesuffix(".py")
            return head if marker == "site-packages/" else f"{marker.rstrip('/')}.{head}"
    if "/lib/python" in path:
        return "stdlib:" + path.rsplit("/", 1)[-1].removesuffix(".py")
    return path


def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    import kopf

    return {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "kopf": kopf.__version__ if hasattr(kopf, "__version__") else "",
        "kubernetes": localcluster.K8S_VERSION,
        "etcd": localcluster.ETCD_VERSION,
        "kwok": localcluster.KWOK_VERSION,
        "commit": commit.strip(),
    }


def markdown(doc: dict[str, Any]) -> str:
    r, m = doc["results"], doc["machine"]
    rows = [
        f"\n## {doc['date']} — {doc['mode']} — commit {m['commit']} — {m['cores']} cores, Kubernetes "
        f"{m['kubernetes']}, Python {m['python']}, {doc['nodes']} fake GPU nodes\n",
        "| Measure | Result | Target |",
        "|---|---|---|",
    ]
    if "idle_latency" in r:
        lat = r["idle_latency"]["latency_ms"]
        rows.append(
            f"| idle latency, create → Service+Job exist ({lat['n']} sequential runs) | p50 {lat['p50']} ms, "
            f"p99 {lat['p99']} ms | p99 ≤ 150 ms |"
        )
    if "burst" in r:
        b = r["burst"]
        ceil = b["ceiling"]
        if "live" in b:
            live, back = b["live"], b["backlog"]
            rows.append(
                f"| burst, backlog: {b['runs']} runs present when the operator starts → all children | "
                f"{back['runs_per_s']} runs/s ({back['seconds']} s from ready, {back['seconds_from_start']} s from "
                f"process start); raw client ceiling {ceil['pairs_per_s']} pairs/s at concurrency "
                f"{ceil.get('concurrency')}; ratio {back['ratio_to_ceiling']} | ≥ 0.8 |"
            )
            rows.append(
                f"| burst, live: {b['runs']} runs created (64 in flight) while the operator runs → all children | "
                f"{live['runs_per_s']} runs/s ({live['seconds']} s, creation alone {live['create_seconds']} s); "
                f"ratio {live['ratio_to_ceiling']} | — |"
            )
        else:  # results written before the backlog mode existed
            rows.append(
                f"| burst: {b['runs']} runs at once → all children | {b['runs_per_s']} runs/s ({b['seconds']} s); raw "
                f"client ceiling {ceil['pairs_per_s']} pairs/s at concurrency {ceil.get('concurrency')};"
                f" ratio {b['ratio_to_ceiling']} | ≥ 0.8 |"
            )
    if "burst" in r and "backlog" in r["burst"]:
        b = r["burst"]
        back, ceil = b["backlog"], b["ceiling"]

        def per_run(cpu: dict[str, float], runs: int) -> str:
            return ", ".join(f"{k} {round(1000 * v / runs, 2)}" for k, v in cpu.items() if v)

        rows.append(
            f"| CPU ms per run by process: burst backlog ({back['seconds']} s) vs raw ceiling "
            f"({ceil['seconds']} s); 2 cores | backlog: {per_run(back['cpu_seconds'], b['runs'])}; ceiling: "
            f"{per_run(ceil.get('cpu_seconds', {}), b['runs'])} | — |"
        )
        prof = back.get("profile") or {}
        if prof.get("self_pct"):
            top = ", ".join(f"{name.split(' (')[0]} {pct} %" for name, pct in prof["self_pct"][:6])
            rows.append(
                f"| operator profile, burst backlog (py-spy, {prof['samples']} samples, `{prof['file']}`) | "
                f"self time: {top} | — |"
            )
    if "status_freshness" in r:
        f = r["status_freshness"]
        rows.append(
            f"| status freshness, pod terminal → run phase ({f['active_runs']} active, {f['sampled']} sampled) | "
            f"p50 {f['lag_ms']['p50']} ms, p99 {f['lag_ms']['p99']} ms | p99 ≤ 1 s |"
        )
    if "api_cost" in r:
        a = r["api_cost"]
        ops = ", ".join(f"{k} {v}" for k, v in sorted(a["operator_requests_per_run"].items()))
        rows.append(
            f"| operator API writes per run lifecycle (children + status), {a['runs']} runs | "
            f"{a['operator_writes_per_run']} (+ {a['operator_event_posts_per_run']} Event posts); all "
            f"operator requests: {ops} | ≤ 5 |"
        )
        top = sorted(a["apiserver_requests_per_run"].items(), key=lambda kv: -kv[1])[:8]
        rows.append(
            "| apiserver_request_total per run, all clients (top 8) | "
            + ", ".join(f"{k} {v}" for k, v in top)
            + " | — |"
        )
    if "footprint" in r:
        for k, v in r["footprint"].items():
            if k == "idle":
                rows.append(f"| operator footprint, no runs | RSS {v['rss_mb']} MB, {v['cpu_seconds']} CPU-s | — |")
            elif k == "gone":
                rows.append(
                    f"| operator footprint after the runs are gone | RSS {v['rss_mb']} MB, deleted in "
                    f"{v['seconds_to_delete']} s | RSS ≤ 150 MB after 10,000 |"
                )
            else:
                rows.append(
                    f"| operator footprint, {k} runs present | RSS {v['rss_mb']} MB, {v['cpu_seconds']} CPU-s "
                    f"since start, settled in {v['seconds_to_settle']} s | RSS ≤ 250 MB at 10,000 |"
                )
    if "submit_vs_kubectl" in r and "skipped" not in r["submit_vs_kubectl"]:
        s = r["submit_vs_kubectl"]
        rows.append(
            "| `runyard submit` vs `kubectl apply` wall time | "
            + "; ".join(f"{k}: p50 {v['p50']} ms, p99 {v['p99']} ms" for k, v in s.items() if isinstance(v, dict))
            + " | — |"
        )
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under 5 minutes")
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("NODES", "100")))
    parser.add_argument("--only", nargs="*", choices=["idle", "burst", "freshness", "cost", "footprint", "submit"])
    parser.add_argument("--profile", action="store_true", help="py-spy record the operator during each scenario")
    parser.add_argument(
        "--census",
        action="store_true",
        help="run the operator under bench/heap_census.py; census at each footprint step",
    )
    parser.add_argument("--burst", type=int, help="override the number of runs in the burst scenario")
    parser.add_argument("--ceiling-concurrency", type=int, nargs="*", default=[16, 64, 128])
    parser.add_argument(
        "--operator-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="extra flags for runyard-operator run (must come last)",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.quick and args.ceiling_concurrency == [16, 64, 128]:
        args.ceiling_concurrency = [64]  # the quick run measures one concurrency level (the best one in full runs)
    sizes = dict(QUICK if args.quick else FULL)
    if args.burst:
        sizes["burst"] = args.burst
    bench = Bench(args, sizes)
    t0 = time.perf_counter()
    bench.setup()
    bench.wait_for_old_namespaces()
    bench.start_operator()
    try:
        results = asyncio.run(bench.run())
    finally:
        bench.stop_operator()
    doc = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "nodes": args.nodes,
        "machine": machine(),
        "operator_args": args.operator_args,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}-{doc['mode']}.json").write_text(json.dumps(doc, indent=2))
    md = markdown(doc)
    with (ROOT / "bench" / "RESULTS.md").open("a") as f:
        f.write(md)
    print(md)
    print(f"total {doc['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
