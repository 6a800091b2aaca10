"""Every example TrainingRun runs for real on the real node and reaches Succeeded, as `kubectl apply` runs it.

For each example: one MLflow run holds every rank's metrics (the server listens where the pods reach it), `runyard
logs` and `runyard logs -f` show every rank's real output, the artifact sidecar stores each rank's files in the S3
store with a manifest whose sha256 sums match the stored bytes, and `runyard describe` lists the pods' node and IP.
TensorFlow is not in the examples image (tensorflow-cpu installs ~1.5 GB and imports in ~8 s per process, see
examples/tensorflow/README.md); its manifest stays covered by the builder and golden tests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.operator_fixtures import Runs, wait_until
from tests.realnode.conftest import apply, load_manifest, pod_diagnostics, runyard_cli, runyard_popen, wait_finished
from tests.unit.artifacts.s3server import S3Server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


@dataclass(frozen=True)
class Example:
    """What one example must leave behind."""

    file: str
    metrics: tuple[str, ...]
    log_lines: tuple[str, ...]
    artifacts: tuple[str, ...]
    # status.progress at the end: its percent when the code set a total, else only that a step > 0 was reported.
    progress: int | None = None


EXAMPLES = [
    Example(
        "pytorch-ddp.yaml",
        ("loss", "val_accuracy", "rank_0/loss", "rank_1/loss"),
        ("[node-0] rank 0: epoch 5/5", "[node-1] rank 1: epoch 5/5"),
        ("node-0/model.pt", "node-0/checkpoints/step-000115.pt"),  # 5 epochs of 23 steps per rank
        progress=100,  # runyard.report_progress(step, total) from every rank
    ),
    Example(
        "mpi-allreduce.yaml",
        ("rank_0/allreduce_ms", "rank_1/allreduce_ms", "rank_0/ok", "rank_1/ok"),
        (
            "rank 0/2 of run mpi-allreduce on mpi-allreduce-worker-0",
            "rank 1/2 of run mpi-allreduce on mpi-allreduce-worker-1",
            "allreduce over 2 ranks: ok",
        ),
        ("worker-0/rank-0.json", "worker-1/rank-1.json"),
    ),
    Example(
        "jax-multiprocess.yaml",
        ("process_0/loss", "process_1/loss"),
        ("[node-0] process 0/2: step 99", "[node-1] process 1/2: step 99"),
        ("node-0/weights-0.json", "node-1/weights-1.json"),
    ),
    Example(
        "xgboost.yaml",
        ("valid_merror", "valid_mlogloss", "rank_0/round_seconds", "rank_1/round_seconds"),
        ("[node-0] rank 0: 30 rounds", "[node-1] rank 1: 30 rounds", "matches rank 0"),
        ("node-0/model.json", "node-0/rank-0.json", "node-1/rank-1.json"),
    ),
    Example(
        "deepspeed.yaml",
        ("loss", "val_accuracy", "rank_0/loss", "rank_1/loss"),
        # mpirun on the launcher forwards every rank's output into the launcher's log.
        ("[launcher-0] rank 0: weights agree across 2 ranks", "[launcher-0] rank 1: weights agree across 2 ranks"),
        ("worker-0/model.pt",),
    ),
    Example(
        "generic.yaml",
        ("replica_0/hello", "replica_1/hello", "replica_2/hello"),
        ("[node-0] replica 0 of 3 of run generic", "[node-1] replica 1 of 3", "[node-2] replica 2 of 3"),
        ("node-0/hello-0.txt", "node-1/hello-1.txt", "node-2/hello-2.txt"),
    ),
]


def _mlflow_metrics(uri: str, run_id: str) -> dict[str, float]:
    from mlflow import MlflowClient

    return dict(MlflowClient(tracking_uri=uri).get_run(run_id).data.metrics)


def _stored_manifest(s3: S3Server, store_uri: str) -> dict[str, Any]:
    bucket, _, prefix = store_uri.removeprefix("s3://").partition("/")
    body = s3.client().get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read()
    return dict(json.loads(body))


def _check_manifest(s3: S3Server, store_uri: str, want: tuple[str, ...]) -> None:
    manifest = _stored_manifest(s3, store_uri)
    bucket, _, prefix = store_uri.removeprefix("s3://").partition("/")
    files = {f["path"]: f for f in manifest["files"]}
    assert set(want) <= set(files), f"manifest lacks {set(want) - set(files)}: {sorted(files)}"
    for path, entry in files.items():
        data = s3.client().get_object(Bucket=bucket, Key=f"{prefix}/{path}")["Body"].read()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{path}: stored bytes differ from the manifest"
        assert len(data) == entry["size"], path


@pytest.mark.parametrize("example", EXAMPLES, ids=[Path(e.file).stem for e in EXAMPLES])
def test_example_runs_for_real(
    example: Example, cluster: Cluster, rruns: Runs, mlflow_real: str, s3_real: S3Server, real_node: str
) -> None:
    manifest = load_manifest(example.file, rruns.namespace)
    name = manifest["metadata"]["name"]
    apply(cluster, manifest)
    # Followed from the start: `logs -f` waits for the pods, streams every replica and ends with the run.
    follow = runyard_popen(cluster, "logs", name, "-f", "-n", rruns.namespace)
    try:
        status = wait_finished(rruns, name)
        followed, _ = follow.communicate(timeout=120)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert status["phase"] == "Succeeded", f"{status}\n{pod_diagnostics(rruns, name)}"

    if example.progress is not None:
        # Every rank reported to the operator through its pod-bound token; the end carries the last step.
        progress = status.get("progress") or {}
        assert progress.get("percent") == example.progress, status
        assert progress.get("reportingRanks") == 2 and progress.get("attempt") == 0, progress

    metrics = _mlflow_metrics(mlflow_real, status["tracking"]["mlflow"]["runId"])
    assert set(example.metrics) <= set(metrics), f"missing {set(example.metrics) - set(metrics)}: {sorted(metrics)}"

    logs = runyard_cli(cluster, "logs", name, "-n", rruns.namespace)
    assert logs.returncode == 0, logs.stderr
    for line in example.log_lines:
        assert line in logs.stdout, f"`runyard logs` lacks {line!r}:\n{logs.stdout[-3000:]}"
        assert line in followed, f"`runyard logs -f` lacks {line!r}:\n{followed[-3000:]}"

    # Replicas still running at the end (MPI workers) are stopped after it; their sidecars' last upload, and the
    # operator's summary of it, follow within seconds.
    artifacts = wait_until(
        lambda: (a := rruns.status(name).get("artifacts") or {}).get("files", 0) >= len(example.artifacts) and a,
        timeout=90,
        what="every rank's artifacts in the status",
    )
    _check_manifest(s3_real, artifacts["storeUri"], example.artifacts)

    described = runyard_cli(cluster, "describe", name, "-n", rruns.namespace)
    assert described.returncode == 0, described.stderr
    pods = [p for p in rruns.pods(name) if p.status.pod_ip]
    assert pods
    for pod in pods:
        assert pod.spec.node_name == real_node
        assert pod.metadata.name in described.stdout and pod.status.pod_ip in described.stdout, described.stdout
    assert real_node in described.stdout


def test_template_example_runs_for_real(cluster: Cluster, rruns: Runs, mlflow_real: str, real_node: str) -> None:
    """examples/templates/: a run that names its template gets the image, node, env and policy from it."""
    apply(cluster, load_manifest("templates/local-real-node.yaml", rruns.namespace))
    manifest = load_manifest("templates/generic-from-template.yaml", rruns.namespace)
    apply(cluster, manifest)
    status = wait_finished(rruns, "generic-templated")
    assert status["phase"] == "Succeeded", f"{status}\n{pod_diagnostics(rruns, 'generic-templated')}"
    assert status["template"]["name"] == "local-real-node"
    assert {p.spec.node_name for p in rruns.pods("generic-templated")} == {real_node}
    logs = runyard_cli(cluster, "logs", "generic-templated", "-n", rruns.namespace)
    assert "replica 1: hello from the template" in logs.stdout, logs.stdout[-2000:]
    table = cluster.kubectl("get", "tr", "generic-templated", "-n", rruns.namespace).stdout
    assert "local-real-node" in table
