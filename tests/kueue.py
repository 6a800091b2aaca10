"""A real Kueue (v0.17.0, built from its Go module by hack/build-binaries.sh) run as a process beside the local cluster.

Kueue runs out of cluster with the admin kubeconfig. Its webhooks are not registered (Runyard creates queue-managed
Jobs suspended itself, which is what Kueue's mutating webhook would do); its webhook and metrics servers get a
throw-away certificate, and the visibility API is off.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, localcluster
from tests.operator_fixtures import free_port, wait_until

KUEUE_VERSION = os.environ.get("KUEUE_VERSION", "v0.17.0")
KUEUE_DIR = localcluster.CACHE / "bin" / f"kueue-{KUEUE_VERSION}"
# Kueue reads its metrics certificate from this fixed path when it does not manage certificates itself.
METRICS_CERTS = Path("/etc/kueue/metrics/certs")
API = "kueue.x-k8s.io/v1beta2"


def _certificate(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kueue",
         "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip


@contextlib.contextmanager
def running_kueue(cluster: Cluster, root: Path) -> Iterator[None]:
    """Kueue's CRDs applied and its manager running (ready) until the block ends."""
    if not (KUEUE_DIR / "kueue").exists():
        pytest.fail(f"Kueue not built: run `make binaries` ({KUEUE_DIR})")
    if os.geteuid() != 0 and not METRICS_CERTS.exists():
        pytest.fail(f"Kueue needs a certificate in {METRICS_CERTS}: run the tests as root once to create it")
    created_certs = not METRICS_CERTS.exists()
    if created_certs:
        _certificate(METRICS_CERTS)
    _certificate(root / "webhook")
    health = free_port()
    (root / "config.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "config.kueue.x-k8s.io/v1beta2",
                "kind": "Configuration",
                "namespace": "kueue-system",
                "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
                "metrics": {"bindAddress": f"127.0.0.1:{free_port()}"},
                "webhook": {"port": free_port(), "host": "127.0.0.1", "certDir": str(root / "webhook")},
                "leaderElection": {"leaderElect": False},
                "internalCertManagement": {"enable": False},
                "manageJobsWithoutQueueName": False,
                "integrations": {"frameworks": ["batch/job"]},
            }
        )
    )
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(KUEUE_DIR / "crds"))
    # The manager indexes its kinds at start: they must be served before it runs.
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(KUEUE_DIR / "crds"))
    cluster.kubectl("create", "namespace", "kueue-system", check=False)
    with open(root / "kueue.log", "wb") as log:
        proc = subprocess.Popen(
            [str(KUEUE_DIR / "kueue"), f"--config={root / 'config.yaml'}", "--feature-gates=VisibilityOnDemand=false"],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"kueue exited: {(root / 'kueue.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    try:
        wait_until(ready, timeout=60, what="kueue /readyz")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if created_certs:
            shutil.rmtree(METRICS_CERTS.parent.parent, ignore_errors=True)


def cluster_queue(name: str, quota: dict[str, Any], preemption: dict[str, str] | None = None) -> dict[str, Any]:
    """A ClusterQueue over every namespace with one flavor (`default-flavor`) holding `quota` (resource -> amount)."""
    resources = [{"name": k, "nominalQuota": v} for k, v in quota.items()]
    spec: dict[str, Any] = {
        "namespaceSelector": {},
        "resourceGroups": [
            {"coveredResources": list(quota), "flavors": [{"name": "default-flavor", "resources": resources}]}
        ],
    }
    if preemption:
        spec["preemption"] = preemption
    return {"apiVersion": API, "kind": "ClusterQueue", "metadata": {"name": name}, "spec": spec}


def apply_queues(cluster: Cluster, queue: dict[str, Any]) -> None:
    """The default flavor and `queue` (a ClusterQueue), created or updated."""
    flavor = {"apiVersion": API, "kind": "ResourceFlavor", "metadata": {"name": "default-flavor"}}
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [flavor, queue]})
    )


def local_queue(cluster: Cluster, namespace: str, name: str, cluster_queue_name: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": API, "kind": "LocalQueue", "metadata": {"name": name},
        "spec": {"clusterQueue": cluster_queue_name}}))  # fmt: skip
