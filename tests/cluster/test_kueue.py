"""Gang admission by a real Kueue (tests/kueue.py) on the local cluster.

A ClusterQueue holds 8 GPUs: of two runs that each need 2 pods x 4 GPUs, the second stays Queued with no pod at all
until the first has finished, then runs whole. Without Kueue, a quota that cannot hold the gang fails the run
instead (test_failure_semantics.py). Preemption, with real pods that save a checkpoint when stopped, is proven on the
real node (tests/realnode/test_preemption.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests import kueue as kq
from tests.cluster.conftest import Runs, training_run, wait_until
from tests.conftest import Cluster

CLUSTER_QUEUE = "runyard-test-gpus"

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def kueue(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with kq.running_kueue(cluster, tmp_path_factory.mktemp("kueue")):
        quota = {"cpu": 100, "memory": "1Ti", "nvidia.com/gpu": 8}
        kq.apply_queues(cluster, kq.cluster_queue(CLUSTER_QUEUE, quota))
        try:
            yield
        finally:
            cluster.kubectl("delete", "clusterqueue", CLUSTER_QUEUE, "--ignore-not-found", "--wait=false", check=False)


def test_kueue_admits_whole_gangs_one_after_the_other(runs: Runs, kueue: None, cluster: Cluster) -> None:
    kq.local_queue(cluster, runs.namespace, "team", CLUSTER_QUEUE)
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
