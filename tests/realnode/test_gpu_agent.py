"""The GPU node agent as a DaemonSet pod on the real node, reading the real kubelet's PodResources socket.

The node has no GPU: NVML is down, but the PodResources List call must succeed and list the node's real pods. The
DaemonSet is operator/deploy/gpu-agent-daemonset.yaml with the local image, placement and kubelet directory.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from runyard_operator.gpu.podresources import PodResourcesClient
from tests.conftest import ROOT, Cluster, localcluster
from tests.operator_fixtures import wait_until
from tests.realnode.conftest import ON_REAL_NODE, RUNYARD_IMAGE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def agent_manifests(namespace: str, pod_resources_dir: str) -> list[dict[str, Any]]:
    docs = list(yaml.safe_load_all((ROOT / "operator" / "deploy" / "gpu-agent-daemonset.yaml").read_text()))
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        if doc["kind"] == "DaemonSet":
            spec = doc["spec"]["template"]["spec"]
            spec.pop("runtimeClassName")  # no NVIDIA runtime on this node
            spec.update(copy.deepcopy(ON_REAL_NODE))
            spec["containers"][0]["image"] = RUNYARD_IMAGE
            spec["volumes"][0]["hostPath"]["path"] = pod_resources_dir
        out.append(doc)
    return out


def metric(page: str, name: str) -> float:
    for line in page.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the agent's page:\n{page}")


def test_agent_pod_lists_the_real_pods_through_podresources(cluster: Cluster, namespace: str, real_node: str) -> None:
    node = localcluster.realnode.NodePaths(localcluster.STATE_DIR, localcluster.CACHE)
    socket_dir = str(node.podresources_socket.parent)
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1",
                                                           "items": agent_manifests(namespace, socket_dir)}))  # fmt: skip

    def agent_pod() -> str:
        res = cluster.kubectl(
            "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=runyard-gpu-agent",
            "-o", "jsonpath={range .items[?(@.status.phase=='Running')]}{.metadata.name}{end}",
        )  # fmt: skip
        return res.stdout.strip()

    pod = wait_until(agent_pod, timeout=120, what="the agent pod Running")

    def page() -> str:
        res = cluster.kubectl(
            "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:9400/proxy/metrics", check=False
        )
        return res.stdout if res.returncode == 0 and "runyard_gpu_agent_pods" in res.stdout else ""

    text = wait_until(page, timeout=60, what="the agent's metrics page")
    assert metric(text, "runyard_gpu_agent_nvml_up") == 0  # no GPU here
    assert metric(text, "runyard_gpu_agent_podresources_errors_total") == 0
    listed = metric(text, "runyard_gpu_agent_pods")

    # The same API from the host: the agent's own pod is among the kubelet's pods, and the counts agree.
    response = PodResourcesClient(str(node.podresources_socket)).list()
    pods = {(p.namespace, p.name) for p in response.pod_resources}
    assert (namespace, pod) in pods, pods
    assert listed >= 1 and abs(listed - len(pods)) <= 2, (listed, pods)
