"""Fixtures for tests that run code in real pods on the local cluster's real node.

The pods reach the host at the node's bridge gateway, so the tracking server and the S3 store listen there; one
operator, configured with both (and the runyard image as the artifact sidecar), serves the module's tests while the
session's plain operator is paused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from runyard.constants import PROGRESS_PATH
from tests.conftest import ROOT, Cluster, localcluster
from tests.e2e.conftest import helm_bin  # noqa: F401  (a fixture, re-exported for the chart test here)
from tests.mlflow_server import run_mlflow_server
from tests.operator_fixtures import (
    OPERATOR_S3_ENV,
    OperatorProcess,
    Runs,
    free_port,
    session_operator_paused,
    wait_until,
)
from tests.unit.artifacts.s3server import S3Server, run_server

realnode = localcluster.realnode
GATEWAY = realnode.GATEWAY
RUNYARD_IMAGE = "localhost/runyard/runyard:dev"
EXAMPLES_IMAGE = "localhost/runyard/examples:dev"
S3_SECRET = "s3-creds"
# Placement of a pod on the real node (the examples carry the same two fields).
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {realnode.NODE_LABEL: "true"},
    "tolerations": [{"key": realnode.NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
}


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> str:
    if not cluster.real_node:
        pytest.fail("the cluster has no real node: run the tests as root with REAL_NODES=1 (see hack/realnode.py)")
    return realnode.NODE_NAME


@pytest.fixture(scope="session")
def mlflow_real(real_node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_mlflow_server(tmp_path_factory.mktemp("mlflow-real"), host=GATEWAY) as uri:
        yield uri


@pytest.fixture(scope="session")
def s3_real(real_node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("s3-real")
    with run_server(root / "data", root / "versitygw.log", host=GATEWAY) as server:
        yield server


@pytest.fixture(scope="session")
def real_bucket(s3_real: S3Server) -> str:
    return s3_real.new_bucket()


def operator_config(mlflow_uri: str, s3: S3Server, bucket: str, progress_port: int) -> dict[str, Any]:
    return {
        "tracking": {"mlflow": {"trackingUri": mlflow_uri}},
        # Pods reach the operator (a host process here) at the bridge gateway, as they reach MLflow and S3.
        "progress": {
            "url": f"http://{GATEWAY}:{progress_port}{PROGRESS_PATH}",
            "port": progress_port,
            "reportIntervalSeconds": 2,
            "writeIntervalSeconds": 5,
        },
        "artifacts": {
            "defaultStore": f"s3://{bucket}/runs",
            "s3": {"endpoint": s3.endpoint, "region": "us-east-1", "credentialsSecret": S3_SECRET},
            "sidecarImage": RUNYARD_IMAGE,
            "syncIntervalSeconds": 5,
        },
    }


@pytest.fixture(scope="module")
def real_operator(
    cluster: Cluster,
    crd: None,
    mlflow_real: str,
    s3_real: S3Server,
    real_bucket: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    log_dir = tmp_path_factory.mktemp("real-operator")
    path = log_dir / "config.yaml"
    path.write_text(yaml.safe_dump(operator_config(mlflow_real, s3_real, real_bucket, free_port())))
    with session_operator_paused():
        proc = OperatorProcess(cluster.kubeconfig, log_dir, extra_args=["--config", str(path)], env=OPERATOR_S3_ENV)
        proc.start()
        yield proc
        proc.stop()


@pytest.fixture
def rruns(api: Any, namespace: str, real_operator: OperatorProcess, s3_real: S3Server) -> Runs:
    """Runs in a fresh namespace holding the S3 credentials Secret the operator's config names."""
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=S3_SECRET),
            string_data={"AWS_ACCESS_KEY_ID": s3_real.access_key, "AWS_SECRET_ACCESS_KEY": s3_real.secret_key},
        ),
    )
    return Runs(api, namespace)


def load_manifest(name: str, namespace: str) -> dict[str, Any]:
    manifest = dict(yaml.safe_load((ROOT / "examples" / name).read_text()))
    manifest["metadata"]["namespace"] = namespace
    return manifest


def apply(cluster: Cluster, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def _cli(cluster: Cluster) -> tuple[list[str], dict[str, str]]:
    return [str(Path(sys.executable).parent / "runyard")], {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}


def runyard_cli(
    cluster: Cluster, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `runyard` CLI as a user runs it, against the local cluster (with `env` added, e.g. AWS_* for the store)."""
    exe, base = _cli(cluster)
    return subprocess.run([*exe, *args], env=base | (env or {}), capture_output=True, text=True, timeout=timeout)


def runyard_popen(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    """The CLI started in the background (e.g. `logs -f`), stdout and stderr together."""
    exe, env = _cli(cluster)
    return subprocess.Popen([*exe, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_finished(runs: Runs, name: str, timeout: float = 420) -> dict[str, Any]:
    """The run's status once it is Succeeded or Failed (real pods: images start, torch imports, ranks train)."""
    return runs.wait_phase(name, "Succeeded", "Failed", timeout=timeout)


def pod_diagnostics(runs: Runs, name: str) -> str:
    """What the pods and their containers say, for assertion messages."""
    lines = []
    for pod in runs.pods(name):
        statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
        states = "; ".join(f"{s.name}: {s.state}" for s in statuses)
        lines.append(f"{pod.metadata.name} {pod.status.phase} on {pod.spec.node_name}: {states}")
    return "\n".join(lines)


__all__ = [
    "ON_REAL_NODE",
    "apply",
    "load_manifest",
    "pod_diagnostics",
    "runyard_cli",
    "runyard_popen",
    "wait_finished",
    "wait_until",
]
