"""A Kueue preemption on the real node, with a real Kueue: the low-priority run's ranks get SIGTERM, agree to stop,
save a checkpoint and exit; the run shows Suspended (Preempted) with that checkpoint while the urgent run uses its
quota, and when Kueue admits it again its replicas resume from exactly that step (every step trained once)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests import kueue as kq
from tests.conftest import Cluster
from tests.operator_fixtures import Runs, wait_until
from tests.realnode.conftest import ON_REAL_NODE, apply, load_manifest, pod_diagnostics, runyard_cli, wait_finished
from tests.unit.artifacts.s3server import S3Server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

CLUSTER_QUEUE = "runyard-preemption"
PREEMPTION = {"withinClusterQueue": "LowerPriority"}
STEPS_PER_EPOCH = 23  # the digits example: 1437 training images over 2 ranks, 32 per batch
EPOCHS = 12


@pytest.fixture(scope="module")
def kueue(cluster: Cluster, real_node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with kq.running_kueue(cluster, tmp_path_factory.mktemp("kueue-real")):
        priorities = [
            {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value}
            for name, value in (("runyard-test-low", 10), ("runyard-test-high", 1000))
        ]
        cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": priorities}))
        try:
            yield
        finally:
            cluster.kubectl("delete", "clusterqueue", CLUSTER_QUEUE, "--ignore-not-found", "--wait=false", check=False)
            cluster.kubectl("delete", "priorityclass", "runyard-test-low", "runyard-test-high", check=False)


def _admitted_cpu(cluster: Cluster, namespace: str) -> str:
    """The CPU Kueue counts for the one admitted workload in `namespace` (its pods' requests, sidecars included)."""
    items = json.loads(cluster.kubectl("get", "workloads", "-n", namespace, "-o", "json").stdout)["items"]
    admitted = [w for w in items if (w.get("status") or {}).get("admission")]
    assert len(admitted) == 1, items
    usage = [a["resourceUsage"]["cpu"] for a in admitted[0]["status"]["admission"]["podSetAssignments"]]
    assert len(usage) == 1, admitted[0]["status"]
    return str(usage[0])


def _step(rruns: Runs) -> int:
    return int((rruns.status("long").get("progress") or {}).get("step") or 0)


def test_preempted_run_saves_a_checkpoint_waits_suspended_and_resumes_from_it(
    cluster: Cluster, rruns: Runs, kueue: None, mlflow_real: str, s3_real: S3Server
) -> None:
    ns = rruns.namespace
    kq.apply_queues(cluster, kq.cluster_queue(CLUSTER_QUEUE, {"cpu": "8", "memory": "64Gi"}, PREEMPTION))
    kq.local_queue(cluster, ns, "team", CLUSTER_QUEUE)
    manifest = load_manifest("pytorch-ddp.yaml", ns)
    manifest["metadata"]["name"] = "long"
    spec = manifest["spec"]
    spec |= {"queueName": "team", "priorityClassName": "runyard-test-low"}
    spec["env"] += [
        {"name": "RUNYARD_EXAMPLE_EPOCHS", "value": str(EPOCHS)},
        {"name": "RUNYARD_EXAMPLE_STEP_DELAY", "value": "0.1"},
    ]
    spec["runPolicy"] = {"backoffLimit": 0, "stopGracePeriodSeconds": 60}
    apply(cluster, manifest)
    # Past the first epoch's checkpoint: the stop must save a newer one of its own.
    reached = wait_until(
        lambda: _step(rruns) if _step(rruns) > STEPS_PER_EPOCH + 5 else 0,
        timeout=420,
        what=f"the long run past step {STEPS_PER_EPOCH + 5}\n{pod_diagnostics(rruns, 'long')}",
    )
    # Only now is the quota cut to what the long run holds: the urgent run gets in by preempting it, or not at all.
    cpu = _admitted_cpu(cluster, ns)
    kq.apply_queues(cluster, kq.cluster_queue(CLUSTER_QUEUE, {"cpu": cpu, "memory": "64Gi"}, PREEMPTION))
    urgent = {
        "apiVersion": "runyard.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "urgent", "namespace": ns},
        "spec": {
            "framework": "generic",
            "image": "localhost/runyard/examples:dev",
            "command": ["python", "-c", "import time; print('urgent work', flush=True); time.sleep(3600)"],
            "replicas": {"node": {"replicas": 1, "resources": {"cpu": "250m", "memory": "128Mi"}}},
            "queueName": "team",
            "priorityClassName": "runyard-test-high",
            "runPolicy": {"backoffLimit": 0},
            **ON_REAL_NODE,
        },
    }
    apply(cluster, urgent)

    # Stopped, not failed: the ranks saved a checkpoint, the stopped Job was replaced (suspended, with
    # RUNYARD_RESUME_FROM) and the run waits for Kueue, showing where it will resume. `status.stopped` stays until the
    # replacement replicas start, which the urgent run's quota holds off until the test deletes it: no race.
    stopped = wait_until(
        lambda: (s := rruns.status("long")).get("stopped") and s.get("lastCheckpoint") and s.get("phase") == "Suspended"
        and "of step" in (s.get("message") or "") and s,
        timeout=300,
        what=f"the long run Suspended with its checkpoint\n{pod_diagnostics(rruns, 'long')}",
    )  # fmt: skip
    assert stopped["stopped"]["reason"] == "Preempted" and stopped["stopped"]["attempt"] == 0, stopped
    checkpoint = stopped["lastCheckpoint"]
    saved_at = checkpoint["step"]
    # The stop's own checkpoint, saved at the step the ranks agreed on, past the progress seen before the preemption.
    assert saved_at >= reached, (reached, checkpoint)
    assert checkpoint["uri"].endswith(f"node-0/checkpoints/step-{saved_at:06d}.pt") and len(checkpoint["sha256"]) == 64
    assert stopped["message"].startswith("preempted: Kueue queue team"), stopped["message"]
    assert f"resume from the checkpoint of step {saved_at} when it is admitted again" in stopped["message"]
    suspended = next(c for c in stopped["conditions"] if c["type"] == "Suspended")
    assert suspended["status"] == "True" and suspended["reason"] == "Preempted", stopped["conditions"]
    shown = cluster.kubectl("get", "tr", "long", "-n", ns).stdout
    assert "Suspended" in shown, shown
    described = runyard_cli(cluster, "describe", "long", "-n", ns)
    assert f"step {saved_at}" in described.stdout and "Preempted" in described.stdout, described.stdout

    # The stopped replicas' pods are gone with the suspension; what they printed while stopping was archived.
    stops = wait_until(
        lambda: ((rruns.status("long").get("artifacts") or {}).get("logs") or {}).get("stops"),
        timeout=120,
        what="the stopped replicas' logs archived",
    )
    assert [(s["attempt"], s["reason"], s.get("message")) for s in stops] == [(0, "Preempted", None)], stops
    suspended = runyard_cli(cluster, "logs", "long", "-n", ns, env=s3_real.env())
    suspended_logs = suspended.stdout
    assert f"at step {saved_at}" in suspended_logs and "rank 0: stop requested: saved" in suspended_logs, (
        f"{suspended_logs[-3000:]}\n{suspended.stderr}"
    )
    assert "[node-1] rank 1" in suspended_logs, suspended_logs[-3000:]
    # Each rank's part starts with a notice (stderr) saying where it comes from.
    assert "[node-0] Preempted at " in suspended.stderr and "the stopped replica's log" in suspended.stderr, (
        suspended.stderr
    )

    rruns.wait_phase("urgent", "Running", timeout=180)  # admitted in the long run's place
    cluster.kubectl("delete", "tr", "urgent", "-n", ns, "--wait=false")  # its quota goes back to the queue
    status = wait_finished(rruns, "long", timeout=600)
    assert status["phase"] == "Succeeded", f"{status}\n{pod_diagnostics(rruns, 'long')}"
    # Not a failure and not a restart: the same attempt, resumed from the checkpoint the stop saved.
    assert status["restarts"] == 0 and "failure" not in status, status
    assert status["resumedFrom"]["attempt"] == 0 and status["resumedFrom"]["step"] == saved_at, status
    assert "stopped" not in status, status
    last = EPOCHS * STEPS_PER_EPOCH
    # The last upload (the sidecars' final pass) may follow the end by seconds: the operator summarises again then.
    wait_until(lambda: rruns.status("long")["lastCheckpoint"]["step"] == last, timeout=90, what=f"step {last} stored")
    rruns.wait_events("long", "Suspended", "preempted")

    # One attempt: what ran until the preemption (archived), then what resumed from its checkpoint.
    logs = runyard_cli(cluster, "logs", "long", "-n", ns, env=s3_real.env()).stdout
    stopped_at, resumed_at = logs.find("rank 0: stop requested: saved"), logs.find("rank 0: resumed from")
    assert 0 <= stopped_at < resumed_at and f"at step {saved_at}" in logs[resumed_at:], logs[-3000:]

    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri=mlflow_real).get_metric_history(
        status["tracking"]["mlflow"]["runId"], "rank_0/loss"
    )
    steps = sorted(int(m.step) for m in history)
    # Every step trained exactly once across the stop: nothing lost, nothing repeated.
    assert steps == list(range(EPOCHS * STEPS_PER_EPOCH)), (len(steps), len(set(steps)), saved_at)
