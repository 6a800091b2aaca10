"""Smoke tests of the local control plane: version, CRDs, Jobs on fake GPU nodes, outcomes, GC, scheduling, tokens."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import Cluster, localcluster


def wait_until(check: Callable[[], Any], timeout: float = 60, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job(
    name: str,
    *,
    completions: int = 1,
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox:1.36"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": completions,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels or {}, "annotations": annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


def test_server_version_is_pinned(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == localcluster.K8S_VERSION
    assert out["clientVersion"]["minor"] == out["serverVersion"]["minor"]


def test_fake_gpu_nodes_are_ready_with_labels(api: Any) -> None:
    nodes = client.CoreV1Api(api).list_node(label_selector="runyard.dev/pool=gpu").items
    assert len(nodes) >= 4
    for node in nodes:
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert node.metadata.labels["nvidia.com/gpu.product"]
        assert node.metadata.labels["nvidia.com/gpu.count"] == "8"
        assert node.metadata.labels["nvidia.com/gpu.memory"]
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True"
    cpu_nodes = client.CoreV1Api(api).list_node(label_selector="runyard.dev/pool=cpu").items
    assert cpu_nodes and all("nvidia.com/gpu" not in n.status.allocatable for n in cpu_nodes)


def test_crd_is_applied_and_served(cluster: Cluster, namespace: str) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.smoke.runyard.dev"},
        "spec": {
            "group": "smoke.runyard.dev",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.smoke.runyard.dev", "--timeout=30s")
    ok = {
        "apiVersion": "smoke.runyard.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": {"size": 2},
    }
    wait_until(
        lambda: cluster.kubectl("apply", "-f", "-", input=json.dumps(ok), check=False).returncode == 0,
        what="the CRD to be served",
    )
    bad = dict(ok, spec={"size": 0})
    res = cluster.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0 and "spec.size" in res.stderr


def test_indexed_gpu_job_spreads_over_nodes_and_completes(cluster: Cluster, api: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(
        namespace, job("gang", completions=2, gpus=8, annotations={"sim.runyard.dev/duration": "1s"})
    )
    cluster.kubectl("wait", "-n", namespace, "--for=condition=complete", "job/gang", "--timeout=60s")
    pods = core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=gang").items
    assert len(pods) == 2
    assert {p.status.phase for p in pods} == {"Succeeded"}
    nodes = {p.spec.node_name for p in pods}
    assert len(nodes) == 2 and all(n.startswith("kwok-gpu-") for n in nodes)


def test_pod_marked_to_fail_ends_failed_with_exit_code(cluster: Cluster, api: Any, namespace: str) -> None:
    client.BatchV1Api(api).create_namespaced_job(
        namespace,
        job(
            "oom",
            labels={"sim.runyard.dev/outcome": "fail"},
            annotations={
                "sim.runyard.dev/exit-code": "137",
                "sim.runyard.dev/reason": "OOMKilled",
                "sim.runyard.dev/duration": "500ms",
            },
        ),
    )
    cluster.kubectl("wait", "-n", namespace, "--for=condition=failed", "job/oom", "--timeout=60s")
    pod = (
        client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=oom").items[0]
    )
    assert pod.status.phase == "Failed"
    term = pod.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (137, "OOMKilled")


def test_deleting_job_garbage_collects_pods(cluster: Cluster, api: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job("forever", completions=2, labels={"sim.runyard.dev/outcome": "running"}))
    selector = "batch.kubernetes.io/job-name=forever"
    wait_until(
        lambda: (
            [
                p
                for p in core.list_namespaced_pod(namespace, label_selector=selector).items
                if p.status.phase == "Running"
            ]
            and True
        ),
        what="running pods",
    )
    batch.delete_namespaced_job("forever", namespace, propagation_policy="Background")
    wait_until(
        lambda: not core.list_namespaced_pod(namespace, label_selector=selector).items,
        timeout=60,
        what="pods to be garbage-collected",
    )


def test_too_many_gpus_stays_pending_with_failed_scheduling(api: Any, namespace: str) -> None:
    client.BatchV1Api(api).create_namespaced_job(namespace, job("huge", gpus=16))
    core = client.CoreV1Api(api)

    def failed_scheduling() -> Any:
        events = core.list_namespaced_event(namespace, field_selector="reason=FailedScheduling").items
        return events[0] if events else None

    event = wait_until(failed_scheduling, what="a FailedScheduling event")
    assert "nvidia.com/gpu" in event.message
    pod = core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=huge").items[0]
    assert pod.status.phase == "Pending" and not pod.spec.node_name


def test_token_request_authenticates_and_rbac_authorizes(cluster: Cluster, api: Any, namespace: str) -> None:
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    ctx = ssl.create_default_context(cafile=str(cluster.kubeconfig.parent / "pki" / "ca.crt"))

    def call(path: str) -> int:
        req = urllib.request.Request(cluster.server + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            err.close()
            return err.code

    assert call(f"/api/v1/namespaces/{namespace}/pods") == 200
    assert call(f"/api/v1/namespaces/{namespace}/secrets") == 403
    assert call("/api/v1/nodes") == 403
    bad = urllib.request.Request(cluster.server + "/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, context=ctx, timeout=10)
    err.value.close()
    assert err.value.code == 401


def test_node_can_be_taken_not_ready_and_back(cluster: Cluster, api: Any) -> None:
    core = client.CoreV1Api(api)
    name = "kwok-cpu-1"

    def ready() -> str:
        conds = core.read_node(name).status.conditions
        return str({c.type: c.status for c in conds}["Ready"])

    cluster.kubectl("label", "node", name, "sim.runyard.dev/not-ready=true", "--overwrite")
    try:
        wait_until(lambda: ready() == "False", what="node NotReady")
    finally:
        cluster.kubectl("label", "node", name, "sim.runyard.dev/not-ready-")
    wait_until(lambda: ready() == "True", what="node Ready again")
