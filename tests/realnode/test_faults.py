"""Real faults on the real node: a rank killed mid-training, a container over its memory limit, an image that does
not exist, and an image that runs as root under the default (restricted) security context."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Cluster
from tests.operator_fixtures import Runs, wait_until
from tests.realnode.conftest import ON_REAL_NODE, apply, load_manifest, pod_diagnostics, runyard_cli, wait_finished

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


def generic_run(name: str, namespace: str, command: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runyard.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "framework": "generic",
            "image": "localhost/runyard/examples:dev",
            "command": command,
            "replicas": {"node": {"replicas": 1, "resources": {"cpu": "250m", "memory": "128Mi"}}},
            "runPolicy": {"backoffLimit": 0},
            **ON_REAL_NODE,
            **spec,
        },
    }


def test_killed_rank_restarts_the_gang_from_the_newest_checkpoint(
    cluster: Cluster, rruns: Runs, mlflow_real: str
) -> None:
    manifest = load_manifest("pytorch-ddp.yaml", rruns.namespace)
    manifest["metadata"]["name"] = "ddp-kill"
    spec = manifest["spec"]
    spec["env"].append({"name": "RUNYARD_EXAMPLE_KILL_AT_EPOCH", "value": "3"})
    spec["runPolicy"] = {"backoffLimit": 1, "backoffSeconds": 0}
    apply(cluster, manifest)
    status = wait_finished(rruns, "ddp-kill", timeout=600)
    assert status["phase"] == "Succeeded", f"{status}\n{pod_diagnostics(rruns, 'ddp-kill')}"
    assert status["restarts"] == 1, status
    # torchrun exits 1 whatever killed its worker; its error file says SIGKILL, so the restart policy saw 137.
    failure = status["failure"]
    assert failure["exitCode"] == 137 and failure["index"] == 1, failure
    assert "signal 9" in failure["message"], failure

    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri=mlflow_real).get_metric_history(status["tracking"]["mlflow"]["runId"], "epoch")
    # Epochs 1-2 ran before the kill; the restart resumed from the newest checkpoint the old replicas stored (epoch 2
    # unless the kill beat its upload), so epoch 1 is never trained again and the curve never goes back.
    epochs = [m.value for m in sorted(history, key=lambda m: (m.timestamp, m.step))]
    assert epochs.count(1.0) == 1 and epochs == sorted(epochs) and epochs[-1] == 5.0, epochs
    logs = runyard_cli(cluster, "logs", "ddp-kill", "-n", rruns.namespace)
    assert "resumed from" in logs.stdout, logs.stdout[-3000:]


def test_container_over_its_memory_limit_is_oomkilled(cluster: Cluster, rruns: Runs) -> None:
    hog = "data = b'x' * (512 * 2**20); print(len(data))"
    apply(cluster, generic_run("oom", rruns.namespace, ["python", "-c", hog]))
    status = wait_finished(rruns, "oom", timeout=180)
    assert status["phase"] == "Failed", status
    failure = status["failure"]
    assert failure["reason"] == "OOMKilled" and failure["exitCode"] == 137, failure
    assert status["conditions"], status


def test_missing_image_fails_after_the_start_timeout(cluster: Cluster, rruns: Runs) -> None:
    manifest = generic_run("no-image", rruns.namespace, ["true"], image="localhost/runyard/does-not-exist:dev")
    manifest["spec"]["runPolicy"]["startTimeoutSeconds"] = 20
    apply(cluster, manifest)
    pending = wait_until(
        lambda: (
            (s := rruns.status("no-image")).get("phase") == "Pending"
            and any(r in (s.get("message") or "") for r in ("ErrImagePull", "ImagePullBackOff"))
            and s
        ),
        timeout=90,
        what="Pending with the image pull error in the message",
    )
    assert "does-not-exist" in pending["message"], pending
    status = wait_finished(rruns, "no-image", timeout=120)
    assert status["phase"] == "Failed", status
    assert status["failure"]["reason"] in ("ErrImagePull", "ImagePullBackOff"), status
    assert "startTimeoutSeconds=20" in status["failure"]["message"], status


def test_root_image_under_the_default_security_context_names_the_reason(cluster: Cluster, rruns: Runs) -> None:
    manifest = generic_run("as-root", rruns.namespace, ["true"], image="localhost/runyard/debian:dev")
    manifest["spec"]["runPolicy"]["startTimeoutSeconds"] = 15
    apply(cluster, manifest)
    status = wait_finished(rruns, "as-root", timeout=120)
    assert status["phase"] == "Failed", status
    failure = status["failure"]
    assert failure["reason"] == "CreateContainerConfigError", failure
    assert "runAsNonRoot" in failure["message"] and "root" in failure["message"], failure
