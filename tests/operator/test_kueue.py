"""Gang admission by a real Kueue (v0.17.0, built from its Go module by hack/build-binaries.sh) on the local cluster.

Kueue runs out of cluster as a process with the admin kubeconfig. Its webhooks are not registered (Runyard creates
queue-managed Jobs suspended itself, which is what Kueue's mutating webhook would do); its webhook and metrics servers
get a throw-away certificate, and the visibility API is off. A ClusterQueue holds 8 GPUs: of two runs that each
need 2 pods x 4 GPUs, the second stays Queued with no pod at all until the first has finished, then runs whole.
Without Kueue, a quota that cannot hold the gang fails the run instead (test_failure_semantics.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cluster, localcluster
from tests.operator.conftest import Runs, free_port, training_run, wait_until

KUEUE_VERSION = os.environ.get("KUEUE_VERSION", "v0.17.0")
KUEUE_DIR = localcluster.CACHE / "bin" / f"kueue-{KUEUE_VERSION}"
# Kueue reads its metrics certificate from this fixed path when it does not manage certificates itself.
METRICS_CERTS = Path("/etc/kueue/metrics/certs")
CLUSTER_QUEUE = "runyard-test-gpus"

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _certificate(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kueue",
         "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def kueue(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if not (KUEUE_DIR / "kueue").exists():
        pytest.skip(f"Kueue not built: run `make binaries` ({KUEUE_DIR})")
    if os.geteuid() != 0 and not METRICS_CERTS.exists():
        pytest.skip(f"Kueue needs a certificate in {METRICS_CERTS} (root to create it)")
    root = tmp_path_factory.mktemp("kueue")
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
        quota = {"name": "default-flavor", "resources": [
            {"name": "cpu", "nominalQuota": 100}, {"name": "memory", "nominalQuota": "1Ti"},
            {"name": "nvidia.com/gpu", "nominalQuota": 8}]}  # fmt: skip
        objects = [
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "default-flavor"}},
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": CLUSTER_QUEUE},
             "spec": {"namespaceSelector": {}, "resourceGroups": [
                 {"coveredResources": ["cpu", "memory", "nvidia.com/gpu"], "flavors": [quota]}]}},
        ]  # fmt: skip
        cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        yield
    finally:
        cluster.kubectl("delete", "clusterqueue", CLUSTER_QUEUE, "--ignore-not-found", "--wait=false", check=False)
        proc.terminate()
        proc.wait(timeout=30)
        if created_certs:
            shutil.rmtree(METRICS_CERTS.parent.parent, ignore_errors=True)


def test_kueue_admits_whole_gangs_one_after_the_other(runs: Runs, kueue: None, cluster: Cluster) -> None:
    cluster.kubectl("apply", "-n", runs.namespace, "-f", "-", input=json.dumps({
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "team"},
        "spec": {"clusterQueue": CLUSTER_QUEUE}}))  # fmt: skip
    for name in ("first", "second"):
        runs.create(training_run(name, replicas={"node": 2}, gpus=4, queueName="team",
                                 sim={"sim.runyard.dev/duration": "10s"}))  # fmt: skip
    wait_until(lambda: {runs.status(n).get("phase") for n in ("first", "second")} == {"Running", "Queued"},
               timeout=60, what="one run Running, the other Queued")  # fmt: skip
    running = "first" if runs.status("first")["phase"] == "Running" else "second"
    queued = "second" if running == "first" else "first"
    assert len(runs.pods(running)) == 2 and runs.pods(queued) == []
    assert "Kueue queue team" in runs.status(queued)["message"]
    assert runs.wait_phase(queued, "Succeeded", timeout=120)["phase"] == "Succeeded"
    # Never partially admitted, never overlapping: the queued gang's pods were created only once the first gang's
    # pods had all finished (the durable record: creation and termination times, not what a poll happened to see).
    finished = [cs.state.terminated.finished_at for p in runs.pods(running) for cs in p.status.container_statuses or []]
    created = [p.metadata.creation_timestamp for p in runs.pods(queued)]
    assert len(created) == 2 and len(finished) == 2 and min(created) >= max(finished), (created, finished)
    workloads = json.loads(cluster.kubectl("get", "workloads", "-n", runs.namespace, "-o", "json").stdout)["items"]
    assert len(workloads) == 2 and all(w["spec"]["queueName"] == "team" for w in workloads)
