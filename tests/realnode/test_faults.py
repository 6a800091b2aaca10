"""Real faults on the real node: a rank killed mid-training (whose logs of both attempts outlive their pods), a hung
collective that stalls the run and restarts it from its checkpoint, a container over its memory limit, an image that does not exist, and an image that runs as root under the default
(restricted) security context."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Cluster
from tests.operator_fixtures import Runs, wait_until
from tests.realnode.conftest import ON_REAL_NODE, apply, load_manifest, pod_diagnostics, runyard_cli, wait_finished
from tests.unit.artifacts.s3server import S3Server

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
    cluster: Cluster, rruns: Runs, mlflow_real: str, s3_real: S3Server
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

    # Logs outlive the pods: every rank's log of both attempts was archived to the run's store, and once the Jobs (and
    # with them the pods) are deleted `runyard logs` reads the archive, saying so, with the user's AWS environment.
    assert status["artifacts"]["logs"]["attempts"] == [0, 1], status["artifacts"]
    assert "message" not in status["artifacts"]["logs"], status["artifacts"]
    rruns.batch.delete_collection_namespaced_job(
        rruns.namespace, label_selector="runyard.dev/run-name=ddp-kill", propagation_policy="Foreground"
    )
    wait_until(lambda: not rruns.pods("ddp-kill"), timeout=180, what="the run's pods to be deleted")
    archived = runyard_cli(cluster, "logs", "ddp-kill", "-n", rruns.namespace, env=s3_real.env())
    assert archived.returncode == 0, archived.stderr
    for line in ("[node-0] rank 0: epoch 5/5", "[node-1] rank 1: epoch 5/5", "[node-0] rank 0: resumed from"):
        assert line in archived.stdout, f"archived logs lack {line!r}:\n{archived.stdout[-3000:]}"
    assert "[node-0] pod gone: attempt 1's log from the archive s3://" in archived.stderr, archived.stderr
    first = runyard_cli(cluster, "logs", "ddp-kill", "--attempt", "0", "-n", rruns.namespace, env=s3_real.env())
    assert first.returncode == 0, first.stderr
    for line in ("[node-1] rank 1: fault drill, SIGKILL at the start of epoch 3", "[node-0] rank 0: epoch 2/5"):
        assert line in first.stdout, f"attempt 0's archived logs lack {line!r}:\n{first.stdout[-3000:]}"
    assert "epoch 5/5" not in first.stdout


def test_hung_collective_stalls_the_run_and_restart_on_stall_resumes_it_from_the_checkpoint(
    cluster: Cluster, rruns: Runs, mlflow_real: str, s3_real: S3Server
) -> None:
    """The NCCL-hang case with real processes: the last rank hangs at epoch 3, rank 0 waits for it in its all-reduce,
    both go silent while their pods run; Stalled restarts the gang, which resumes from epoch 2's checkpoint."""
    manifest = load_manifest("pytorch-ddp.yaml", rruns.namespace)
    manifest["metadata"]["name"] = "ddp-hang"
    spec = manifest["spec"]
    spec["env"].append({"name": "RUNYARD_EXAMPLE_HANG_AT_EPOCH", "value": "3"})
    # A hung rank ignores SIGTERM (its flag is never read): a short grace period gets the restart going sooner.
    spec["runPolicy"] = {
        "backoffLimit": 1, "backoffSeconds": 0, "stallTimeoutSeconds": 30, "restartOnStall": True,
        "stopGracePeriodSeconds": 5,
    }  # fmt: skip
    apply(cluster, manifest)
    status = wait_finished(rruns, "ddp-hang", timeout=600)
    assert status["phase"] == "Succeeded", f"{status}\n{pod_diagnostics(rruns, 'ddp-hang')}"
    assert status["restarts"] == 1, status
    failure = status["failure"]
    # Where and why: the ranks that went silent, their pods and node, and how long they were silent.
    assert failure["category"] == "Stalled" and failure["reason"] == "Stalled", failure
    assert failure["pod"].startswith("ddp-hang-node-") and failure["node"], failure
    assert "no progress report for 30s" in failure["message"], failure
    described = runyard_cli(cluster, "describe", "ddp-hang", "-n", rruns.namespace).stdout
    assert "Stalled" in described and failure["pod"] in described, described

    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri=mlflow_real).get_metric_history(status["tracking"]["mlflow"]["runId"], "epoch")
    epochs = [m.value for m in sorted(history, key=lambda m: (m.timestamp, m.step))]
    assert epochs == [1.0, 2.0, 3.0, 4.0, 5.0], epochs  # resumed after epoch 2: nothing trained twice
    first = runyard_cli(cluster, "logs", "ddp-hang", "--attempt", "0", "-n", rruns.namespace, env=s3_real.env())
    assert "[node-1] rank 1: fault drill, hanging at the start of epoch 3" in first.stdout, first.stdout[-3000:]
    assert "[node-0] rank 0: resumed from" in runyard_cli(cluster, "logs", "ddp-hang", "-n", rruns.namespace).stdout


def test_container_over_its_memory_limit_is_oomkilled(cluster: Cluster, rruns: Runs) -> None:
    hog = "print('allocating 512 MiB', flush=True); data = b'x' * (512 * 2**20); print(len(data))"
    apply(cluster, generic_run("oom", rruns.namespace, ["python", "-c", hog]))
    status = wait_finished(rruns, "oom", timeout=180)
    assert status["phase"] == "Failed", status
    failure = status["failure"]
    assert failure["reason"] == "OOMKilled" and failure["exitCode"] == 137, failure
    assert status["conditions"], status
    # Triage: the category, where it ran, and the end of its log (read from the real kubelet, once).
    assert failure["category"] == "OOMKilled" and failure["node"] and failure["rank"] == 0, failure
    assert "allocating 512 MiB" in failure.get("logTail", ""), failure


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
    assert status["failure"]["category"] == "ImagePull" and "logTail" not in status["failure"], status
    assert "startTimeoutSeconds=20" in status["failure"]["message"], status


def test_root_image_under_the_default_security_context_names_the_reason(cluster: Cluster, rruns: Runs) -> None:
    manifest = generic_run("as-root", rruns.namespace, ["true"], image="localhost/runyard/debian:dev")
    manifest["spec"]["runPolicy"]["startTimeoutSeconds"] = 15
    apply(cluster, manifest)
    status = wait_finished(rruns, "as-root", timeout=120)
    assert status["phase"] == "Failed", status
    failure = status["failure"]
    assert failure["reason"] == "CreateContainerConfigError" and failure["category"] == "Config", failure
    assert "runAsNonRoot" in failure["message"] and "root" in failure["message"], failure
