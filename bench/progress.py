"""What progress reports cost: N two-pod runs on kwok report every R seconds for T seconds through pod-bound tokens;
counts the operator's status writes and TokenReviews, its CPU, and the reports it accepted. Appends to bench/RESULTS.md.

    .venv/bin/python bench/progress.py [--runs 200] [--seconds 120] [--every 2]   (starts the local cluster if needed)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "hack"))

import localcluster  # noqa: E402

from bench.kube import BenchKube, gather_limited  # noqa: E402
from bench.run import cpu_ticks  # noqa: E402
from runyard import constants as c  # noqa: E402
from runyard.ports import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench-progress] {msg}", file=sys.stderr, flush=True)


def operator_counters(port: int) -> dict[str, float]:
    """The operator's API requests ("<verb> <resource>") and progress reports ("reports <outcome>"), from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"(runyard_api_requests_total|runyard_progress_reports_total)\{([^}]*)\} (\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        key = f"{labels['verb']} {labels['resource']}" if "verb" in labels else f"reports {labels.get('outcome')}"
        out[key] = float(m.group(3))
    return out


def run_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "runyard.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {
            "framework": "pytorch",
            "image": "ghcr.io/runyard/examples:0.1.0",
            "command": ["python", "train.py"],
            "replicas": {"node": {"replicas": 2}},
            "podTemplate": {"metadata": {"annotations": {"sim.runyard.dev/duration": "3600s"}}},
        },
    }


async def bench(
    args: argparse.Namespace, kubeconfig: Path, ns: str, url: str, metrics_port: int, pid: int
) -> dict[str, Any]:
    async with BenchKube(kubeconfig) as kube:
        names = [f"p-{i}" for i in range(args.runs)]
        path = f"/apis/runyard.dev/v1alpha1/namespaces/{ns}/trainingruns"
        await gather_limited([kube.request("POST", path, run_manifest(n)) for n in names], 32)
        log(f"created {len(names)} runs; waiting for {2 * len(names)} running pods")
        deadline = time.monotonic() + 600
        pods: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            _, listing = await kube.request(
                "GET",
                f"/api/v1/namespaces/{ns}/pods",
                params={"labelSelector": "app.kubernetes.io/managed-by=runyard-operator"},
            )
            pods = [p for p in listing["items"] if p["status"].get("phase") == "Running"]
            if len(pods) >= 2 * len(names):
                break
            await asyncio.sleep(2)
        else:
            raise SystemExit(f"only {len(pods)} pods running after 10 minutes")

        async def token(pod: dict[str, Any]) -> str:
            body = {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": [c.PROGRESS_AUDIENCE],
                    "expirationSeconds": 3600,
                    "boundObjectRef": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": pod["metadata"]["name"],
                        "uid": pod["metadata"]["uid"],
                    },
                },
            }
            status, answer = await kube.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/default/token", body)
            assert status == 201, answer
            return str(answer["status"]["token"])

        tokens = await gather_limited([token(p) for p in pods], 32)
        ranks = [int(p["metadata"]["annotations"].get(c.ANNOTATION_JOB_COMPLETION_INDEX, "0")) for p in pods]
        log(f"{len(tokens)} pod-bound tokens; reporting every {args.every}s for {args.seconds}s")

        before, ticks0, t0 = operator_counters(metrics_port), cpu_ticks(pid), time.monotonic()
        sent = [0]
        failed: dict[int, int] = {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

            async def reporter(i: int) -> None:
                # Spread the ranks over the interval, as independent processes would be.
                await asyncio.sleep(args.every * i / len(tokens))
                step = 0
                while time.monotonic() - t0 < args.seconds:
                    step += 10
                    headers = {"Authorization": f"Bearer {tokens[i]}"}
                    body = {"step": step, "total": 100000, "rank": ranks[i]}
                    async with session.post(url, json=body, headers=headers) as resp:
                        sent[0] += 1
                        if resp.status != 204:
                            failed[resp.status] = failed.get(resp.status, 0) + 1
                    await asyncio.sleep(args.every)

            await asyncio.gather(*(reporter(i) for i in range(len(tokens))))
        # The last deferred writes land up to one write interval after the last report.
        await asyncio.sleep(args.write_interval + 5)
        elapsed = time.monotonic() - t0
        after, ticks1 = operator_counters(metrics_port), cpu_ticks(pid)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    writes = delta("patch trainingruns/status")
    reviews = delta("post tokenreviews")
    window_min = args.seconds / 60
    return {
        "runs": args.runs,
        "pods": len(tokens),
        "report_every_s": args.every,
        "reporting_s": args.seconds,
        "write_interval_s": args.write_interval,
        "reports_sent": sent[0],
        "reports_accepted": delta("reports accepted"),
        "refused_by_status": failed,
        "reports_per_s": round(sent[0] / args.seconds, 1),
        "status_writes": writes,
        "status_writes_per_run_per_min": round(writes / args.runs / window_min, 2),
        "bound_writes_per_run_per_min": round(60 / args.write_interval + 1 / window_min, 2),
        "token_reviews": reviews,
        "operator_cpu_s": round((ticks1 - ticks0) / TICKS, 2),
        "operator_cpu_ms_per_report": round((ticks1 - ticks0) / TICKS * 1000 / max(sent[0], 1), 3),
        "elapsed_s": round(elapsed, 1),
        "at_10000_runs_status_writes_per_s": round(10000 / args.write_interval, 1),
    }


def markdown(doc: dict[str, Any]) -> str:
    r = doc["result"]
    return f"""
## Progress reports ({doc["date"]})

`bench/progress.py --runs {r["runs"]} --seconds {r["reporting_s"]} --every {r["report_every_s"]}`: {r["pods"]} kwok pods
reported through pod-bound tokens every {r["report_every_s"]} s for {r["reporting_s"]} s ({r["reports_per_s"]} reports/s,
a rank's default is one per 10 s), write interval {r["write_interval_s"]} s.

| measure | value |
|---|---|
| reports sent / accepted | {r["reports_sent"]} / {r["reports_accepted"]:.0f} |
| status patches in the window (+ the trailing interval) | {r["status_writes"]:.0f} |
| status patches per run per minute (bound: 60/interval + the first) | {r["status_writes_per_run_per_min"]} ({r["bound_writes_per_run_per_min"]}) |
| TokenReviews (one per pod token, cached) | {r["token_reviews"]:.0f} |
| operator CPU for the window / per report | {r["operator_cpu_s"]} s / {r["operator_cpu_ms_per_report"]} ms |
| at 10,000 reporting runs: status patches per second (10,000 / interval) | {r["at_10000_runs_status_writes_per_s"]} |
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between one rank's reports")
    parser.add_argument("--write-interval", type=float, default=30.0)
    parser.add_argument("--nodes", type=int, default=20)
    args = parser.parse_args()
    paths = localcluster.Paths(localcluster.STATE_DIR)
    if not localcluster.running(paths):
        localcluster.up(args.nodes, False)
    kubectl = [localcluster.kubectl_path(), f"--kubeconfig={paths.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")], check=True,
                   capture_output=True)  # fmt: skip
    ns = f"bench-progress-{uuid.uuid4().hex[:6]}"
    subprocess.run([*kubectl, "create", "namespace", ns], check=True, capture_output=True)
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}{c.PROGRESS_PATH}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    config = RESULTS / "progress-operator.yaml"
    config.write_text(
        yaml.safe_dump({"progress": {"url": url, "port": port, "writeIntervalSeconds": args.write_interval}})
    )
    with open(RESULTS / "progress-operator.log", "wb") as out:
        operator = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "runyard-operator"), "run", "--log-format", "plain", "--log-level", "WARNING",
             "--metrics-port", str(metrics_port), "--config", str(config), "--namespace", ns],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": str(paths.kubeconfig)},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        result = asyncio.run(bench(args, paths.kubeconfig, ns, url, metrics_port, operator.pid))
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        subprocess.run([*kubectl, "delete", "namespace", ns, "--wait=false"], capture_output=True)
    doc = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "result": result}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}-progress.json").write_text(json.dumps(doc, indent=2))
    md = markdown(doc)
    with (ROOT / "bench" / "RESULTS.md").open("a") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
