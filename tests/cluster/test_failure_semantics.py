"""Failure semantics, ownership and refusals on the local control plane (kwok pods; the real node proves real pods).

Every case here was a bad outcome of an adversarial pass: a retryable failure that became permanent, a foreign
object that was adopted or that failed a run, a refusal that left a run silently stuck.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.conftest import OperatorProcess, Runs, job_failed, training_run, wait_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def running_forever(name: str, **kw: Any) -> dict[str, Any]:
    return training_run(name, outcome="running", run_policy={"backoffLimit": 1, "backoffSeconds": 0}, **kw)


def pods_of(runs: Runs, name: str, attempt: str = "0") -> list[Any]:
    return [p for p in runs.pods(name) if p.metadata.labels.get("runyard.dev/restart-attempt") == attempt]


def test_deleted_pod_restarts_the_gang(runs: Runs) -> None:
    runs.create(running_forever("podgone"))
    runs.wait_phase("podgone", "Running")
    victim = pods_of(runs, "podgone")[0].metadata.name
    runs.core.delete_namespaced_pod(victim, runs.namespace)
    status = wait_until(lambda: (s := runs.status("podgone")).get("restarts") == 1 and s, timeout=60, what="a restart")
    assert status["phase"] in ("Restarting", "Pending", "Starting", "Running"), status
    # What the operator can know of a deleted pod depends on what the cluster kept: its container's exit (Error), the
    # Job's bare BackoffLimitExceeded (Unknown), or a DisruptionTarget the Job recorded without its reason, or a
    # replacement pod seen first (Disrupted; a CI run on a busy machine saw this once). Each restarts the gang.
    failure = status["failure"]
    assert failure["reason"] in ("Error", "Unknown", "Disrupted"), json.dumps(failure)
    assert failure.get("category") != "UserCode", json.dumps(failure)


def test_evicted_pod_restarts_the_gang_as_evicted(runs: Runs) -> None:
    runs.create(running_forever("drained"))
    runs.wait_phase("drained", "Running")
    victim = pods_of(runs, "drained")[0].metadata.name
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=victim, namespace=runs.namespace))
    runs.core.create_namespaced_pod_eviction(victim, runs.namespace, eviction)
    status = wait_until(lambda: (s := runs.status("drained")).get("restarts") == 1 and s, timeout=60, what="a restart")
    assert status["failure"]["reason"] in ("Evicted", "Disrupted"), status
    assert status["failure"]["category"] == "Evicted", status
    assert "avoidNodes" not in status, status  # a drain is not the node's fault (and cordons it anyway)
    runs.wait_events("drained", "Restarting")


def test_user_code_failure_is_triaged_and_not_retried(runs: Runs) -> None:
    runs.create(
        training_run(
            "bug",
            outcome="fail",
            sim={"sim.runyard.dev/exit-code": "1", "sim.runyard.dev/message": "ValueError: bad batch"},
            run_policy={"backoffLimit": 2, "backoffSeconds": 0},
        )
    )
    status = runs.wait_phase("bug", "Failed", "Succeeded", timeout=90)
    assert status["phase"] == "Failed" and status.get("restarts", 0) == 0, status
    failure = status["failure"]
    assert (failure["category"], failure["exitCode"], failure["reason"]) == ("UserCode", 1, "Error"), failure
    # Where: the first replica to fail, its rank (torch nodes without GPUs: one process each) and its node.
    assert failure["rank"] == failure["index"] and failure["node"].startswith("kwok-"), failure
    assert failure["pod"].startswith(f"bug-node-{failure['index']}-"), failure


def test_oom_killed_replica_is_triaged_as_oom(runs: Runs) -> None:
    runs.create(
        training_run(
            "oom",
            replicas={"node": 1},
            outcome="fail",
            sim={"sim.runyard.dev/exit-code": "137", "sim.runyard.dev/reason": "OOMKilled"},
            run_policy={"backoffLimit": 0},
        )
    )
    status = runs.wait_phase("oom", "Failed", "Succeeded", timeout=90)
    assert status["phase"] == "Failed", status
    failure = status["failure"]
    assert (failure["category"], failure["exitCode"], failure["reason"]) == ("OOMKilled", 137, "OOMKilled"), failure
    assert failure["node"].startswith("kwok-") and failure["rank"] == 0, failure
    assert "avoidNodes" not in status, status  # the program's memory, not the node


def test_retry_by_category_restarts_user_code_when_asked(runs: Runs) -> None:
    runs.create(
        training_run(
            "flaky",
            replicas={"node": 1},
            outcome="fail-first",
            sim={"sim.runyard.dev/exit-code": "1"},
            run_policy={"backoffLimit": 1, "backoffSeconds": 0, "retryOn": {"categories": ["UserCode"]}},
        )
    )
    status = runs.wait_phase("flaky", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded" and status["restarts"] == 1, status
    assert status["failure"]["category"] == "UserCode", status


def test_hand_deleted_job_is_a_counted_restart_with_an_event(runs: Runs) -> None:
    runs.create(running_forever("jobgone"))
    runs.wait_phase("jobgone", "Running")
    runs.batch.delete_namespaced_job("jobgone-node", runs.namespace, propagation_policy="Background")
    status = wait_until(lambda: (s := runs.status("jobgone")).get("restarts") == 1 and s, timeout=60, what="a restart")
    assert status["failure"]["reason"] == "JobDeleted", status
    assert status["failure"]["category"] == "Infrastructure", status
    runs.wait_events("jobgone", "Restarting", "JobDeleted")


def test_node_not_ready_evicts_and_restarts_as_node_lost(runs: Runs, api: Any) -> None:
    # The run tolerates a lost node for 3 s (Runyard's default is 60 s), then the taint manager evicts its pods.
    tolerations = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3}
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
    ]
    runs.create(running_forever("lost", replicas={"node": 1}, nodeSelector={"runyard.dev/pool": "cpu"},
                                tolerations=tolerations))  # fmt: skip
    runs.wait_phase("lost", "Running")
    node = pods_of(runs, "lost")[0].spec.node_name
    core = client.CoreV1Api(api)
    core.patch_node(node, {"metadata": {"labels": {"sim.runyard.dev/not-ready": "true"}}})
    try:
        status = wait_until(
            lambda: (s := runs.status("lost")).get("restarts") == 1 and s, timeout=120, what="a NodeLost restart"
        )
        assert status["failure"]["reason"] in ("NodeLost", "Disrupted"), status
        if status["failure"]["reason"] == "NodeLost":
            # The lost node is the fault: the restart's pods must not go back there.
            assert status["failure"]["category"] == "NodeLost" and status["avoidNodes"] == [node], status
        else:
            assert status["failure"]["category"] == "Evicted", status
    finally:
        core.patch_node(node, {"metadata": {"labels": {"sim.runyard.dev/not-ready": None}}})


def test_failures_while_the_operator_is_down_are_still_retried(runs: Runs, operator: OperatorProcess) -> None:
    """The Job records the exit code (podFailurePolicy): 137 is retried even if the failed pod is never seen."""
    names = [f"down-{i}" for i in range(4)]
    for name in names:
        runs.create(
            training_run(
                name,
                replicas={"node": 1},
                outcome="fail-first",
                sim={"sim.runyard.dev/duration": "2s", "sim.runyard.dev/exit-code": "137"},
                run_policy={"backoffLimit": 1, "backoffSeconds": 0},
            )
        )
    for name in names:
        runs.wait_phase(name, "Starting", "Running")
    operator.kill()
    try:
        for name in names:
            wait_until(lambda n=name: job_failed(runs, f"{n}-node"), timeout=60, what=f"{name}'s Job Failed")
            # The failed pods are removed too: only the Job's own record says why.
            for pod in runs.pods(name):
                runs.core.delete_namespaced_pod(pod.metadata.name, runs.namespace, grace_period_seconds=0)
    finally:
        operator.start()
    for name in names:
        status = runs.wait_phase(name, "Succeeded", "Failed", timeout=90)
        assert status["phase"] == "Succeeded" and status["restarts"] == 1, status
        assert status["failure"]["exitCode"] == 137, status


def test_foreign_pod_with_a_runs_labels_changes_nothing(runs: Runs, api: Any) -> None:
    run = runs.create(training_run("victim", replicas={"node": 1}, outcome="running"))
    runs.wait_phase("victim", "Running")
    other = f"{runs.namespace}-x"[:63]
    core = client.CoreV1Api(api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=other, labels={"runyard.dev/test": "true"}))
    )
    try:
        labels = {**pods_of(runs, "victim")[0].metadata.labels, "sim.runyard.dev/outcome": "fail"}
        core.create_namespaced_pod(
            other,
            {"metadata": {"name": "impostor", "labels": labels, "annotations": {"sim.runyard.dev/duration": "1s"}},
             "spec": {"containers": [{"name": "trainer", "image": "x"}], "restartPolicy": "Never",
                      "nodeSelector": {"type": "kwok"}}},
        )  # fmt: skip
        wait_until(lambda: core.read_namespaced_pod("impostor", other).status.phase == "Failed", what="impostor fails")
        assert runs.status("victim")["phase"] == "Running"
        assert runs.status("victim").get("restarts", 0) == 0
        assert run["metadata"]["uid"] == labels["runyard.dev/run-uid"]
    finally:
        core.delete_namespace(other)


def test_gang_never_runs_partially_under_a_pods_quota(runs: Runs) -> None:
    runs.core.create_namespaced_resource_quota(
        runs.namespace, {"metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}}
    )
    runs.create(training_run("squeezed", replicas={"node": 2}, run_policy={"backoffLimit": 0}))
    status = runs.wait_phase("squeezed", "Failed", "Succeeded", timeout=90)
    assert status["phase"] == "Failed", status
    assert status["failure"]["reason"] == "FailedCreate" and "exceeded quota" in status["failure"]["message"], status


def test_missing_service_account_is_reported_then_fails_in_bounded_time(runs: Runs) -> None:
    runs.create(
        training_run(
            "nosa", replicas={"node": 1}, serviceAccountName="does-not-exist", run_policy={"startTimeoutSeconds": 15}
        )
    )
    pending = wait_until(
        lambda: (s := runs.status("nosa")).get("phase") == "Pending" and "FailedCreate" in str(s.get("conditions"))
        and s,
        timeout=60,
        what="Pending naming the refusal",
    )  # fmt: skip
    assert "does-not-exist" in pending["message"], pending
    status = runs.wait_phase("nosa", "Failed", timeout=60)
    assert status["failure"]["reason"] == "FailedCreate", status


@pytest.mark.parametrize(
    ("name", "spec", "field"),
    [
        ("always", {"podTemplate": {"spec": {"restartPolicy": "Always"}}}, "restartPolicy"),
        ("noimage", {"podTemplate": {"spec": {"containers": [{"name": "trainer", "image": ""}]}}}, "image"),
        ("badaffinity", {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}},
         "nodeSelectorTerms"),
    ],
)  # fmt: skip
def test_job_the_api_server_rejects_fails_the_run_naming_the_field(
    runs: Runs, name: str, spec: dict[str, Any], field: str
) -> None:
    runs.create(training_run(name, replicas={"node": 1}, **spec))
    status = runs.wait_phase(name, "Failed", timeout=60)
    assert status["failure"]["reason"] == "Rejected", status
    assert field in status["message"], status
    assert runs.jobs(name) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"replicas": {"node": {"replicas": 1, "resources": {"cpu": "-1"}}}}, "cpu"),
        ({"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]}, "tolerationSeconds"),
        ({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"},
                                              "secretKeyRef": {"name": "s", "key": "k"}}}]}, "valueFrom"),
        ({"envFrom": [{"prefix": "P_"}]}, "envFrom"),
        ({"volumeMounts": [{"name": "missing", "mountPath": "/m"}]}, "volumeMounts"),
    ],
)  # fmt: skip
def test_crd_rejects_what_a_job_would_refuse_naming_the_field(runs: Runs, spec: dict[str, Any], field: str) -> None:
    manifest = training_run("refused", replicas={"node": 1})
    manifest["spec"].update(spec)
    with pytest.raises(client.ApiException) as err:
        runs.create(manifest)
    assert err.value.status == 422 and field in err.value.body, err.value.body


@pytest.mark.parametrize(
    ("name", "spec", "field"),
    [
        ("hostroot", {"volumes": [{"name": "root", "hostPath": {"path": "/"}}],
                      "volumeMounts": [{"name": "root", "mountPath": "/host"}]}, "hostPath"),
        ("privileged", {"podTemplate": {"spec": {"containers": [{"name": "trainer",
                                                                 "securityContext": {"privileged": True}}]}}},
         "privileged"),
        ("hostpid", {"podTemplate": {"spec": {"hostPID": True}}}, "hostPID"),
        ("sysadmin", {"podTemplate": {"spec": {"containers": [
            {"name": "trainer", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}}}, "SYS_ADMIN"),
    ],
)  # fmt: skip
def test_platform_pod_policy_refuses_host_powers(runs: Runs, name: str, spec: dict[str, Any], field: str) -> None:
    runs.create(training_run(name, replicas={"node": 1}, **spec))
    status = runs.wait_phase(name, "Failed", timeout=60)
    assert status["failure"]["reason"] == "PolicyViolation", status
    assert field in status["message"] and "podPolicy" in status["message"], status
    assert runs.jobs(name) == []


def test_default_pods_pass_pod_security_restricted_and_a_violation_is_reported(runs: Runs, api: Any) -> None:
    """Runyard's default pods meet Pod Security 'restricted'; a run loosening it in such a namespace is refused by the
    API server (FailedCreate) and the run says so, then fails after startTimeoutSeconds."""
    client.CoreV1Api(api).patch_namespace(
        runs.namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    runs.create(training_run("compliant", replicas={"node": 1}))
    assert runs.wait_phase("compliant", "Succeeded", "Failed", timeout=90)["phase"] == "Succeeded"
    runs.create(
        training_run("loose", replicas={"node": 1}, securityContext={"runAsNonRoot": False},
                     run_policy={"startTimeoutSeconds": 15})
    )  # fmt: skip
    status = runs.wait_phase("loose", "Failed", timeout=90)
    assert status["failure"]["reason"] == "FailedCreate" and "PodSecurity" in status["failure"]["message"], status


def test_missing_priority_class_is_reported_then_fails(runs: Runs) -> None:
    runs.create(training_run("noprio", replicas={"node": 1}, priorityClassName="does-not-exist",
                             run_policy={"startTimeoutSeconds": 15}))  # fmt: skip
    status = runs.wait_phase("noprio", "Failed", timeout=90)
    assert status["failure"]["reason"] == "FailedCreate" and "does-not-exist" in status["failure"]["message"], status
