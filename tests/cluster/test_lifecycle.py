"""Operator integration tests on the real local control plane: frameworks, restarts, deadlines, suspend, deletion."""

from __future__ import annotations

import json
import time

import yaml

from tests.cluster.conftest import CRD_FILE, OperatorProcess, Runs, job_failed, training_run, wait_until
from tests.conftest import Cluster


def test_pytorch_two_nodes_succeeds(runs: Runs, cluster: Cluster) -> None:
    runs.create(training_run("torch", "pytorch", {"node": 2}, gpus=8))
    running = runs.wait_phase("torch", "Running", "Succeeded")
    status = runs.wait_phase("torch", "Succeeded")
    assert status["totalReplicas"] == 2
    assert status["restarts"] == 0
    assert status["startTime"] and status["completionTime"]
    assert len(status["nodes"]) == 2 and all(n.startswith("kwok-gpu-") for n in status["nodes"])
    if running["phase"] == "Running":
        assert running["gpus"] == 16 and running["readyReplicas"] == 2
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True"
    assert conditions["Succeeded"]["observedGeneration"] == runs.get("torch")["metadata"]["generation"]
    # kubectl wait works on the condition, and the printer columns show the phase.
    cluster.kubectl("wait", "-n", runs.namespace, "--for=condition=Succeeded", "tr/torch", "--timeout=10s")
    table = cluster.kubectl("get", "tr", "-n", runs.namespace).stdout
    assert "PHASE" in table and "Succeeded" in table and "pytorch" in table
    jobs = runs.jobs("torch")
    assert [j.metadata.name for j in jobs] == ["torch-node"]
    assert jobs[0].spec.completion_mode == "Indexed" and jobs[0].spec.completions == 2
    owner = jobs[0].metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("TrainingRun", "torch", True)
    runs.wait_events("torch", "Succeeded")


def test_tensorflow_chief_workers_ps_succeeds(runs: Runs) -> None:
    runs.create(
        training_run("tf", "tensorflow", {"chief": 1, "worker": 2, "ps": 1}, sim={"sim.runyard.dev/duration": "3s"})
    )
    wait_until(
        lambda: sorted(j.metadata.name for j in runs.jobs("tf")) == ["tf-chief", "tf-ps", "tf-worker"],
        what="one Job per role",
    )
    status = runs.wait_phase("tf", "Succeeded")
    assert status["totalReplicas"] == 4


def test_mpi_launcher_and_workers_succeed(runs: Runs) -> None:
    runs.create(training_run("mpi", "mpi", {"launcher": 1, "worker": 2}))
    status = runs.wait_phase("mpi", "Succeeded")
    assert status["totalReplicas"] == 3
    cm = runs.core.read_namespaced_config_map("mpi-mpi", runs.namespace)
    assert "mpi-worker-0" in cm.data["hostfile"] and "mpi-worker-1" in cm.data["hostfile"]
    # The Secret's name is server-generated (never collides with someone else's) and recorded in the status.
    secret = runs.core.read_namespaced_secret(status["sshSecret"], runs.namespace)
    assert secret.type == "kubernetes.io/ssh-auth" and status["sshSecret"].startswith("mpi-mpi-ssh-")
    assert secret.metadata.owner_references[0].uid == runs.get("mpi")["metadata"]["uid"]


def test_one_failure_restarts_the_whole_gang(runs: Runs) -> None:
    runs.create(
        training_run(
            "flaky",
            outcome="fail-first",
            sim={"sim.runyard.dev/exit-code": "137"},
            run_policy={"backoffLimit": 2, "backoffSeconds": 0},
        )
    )
    status = runs.wait_phase("flaky", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert status["restarts"] == 1
    assert status["failure"]["exitCode"] == 137
    runs.wait_events("flaky", "Restarting")


def test_fails_after_backoff_limit_with_pod_and_exit_code(runs: Runs) -> None:
    runs.create(
        training_run(
            "doomed",
            outcome="fail",
            sim={"sim.runyard.dev/exit-code": "137", "sim.runyard.dev/reason": "OOMKilled"},
            run_policy={"backoffLimit": 2, "backoffSeconds": 0},
        )
    )
    status = runs.wait_phase("doomed", "Failed", timeout=90)
    assert status["restarts"] == 2
    failure = status["failure"]
    assert failure["exitCode"] == 137 and failure["reason"] == "OOMKilled"
    assert failure["pod"].startswith("doomed-node-") and failure["container"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"


def test_non_retryable_exit_code_fails_without_restart(runs: Runs) -> None:
    runs.create(
        training_run("bug", outcome="fail", sim={"sim.runyard.dev/exit-code": "1"}, run_policy={"backoffLimit": 3})
    )
    status = runs.wait_phase("bug", "Failed")
    assert status["restarts"] == 0
    assert status["failure"]["exitCode"] == 1 and status["failure"]["reason"] == "Error"


def test_deadline_exceeded_fails_the_run(runs: Runs) -> None:
    runs.create(training_run("slow", outcome="running", run_policy={"activeDeadlineSeconds": 3}))
    status = runs.wait_phase("slow", "Failed", timeout=30)
    assert status["failure"]["reason"] == "DeadlineExceeded"
    # cleanPodPolicy Running (the default) stops the stragglers.
    wait_until(lambda: not [p for p in runs.pods("slow") if p.status.phase == "Running"], what="pods cleaned up")


def test_suspend_then_resume(runs: Runs) -> None:
    runs.create(training_run("pause", outcome="running"))
    runs.wait_phase("pause", "Running")
    runs.patch("pause", {"spec": {"runPolicy": {"suspend": True}}})
    runs.wait_phase("pause", "Suspended")
    wait_until(lambda: all(j.spec.suspend for j in runs.jobs("pause")), what="jobs suspended")
    wait_until(
        lambda: not [p for p in runs.pods("pause") if not p.metadata.deletion_timestamp],
        what="pods gone while suspended",
    )
    runs.patch("pause", {"spec": {"runPolicy": {"suspend": False}}})
    status = runs.wait_phase("pause", "Running")
    assert status["restarts"] == 0
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Suspended"] == "False" and conditions["Running"] == "True"


def test_delete_mid_run_removes_children(runs: Runs) -> None:
    runs.create(training_run("gone", outcome="running"))
    runs.wait_phase("gone", "Running")
    runs.delete("gone")
    wait_until(lambda: not runs.jobs("gone") and not runs.pods("gone"), what="children garbage-collected")
    services = runs.core.list_namespaced_service(runs.namespace, label_selector="runyard.dev/run-name=gone").items
    assert not services


def test_too_many_gpus_stays_pending_with_scheduler_reason(runs: Runs) -> None:
    runs.create(training_run("greedy", gpus=16))
    status = wait_until(
        lambda: (s := runs.status("greedy")).get("schedulingMessage") and s,
        what="the scheduler's reason in status",
    )
    assert status["phase"] == "Pending"
    assert "nvidia.com/gpu" in status["schedulingMessage"]
    pending = {c["type"]: c for c in status["conditions"]}["Reconciling"]
    assert pending["reason"] == "Unschedulable"


def test_operator_killed_mid_run_converges_without_duplicates(runs: Runs, operator: OperatorProcess) -> None:
    runs.create(
        training_run(
            "survivor",
            outcome="fail-first",
            sim={"sim.runyard.dev/duration": "3s", "sim.runyard.dev/exit-code": "143"},
            run_policy={"backoffLimit": 1, "backoffSeconds": 0},
        )
    )
    runs.wait_phase("survivor", "Starting", "Running")
    operator.kill()
    # The first attempt fails while no operator runs: its Job records why (podFailurePolicy).
    wait_until(lambda: job_failed(runs, "survivor-node"), timeout=60, what="the Job Failed while the operator is down")
    operator.start()
    status = runs.wait_phase("survivor", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded" and status["restarts"] == 1, status
    assert [j.metadata.name for j in runs.jobs("survivor")] == ["survivor-node"]
    services = runs.core.list_namespaced_service(runs.namespace, label_selector="runyard.dev/run-name=survivor")
    assert len(services.items) == 1


def test_existing_unowned_child_is_never_adopted(runs: Runs) -> None:
    """A Service of the run's name that the run does not own refuses the run; it is never taken over (nor GC'd)."""
    runs.core.create_namespaced_service(
        runs.namespace, {"metadata": {"name": "adopt"}, "spec": {"clusterIP": "None", "selector": {"x": "y"}}}
    )
    runs.create(training_run("adopt"))
    status = runs.wait_phase("adopt", "Failed")
    assert status["failure"]["reason"] == "NameConflict", status
    assert f"Service {runs.namespace}/adopt already exists" in status["message"], status
    assert runs.jobs("adopt") == []  # nothing half-created
    svc = runs.core.read_namespaced_service("adopt", runs.namespace)
    assert not svc.metadata.owner_references
    runs.delete("adopt")
    wait_until(lambda: "adopt" not in runs.names(), what="the run deleted")
    assert runs.core.read_namespaced_service("adopt", runs.namespace).metadata.name == "adopt"


def test_child_owned_by_someone_else_is_reported(runs: Runs) -> None:
    owner = runs.core.create_namespaced_config_map(runs.namespace, {"metadata": {"name": "other-owner"}})
    runs.batch.create_namespaced_job(
        runs.namespace,
        {
            "metadata": {
                "name": "taken-node",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "other-owner",
                        "uid": owner.metadata.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "suspend": True,
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}},
            },
        },
    )
    runs.create(training_run("taken"))
    status = runs.wait_phase("taken", "Failed")
    assert status["failure"]["reason"] == "NameConflict", status
    assert "Job" in status["message"] and "controlled by ConfigMap other-owner" in status["message"], status
    job = runs.batch.read_namespaced_job("taken-node", runs.namespace)
    assert job.metadata.owner_references[0].kind == "ConfigMap"


def test_metrics_endpoint_counts_runs(runs: Runs, operator: OperatorProcess) -> None:
    runs.create(training_run("counted", replicas={"node": 1}))
    runs.wait_phase("counted", "Succeeded")
    text = operator.metrics()
    assert 'runyard_trainingruns{framework="pytorch",phase="Succeeded"}' in text
    assert 'runyard_trainingrun_transitions_total{framework="pytorch",phase="Succeeded"}' in text
    assert "runyard_reconcile_duration_seconds_bucket" in text
    assert "runyard_trainingrun_time_to_running_seconds" in text


def test_status_patches_only_on_change(runs: Runs) -> None:
    runs.create(training_run("quiet", replicas={"node": 1}))
    runs.wait_phase("quiet", "Succeeded")
    time.sleep(1)
    # A label change is a watch event (so a reconcile) that changes nothing the status depends on.
    after_patch = runs.patch("quiet", {"metadata": {"labels": {"touched": "yes"}}})["metadata"]["resourceVersion"]
    time.sleep(2)
    assert runs.get("quiet")["metadata"]["resourceVersion"] == after_patch


def test_invalid_stored_object_gets_failed_condition(cluster: Cluster, runs: Runs, crd: None) -> None:
    loose = yaml.safe_load(CRD_FILE.read_text())
    version = loose["spec"]["versions"][0]
    version["schema"]["openAPIV3Schema"] = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "status": version["schema"]["openAPIV3Schema"]["properties"]["status"],
        },
    }
    version.pop("selectableFields", None)
    try:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(loose))
        bad = {
            "apiVersion": "runyard.dev/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": "legacy"},
            "spec": {"framework": "caffe", "replicas": {"node": {"replicas": -1}}, "image": 7},
        }
        wait_until(
            lambda: (
                cluster.kubectl("apply", "-n", runs.namespace, "-f", "-", input=json.dumps(bad), check=False).returncode
                == 0
            ),
            what="loose CRD to accept garbage",
        )
    finally:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    status = runs.wait_phase("legacy", "Failed")
    assert "spec.framework" in status["message"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "InvalidSpec"
    # and the operator is still alive and working
    runs.create(training_run("after-legacy", replicas={"node": 1}))
    runs.wait_phase("after-legacy", "Succeeded")
