"""Tracking end to end: a real `mlflow server`, the operator on the local cluster, two ranks as local processes.

kwok pods never run code, so the ranks are plain local processes started with the env the operator rendered into
the Job's pod template (resolved here the way the kubelet would for indexes 0 and 1).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from runyard import constants as c
from tests.cluster.conftest import OperatorProcess, Runs, training_run, wait_until
from tests.conftest import Cluster
from tests.mlflow_server import run_mlflow_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

RANK_MAIN = Path(__file__).resolve().parent.parent / "unit" / "tracking" / "rank_main.py"
SECRET_VALUE = f"S3cret-{uuid.uuid4().hex}"
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture(scope="module")
def tracking_operator(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    crd: None,
    mlflow_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """An operator with tracking configured; the session's plain operator is paused so only one reconciles."""
    plain: OperatorProcess = request.getfixturevalue("operator")
    plain.stop()
    log_dir = tmp_path_factory.mktemp("tracking-operator")
    config = {
        "tracking": {
            "mlflow": {
                "trackingUri": mlflow_server,
                "username": {"name": "mlflow-creds", "key": "username"},
                "password": {"name": "mlflow-creds", "key": "password"},
                "systemMetrics": True,
            },
            "sweepIntervalSeconds": 2,
        }
    }
    path = log_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = OperatorProcess(cluster.kubeconfig, log_dir, extra_args=["--config", str(path)])
    proc.start()
    yield proc
    proc.stop()
    plain.start()


@pytest.fixture
def truns(api: Any, namespace: str, tracking_operator: OperatorProcess) -> Runs:
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="mlflow-creds"),
            string_data={"username": "trainer", "password": SECRET_VALUE},
        ),
    )
    return Runs(api, namespace)


def _mlflow(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def resolve_env(runs: Runs, name: str, index: int) -> dict[str, str]:
    """The env the kubelet would give pod `index` of the run's `node` Job: fieldRefs, secrets, $(VAR), last wins."""
    job = runs.batch.read_namespaced_job(f"{name}-node", runs.namespace)
    container = job.spec.template.spec.containers[0]
    fields = {
        f"metadata.annotations['{c.ANNOTATION_JOB_COMPLETION_INDEX}']": str(index),
        "metadata.name": f"{name}-node-{index}",
        "metadata.namespace": runs.namespace,
        "metadata.uid": f"pod-uid-{index}",
        "spec.nodeName": f"kwok-gpu-{index}",
        "status.podIP": f"10.0.0.{index + 1}",
    }
    env: dict[str, str] = {}
    for var in container.env:
        if var.value_from is not None:
            source = var.value_from
            if source.field_ref is not None:
                env[var.name] = fields[source.field_ref.field_path]
            elif source.secret_key_ref is not None:
                ref = source.secret_key_ref
                secret = runs.core.read_namespaced_secret(ref.name, runs.namespace)
                env[var.name] = base64.b64decode(secret.data[ref.key]).decode()
            continue
        env[var.name] = _REF.sub(lambda m: env.get(m.group(1), m.group(0)), var.value or "")
    return env


def start_ranks(runs: Runs, name: str, workdir: Path) -> list[subprocess.Popen[str]]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RUNYARD_", "WANDB_", "COMET_"))}
    procs = []
    for i in (0, 1):
        env = resolve_env(runs, name, i)
        assert env[c.ENV_MLFLOW_SYSTEM_METRICS_NODE_ID] == f"node-{i}"
        procs.append(
            subprocess.Popen(
                [sys.executable, str(RANK_MAIN)],
                env={
                    **keep,
                    **env,
                    "RANK_TMP": str(workdir),
                    "RANK_SLEEP": "3",
                    "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1",
                    "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING": "1",
                },
                cwd=workdir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def wait_ranks(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out


def runs_of(uri: str, namespace: str, uid: str) -> list[Any]:
    mlf = _mlflow(uri)
    experiment = mlf.get_experiment_by_name(namespace)
    assert experiment is not None
    return list(mlf.search_runs([experiment.experiment_id], filter_string=f"tags.`{c.TAG_TRAININGRUN_UID}` = '{uid}'"))


def test_one_mlflow_run_across_ranks_and_operator_restart(
    truns: Runs, tracking_operator: OperatorProcess, mlflow_server: str, tmp_path: Path
) -> None:
    body = training_run(
        "tracked",
        "pytorch",
        {"node": 2},
        gpus=1,
        sim={"sim.runyard.dev/duration": "40s"},
        tracking={"params": {"lr": "0.001"}, "tags": {"team": "vision"}},
    )
    body["metadata"]["annotations"] = {c.ANNOTATION_GIT_COMMIT: "abc123", c.ANNOTATION_GIT_REPO: "https://git/x"}
    created = truns.create(body)
    uid = created["metadata"]["uid"]
    status = wait_until(
        lambda: (
            (s := truns.status("tracked")).get("phase") == "Running" and (s.get("tracking") or {}).get("mlflow") and s
        ),
        timeout=90,
        what="Running with an MLflow run",
    )
    run_id = status["tracking"]["mlflow"]["runId"]
    exp_id = status["tracking"]["mlflow"]["experimentId"]
    assert status["tracking"]["url"] == f"{mlflow_server}/#/experiments/{exp_id}/runs/{run_id}"
    assert c.FINALIZER in truns.get("tracked")["metadata"]["finalizers"]

    # Credentials reach pods only as secretKeyRef.
    job = truns.batch.read_namespaced_job("tracked-node", truns.namespace)
    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    assert env[c.ENV_MLFLOW_TRACKING_PASSWORD].value is None
    assert env[c.ENV_MLFLOW_TRACKING_PASSWORD].value_from.secret_key_ref.name == "mlflow-creds"
    assert env[c.ENV_MLFLOW_RUN_ID].value == run_id

    # The operator dies while the run is Running; the ranks log meanwhile; a new operator finishes the job.
    tracking_operator.kill()
    procs = start_ranks(truns, "tracked", tmp_path)
    tracking_operator.start()
    wait_ranks(procs)
    truns.wait_phase("tracked", "Succeeded", timeout=120)
    wait_until(
        lambda: _mlflow(mlflow_server).get_run(run_id).info.status == "FINISHED", timeout=60, what="MLflow FINISHED"
    )

    found = runs_of(mlflow_server, truns.namespace, uid)
    assert [r.info.run_id for r in found] == [run_id]
    run = _mlflow(mlflow_server).get_run(run_id)
    assert {"rank_marker/node-0", "rank_marker/node-1"} <= set(run.data.metrics)
    assert any(k.startswith("system/node-0/") for k in run.data.metrics), sorted(run.data.metrics)
    assert run.data.params == {"lr": "0.001"}
    tags = run.data.tags
    assert tags[c.TAG_K8S_NAMESPACE] == truns.namespace and tags[c.TAG_K8S_RUN_NAME] == "tracked"
    assert tags[c.TAG_K8S_RUN_UID] == uid and tags[c.TAG_K8S_FRAMEWORK] == "pytorch"
    assert tags[c.TAG_K8S_IMAGE] == body["spec"]["image"] and tags[c.TAG_K8S_REPLICAS] == "node=2"
    assert tags[c.TAG_K8S_GPUS_PER_REPLICA] == "node=1"
    assert tags[c.TAG_MLFLOW_GIT_COMMIT] == "abc123" and tags[c.TAG_MLFLOW_GIT_REPO] == "https://git/x"
    assert tags["team"] == "vision" and tags["mlflow.runName"] == "tracked"
    wait_until(
        lambda: c.TAG_K8S_NODES in _mlflow(mlflow_server).get_run(run_id).data.tags, timeout=30, what="node tags"
    )
    artifacts = {a.path for a in _mlflow(mlflow_server).list_artifacts(run_id, "ranks")}
    assert artifacts == {"ranks/node-0.txt", "ranks/node-1.txt"}

    # No secret value anywhere the operator writes.
    everything = json.dumps(truns.get("tracked")) + json.dumps(
        [e.to_dict() for e in truns.events("tracked")], default=str
    )
    assert SECRET_VALUE not in everything
    assert SECRET_VALUE not in tracking_operator.logs()


def test_delete_mid_run_kills_the_mlflow_run(truns: Runs, mlflow_server: str, cluster: Cluster) -> None:
    created = truns.create(training_run("doomed", "pytorch", {"node": 2}, outcome="running"))
    status = wait_until(
        lambda: (
            (s := truns.status("doomed")).get("phase") == "Running" and (s.get("tracking") or {}).get("mlflow") and s
        ),
        timeout=90,
        what="Running with an MLflow run",
    )
    run_id = status["tracking"]["mlflow"]["runId"]
    table = cluster.kubectl("get", "trainingruns.runyard.dev", "-n", truns.namespace, "-o", "wide").stdout
    assert run_id in table  # the URL column shows status.tracking.url
    truns.delete("doomed")

    def gone() -> bool:
        try:
            truns.get("doomed")
        except client.ApiException as err:
            return bool(err.status == 404)
        return False

    wait_until(gone, timeout=60, what="TrainingRun deleted (finalizer released)")
    assert _mlflow(mlflow_server).get_run(run_id).info.status == "KILLED"
    assert len(runs_of(mlflow_server, truns.namespace, created["metadata"]["uid"])) == 1
