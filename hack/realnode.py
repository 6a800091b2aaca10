"""One real kubelet node for the local cluster: containerd + runc, a CNI bridge, CoreDNS and kube-proxy as processes.

Stdlib only, like localcluster.py, which calls `prepare`, `start` and `stop`. The node is host-wide (the kubelet's
device-plugin socket, netns mounts, the bridge and iptables chains are host-level), so a host holds one at a time;
`stop` removes every trace `start` left, which is recorded in the cluster's state file.

Settings this machine kind needs (cgroup v1 hybrid host, no systemd, no CAP_SYS_RESOURCE), found by trying:
- KubeletConfiguration `failCgroupV1: false` (the 1.35+ kubelet refuses cgroup v1 otherwise), `cgroupDriver: cgroupfs`,
  `failSwapOn: false`;
- containerd's CRI `restrict_oom_score_adj = true` (runc cannot lower oom_score_adj without CAP_SYS_RESOURCE);
- the apiserver reaches the kubelet by InternalIP (`--kubelet-preferred-address-types`), which is the bridge gateway;
- a node client certificate (`O=system:nodes`) with the `system:node` ClusterRole bound to that group (RBAC only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

NODE_NAME = "real-0"
NODE_LABEL = "runyard.dev/real-node"
BRIDGE = "runyard0"
POD_SUBNET = "10.245.0.0/24"
GATEWAY = "10.245.0.1"
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# Host-level paths the kubelet and containerd use whatever their flags say; one node per host because of them.
HOST_RUN = Path("/run/runyard-node")
DEVICE_PLUGIN_SOCKET = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
NETNS_DIR = Path("/var/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}

# Start order; `stop` goes in reverse.
COMPONENTS = ("containerd", "coredns", "kube-proxy", "kubelet")


def log(msg: str) -> None:
    print(f"[realnode] {msg}", flush=True, file=sys.stderr)


def supported() -> tuple[bool, str]:
    """Whether this host can run the real node, and why not."""
    if os.geteuid() != 0:
        return False, "needs root (kubelet, containerd and the CNI bridge)"
    missing = [b for b in ("containerd", "runc", "containerd-shim-runc-v2", "iptables", "ip") if not shutil.which(b)]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("/usr/lib/cni/bridge (containernetworking-plugins)")
    if missing:
        return False, f"missing {', '.join(missing)}: run hack/install-system-deps.sh"
    return True, ""


class NodePaths:
    """Where the node keeps its state: under the cluster's state dir, sockets under /run (short unix paths)."""

    def __init__(self, state: Path, cache: Path) -> None:
        self.root = state / "node"
        self.cache = cache

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni-ipam"

    @property
    def containerd_root(self) -> Path:
        # Kept in the cache: images imported once stay across cluster restarts (they are GBs).
        return self.cache / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return HOST_RUN / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return HOST_RUN / "containerd.sock"

    @property
    def podresources_socket(self) -> Path:
        return self.kubelet_dir / "pod-resources" / "kubelet.sock"


def ctr(paths: NodePaths, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", f"--address={paths.containerd_socket}", "--namespace=k8s.io", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


# --- configuration files ------------------------------------------------------------------------------


def containerd_config(paths: NodePaths) -> str:
    cni_bin = "/usr/lib/cni"
    return f"""version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{paths.containerd_socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # runc cannot lower oom_score_adj without CAP_SYS_RESOURCE, which this machine kind lacks.
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{paths.cni_conf}"
"""


def cni_config(paths: NodePaths) -> dict[str, object]:
    return {
        "cniVersion": "0.4.0",
        "name": "runyard",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                # A pod reaching its own Service address comes back through the bridge port it left by.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(paths: NodePaths, pki: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # cgroup v1 hybrid host: 1.35+ refuses v1 unless told; no systemd, so cgroupfs.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "address": "0.0.0.0",
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        # Only the apiserver (admin client cert, signed by the cluster CA) can authenticate at all.
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [GATEWAY],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "/etc/resolv.conf",
        "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
        "maxPods": 50,
        "serializeImagePulls": False,
        # Never garbage-collect the imported images (they cannot be pulled again: there is no registry).
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "evictionPressureTransitionPeriod": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "nodeStatusReportFrequency": "1m",
        "syncFrequency": "10s",
        "fileCheckFrequency": "5s",
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": False,
    }


def kube_proxy_config(kubeconfig: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_SUBNET,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Leave the host's conntrack table alone (setting it needs privileges this machine may not grant).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"masqueradeAll": True, "syncPeriod": "5s", "minSyncPeriod": "0s"},
    }


def corefile(kubeconfig: Path, port: int) -> str:
    return (
        f".:{port} {{\n"
        f"    bind {GATEWAY}\n"
        "    errors\n"
        "    health 127.0.0.1:18080\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"        kubeconfig {kubeconfig}\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "        ttl 5\n"
        "    }\n"
        "    cache 5\n"
        "}\n"
    )


# --- host setup ----------------------------------------------------------------------------------------


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


def create_bridge() -> None:
    """The CNI bridge with the gateway address, up before the apiserver so it can advertise that address."""
    if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    addrs = _run("ip", "-o", "-4", "addr", "show", "dev", BRIDGE).stdout
    if f"{GATEWAY}/" not in addrs:
        _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def set_sysctls() -> dict[str, str]:
    """Turn on forwarding and bridge netfilter; returns the previous values for `stop` to restore."""
    before = {}
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        with contextlib.suppress(OSError):
            before[key] = path.read_text().strip()
            path.write_text(value)
    return before


def restore_sysctls(before: dict[str, str]) -> None:
    for key, value in before.items():
        with contextlib.suppress(OSError):
            (Path("/proc/sys") / key).write_text(value)


def node_pki(pki: Path, openssl: Callable[..., None]) -> None:
    """Client certificate of the kubelet: user system:node:<name> in group system:nodes."""
    if (pki / "node.crt").exists():
        return
    (pki / "node.ext").write_text("extendedKeyUsage=clientAuth,serverAuth\n")
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/O=system:nodes/CN=system:node:{NODE_NAME}",
        "-keyout", str(pki / "node.key"), "-out", str(pki / "node.csr"),
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(pki / "node.csr"), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-CAcreateserial", "-days", "3650", "-extfile", str(pki / "node.ext"), "-out", str(pki / "node.crt"),
    )  # fmt: skip


def node_kubeconfig(pki: Path, server: str, path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [
            {
                "name": "node",
                "user": {"client-certificate": str(pki / "node.crt"), "client-key": str(pki / "node.key")},
            }
        ],
        "contexts": [{"name": "node", "context": {"cluster": "local", "user": "node"}}],
        "current-context": "node",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


NODE_RBAC = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "runyard-local:nodes"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}],
}


def write_configs(paths: NodePaths, pki: Path, server: str, admin_kubeconfig: Path, dns_port: int) -> None:
    for d in (paths.root, paths.kubelet_dir, paths.cni_conf, paths.cni_ipam, paths.containerd_root, HOST_RUN):
        d.mkdir(parents=True, exist_ok=True)
    (paths.root / "containerd.toml").write_text(containerd_config(paths))
    (paths.cni_conf / "10-runyard.conflist").write_text(json.dumps(cni_config(paths), indent=2))
    (paths.root / "kubelet.json").write_text(json.dumps(kubelet_config(paths, pki), indent=2))
    (paths.root / "kube-proxy.json").write_text(json.dumps(kube_proxy_config(admin_kubeconfig), indent=2))
    (paths.root / "Corefile").write_text(corefile(admin_kubeconfig, dns_port))
    node_kubeconfig(pki, server, paths.root / "kubelet.kubeconfig")


def command_lines(paths: NodePaths, binaries: dict[str, Path]) -> dict[str, list[str]]:
    return {
        "containerd": [str(binaries["containerd"]), f"--config={paths.root / 'containerd.toml'}", "--log-level=warn"],
        "coredns": [str(binaries["coredns"]), "-conf", str(paths.root / "Corefile")],
        "kube-proxy": [str(binaries["kube-proxy"]), f"--config={paths.root / 'kube-proxy.json'}", "--v=1"],
        "kubelet": [
            str(binaries["kubelet"]),
            f"--config={paths.root / 'kubelet.json'}",
            f"--kubeconfig={paths.root / 'kubelet.kubeconfig'}",
            f"--root-dir={paths.kubelet_dir}",
            f"--cert-dir={paths.root / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={GATEWAY}",
            f"--node-labels={NODE_LABEL}=true,runyard.dev/pool=real",
            "--v=1",
        ],
    }


def import_images(paths: NodePaths, archives: list[Path]) -> None:
    """Import docker-archive directories (hack/images.py) that the runtime does not hold yet.

    Each directory is streamed through tar into `ctr images import -`, so its GBs of layers are never copied into
    another archive file. `imported.json` in containerd's root remembers each archive's build id, so a warm start
    imports nothing.
    """
    marker = paths.containerd_root / "imported.json"
    try:
        done: dict[str, str] = json.loads(marker.read_text())
    except (OSError, ValueError):
        done = {}
    have = set(ctr(paths, "images", "ls", "-q").stdout.split())
    for archive in archives:
        build_id = (archive / "build-id").read_text().strip()
        refs = [tag for entry in json.loads((archive / "manifest.json").read_text()) for tag in entry["RepoTags"]]
        if done.get(archive.name) == build_id and all(r in have for r in refs):
            continue
        t0 = time.monotonic()
        tar = subprocess.Popen(
            ["tar", "-C", str(archive), "--exclude=./build-id", "-cf", "-", "."], stdout=subprocess.PIPE
        )
        res = subprocess.run(
            ["ctr", f"--address={paths.containerd_socket}", "--namespace=k8s.io", "images", "import",
             "--all-platforms", "-"],
            stdin=tar.stdout, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if res.returncode != 0 or tar.returncode != 0:
            raise SystemExit(f"importing {archive.name} failed: {res.stderr.strip()}")
        done[archive.name] = build_id
        marker.write_text(json.dumps(done, indent=2))
        log(f"imported {', '.join(refs)} in {time.monotonic() - t0:.1f}s")


# --- one node per host ----------------------------------------------------------------------------------

OWNER = HOST_RUN / "owner"


def _owner_alive(state: Path) -> bool:
    """Whether the cluster in `state` still runs its node (its containerd or kubelet process exists)."""
    try:
        pids = json.loads((state / "cluster.json").read_text()).get("pids", {})
    except (OSError, ValueError):
        return False
    for name in ("containerd", "kubelet"):
        pid = pids.get(name)
        if pid and Path(f"/proc/{pid}").exists():
            return True
    return False


def claim_host(state: Path, cache: Path) -> None:
    """Record `state` as the owner of this host's real node; refuse while another live cluster holds it.

    A dead owner (its processes gone, e.g. a session that ended without `make cluster-down`) leaves host-level
    state behind; it is torn down here so the new node starts clean.
    """
    me = str(state.resolve())
    try:
        other = OWNER.read_text().strip()
    except OSError:
        other = ""
    if other and other != me:
        if _owner_alive(Path(other)):
            raise SystemExit(
                f"the real node of the cluster in {other} holds this host (one per host): "
                f"run `make cluster-down` there first"
            )
        log(f"cleaning up the real node a stopped cluster in {other} left behind")
        teardown(NodePaths(Path(other), cache), None, {})
    HOST_RUN.mkdir(parents=True, exist_ok=True)
    OWNER.write_text(me)


# --- teardown ------------------------------------------------------------------------------------------


def remove_containers(paths: NodePaths) -> None:
    """Kill and delete every container of the k8s.io namespace (pods of this or an earlier node run)."""
    if not paths.containerd_socket.exists():
        return
    tasks = ctr(paths, "tasks", "ls", "-q", check=False).stdout.split()
    for task in tasks:
        ctr(paths, "tasks", "kill", "-a", "-s", "SIGKILL", task, check=False, timeout=30)
    deadline = time.monotonic() + 10
    for task in tasks:
        while time.monotonic() < deadline and ctr(paths, "tasks", "rm", "-f", task, check=False).returncode != 0:
            time.sleep(0.2)
    for container in ctr(paths, "containers", "ls", "-q", check=False).stdout.split():
        ctr(paths, "containers", "rm", container, check=False, timeout=60)


def unmount_under(root: Path) -> None:
    """Unmount everything mounted below `root`, deepest first (the kubelet bind-mounts its dir and volumes)."""
    prefix = str(root.resolve())
    for _ in range(3):
        mounts = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/mounts").read_text().splitlines():
                target = line.split()[1].encode().decode("unicode_escape")
                if target == prefix or target.startswith(prefix + "/"):
                    mounts.append(target)
        if not mounts:
            return
        for target in sorted(mounts, key=len, reverse=True):
            _run("umount", "-l", target, check=False)


def remove_netns() -> None:
    """CNI network namespaces of pods that were killed without a CNI DEL (their veths go with them)."""
    if not NETNS_DIR.exists():
        return
    for ns in NETNS_DIR.glob("cni-*"):
        _run("umount", "-l", str(ns), check=False)
        with contextlib.suppress(OSError):
            ns.unlink()


def remove_iptables(kube_proxy: Path | None) -> None:
    if kube_proxy and kube_proxy.exists():
        _run(str(kube_proxy), "--cleanup", check=False)
    # The bridge plugin's ipMasq chains (CNI-<hash>) of containers that died without a CNI DEL.
    for table in ("nat", "filter"):
        rules = _run("iptables", "-t", table, "-S", check=False).stdout.splitlines()
        for rule in rules:
            words = shlex.split(rule)
            if words[:1] == ["-A"] and ("CNI-" in words[1] or any(w.startswith("CNI-") for w in words[2:])):
                _run("iptables", "-t", table, "-D", *words[1:], check=False)
        for rule in rules:
            if rule.startswith("-N CNI-"):
                chain = rule.split()[1]
                _run("iptables", "-t", table, "-F", chain, check=False)
                _run("iptables", "-t", table, "-X", chain, check=False)


def remove_cgroups() -> None:
    """The kubepods hierarchy the kubelet made in every cgroup v1 controller (empty once the pods are gone)."""
    for controller in CGROUP_ROOT.iterdir() if CGROUP_ROOT.exists() else []:
        top = controller / "kubepods"
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def stop_pids(pids: dict[str, int], alive: Callable[[str, int], bool]) -> None:
    for name in reversed(COMPONENTS):
        pid = pids.get(name)
        if pid and alive(name, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid and alive(name, pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid and alive(name, pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def teardown(paths: NodePaths, kube_proxy: Path | None, sysctls: dict[str, str]) -> None:
    """Everything but the processes: containers, mounts, netns, iptables, the bridge, cgroups, host files."""
    unmount_under(paths.kubelet_dir)
    unmount_under(HOST_RUN)  # containers' rootfs mounts, when their containerd was killed before removing them
    remove_netns()
    remove_iptables(kube_proxy)
    _run("ip", "link", "del", BRIDGE, check=False)
    remove_cgroups()
    restore_sysctls(sysctls)
    with contextlib.suppress(OSError):
        DEVICE_PLUGIN_SOCKET.unlink()
    shutil.rmtree(HOST_RUN, ignore_errors=True)
    # containerd leaves shim sockets here; they belong to the containers removed above.
    for sock in Path("/run/containerd/s").glob("*") if Path("/run/containerd/s").exists() else []:
        with contextlib.suppress(OSError):
            sock.unlink()
