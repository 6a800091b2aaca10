"""The platform team's path: `helm install` runs the operator itself in a real pod on the real node.

The pod runs the runyard image (built from the same sources as operator/Dockerfile), talks to the API server through
the `kubernetes` Service with only the chart's ServiceAccount, reconciles a real run end to end, and `helm test`
passes against it. The session's operator is paused, and the run's Events name the pod as their reporter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.e2e.conftest import Release, create_namespace, delete_namespace, short_id
from tests.operator_fixtures import Runs, session_operator_paused
from tests.realnode.conftest import ON_REAL_NODE, RUNYARD_IMAGE, apply, load_manifest, pod_diagnostics, wait_finished

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _set_values(prefix: str, value: Any) -> list[str]:
    return ["--set-json", f"{prefix}={json.dumps(value)}"]


@pytest.fixture
def release(cluster: Cluster, api: Any, crd: None, helm_bin: Path, real_node: str) -> Iterator[Release]:
    namespace = create_namespace(api, "runyard-system")
    release = Release(cluster, f"ry{short_id()}", namespace)
    repository, tag = RUNYARD_IMAGE.rsplit(":", 1)
    flags = [
        "--set", "crds.enabled=false",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "operator.logFormat=plain",
        "--set", f"tests.image.repository={repository}", "--set", f"tests.image.tag={tag}",
        *_set_values("nodeSelector", ON_REAL_NODE["nodeSelector"]),
        *_set_values("tolerations", ON_REAL_NODE["tolerations"]),
        *_set_values("tests.nodeSelector", ON_REAL_NODE["nodeSelector"]),
        *_set_values("tests.tolerations", ON_REAL_NODE["tolerations"]),
        "--wait", "--timeout=180s",
    ]  # fmt: skip
    with session_operator_paused():
        try:
            release.install(*flags)
            yield release
        finally:
            release.uninstall()
            delete_namespace(api, namespace)


def test_operator_pod_reconciles_a_real_run_and_helm_test_passes(
    cluster: Cluster, api: Any, release: Release, namespace: str, real_node: str
) -> None:
    pods = cluster.kubectl(
        "get", "pods", "-n", release.namespace, "-l", "app.kubernetes.io/component=operator", "-o", "json"
    )  # fmt: skip
    (pod,) = json.loads(pods.stdout)["items"]
    assert pod["spec"]["nodeName"] == real_node and pod["status"]["phase"] == "Running", pod["status"]
    assert pod["spec"]["serviceAccountName"] == release.service_account

    runs = Runs(api, namespace)
    manifest = load_manifest("generic.yaml", namespace)
    apply(cluster, manifest)
    status = wait_finished(runs, "generic", timeout=240)
    assert status["phase"] == "Succeeded", f"{status}\n{pod_diagnostics(runs, 'generic')}"
    reporters = {e.reporting_instance for e in runs.wait_events("generic")}
    assert pod["metadata"]["name"] in reporters, reporters

    tested = release.helm("test", release.name, "--timeout=120s", check=False)
    assert tested.returncode == 0, f"{tested.stdout}\n{tested.stderr}"
    assert "Phase:          Succeeded" in tested.stdout, tested.stdout
    logs = cluster.kubectl("logs", "-n", release.namespace, pod["metadata"]["name"], check=False).stdout
    assert "is forbidden" not in logs, logs[-3000:]
