"""Artifacts on the cluster: the S3 sync sidecar in the Jobs, status.artifacts from manifests, resume, deletion, logs.

kwok pods run nothing, so the store is seeded with the real sync code as if the sidecars had uploaded the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from runyard.artifacts import s3
from runyard.artifacts.sync import Syncer
from runyard.client import Client
from tests.cluster.conftest import Runs, training_run, wait_until
from tests.conftest import Cluster
from tests.unit.artifacts.s3server import S3Server, run_server

pytestmark = pytest.mark.slow

FILES = {
    "node-0/checkpoints/step-000001.pt": b"one",
    "node-0/checkpoints/step-000002.pt": b"two" * 50,
    "node-1/logs/train.log": b"loss=0.1\n",
}


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("s3")
    with run_server(root / "data", root / "versitygw.log") as server:
        yield server


@pytest.fixture
def store(s3_server: S3Server, runs: Runs) -> tuple[S3Server, str]:
    """A fresh bucket, and the credentials Secret the runs name in their namespace."""
    runs.core.create_namespaced_secret(
        runs.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="s3-creds"),
            string_data={"AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key},
        ),
    )
    return s3_server, s3_server.new_bucket()


def seed(server: S3Server, bucket: str, run: str, tmp_path: Path) -> None:
    for path, data in FILES.items():
        target = tmp_path / run / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for rank in ("node-0", "node-1"):
        assert Syncer(tmp_path / run / rank, f"s3://{bucket}/team/{run}/{rank}", server.client()).sync_once()


def s3_training_run(name: str, server: S3Server, bucket: str, **kw: Any) -> dict[str, Any]:
    artifacts = {
        "store": f"s3://{bucket}/team",
        "s3": {"endpoint": server.endpoint, "credentialsSecret": "s3-creds"},
        "syncIntervalSeconds": 5,
        **kw.pop("artifacts", {}),
    }
    return training_run(name, "pytorch", {"node": 2}, artifacts=artifacts, **kw)


def pod_spec(runs: Runs, run: str, attempt: str = "0") -> Any:
    jobs = [j for j in runs.jobs(run) if j.metadata.labels.get("runyard.dev/restart-attempt") == attempt]
    return jobs[0].spec.template.spec if jobs else None


def test_s3_run_gets_sync_sidecar_and_status_artifacts(runs: Runs, store: tuple[S3Server, str], tmp_path: Path) -> None:
    server, bucket = store
    seed(server, bucket, "arts", tmp_path)
    runs.create(s3_training_run("arts", server, bucket))
    spec = wait_until(lambda: pod_spec(runs, "arts"), what="the Job")
    sidecar = spec.init_containers[0]
    assert sidecar.name == "artifact-sync" and sidecar.restart_policy == "Always"
    assert sidecar.command == ["python", "-m", "runyard.artifacts.sync"]
    assert f"s3://{bucket}/team/arts/node-$(RUNYARD_REPLICA_INDEX)" in sidecar.args
    assert (
        sidecar.security_context.read_only_root_filesystem and not sidecar.security_context.allow_privilege_escalation
    )
    assert not sidecar.security_context.privileged
    assert spec.termination_grace_period_seconds >= 60
    assert {v.name for v in spec.volumes if v.empty_dir is not None} >= {"runyard-artifacts"}

    runs.wait_phase("arts", "Succeeded", timeout=90)
    artifacts = wait_until(
        lambda: runs.status("arts").get("artifacts", {}).get("manifest") and runs.status("arts")["artifacts"],
        what="status.artifacts",
    )
    assert artifacts["storeUri"] == f"s3://{bucket}/team/arts"
    assert artifacts["files"] == 3 and artifacts["totalBytes"] == sum(len(d) for d in FILES.values())
    assert artifacts["newestCheckpoint"] == f"s3://{bucket}/team/arts/node-0/checkpoints/step-000002.pt"
    assert artifacts["manifest"] == f"s3://{bucket}/team/arts/manifest.json"
    doc = s3.get_json(server.client(), bucket, "team/arts/manifest.json")
    assert doc is not None
    assert {f["path"]: f["sha256"] for f in doc["files"]} == {
        p: hashlib.sha256(d).hexdigest() for p, d in FILES.items()
    }


def test_gang_restart_resumes_from_newest_checkpoint(runs: Runs, store: tuple[S3Server, str], tmp_path: Path) -> None:
    server, bucket = store
    seed(server, bucket, "again", tmp_path)
    runs.create(
        s3_training_run(
            "again",
            server,
            bucket,
            outcome="fail-first",
            sim={"sim.runyard.dev/exit-code": "137"},
            run_policy={"backoffLimit": 2, "backoffSeconds": 0},
        )
    )
    first = wait_until(lambda: pod_spec(runs, "again", "0"), what="the first Job")
    assert not [e for e in first.containers[0].env if e.name == "RUNYARD_RESUME_FROM"]
    second = wait_until(lambda: pod_spec(runs, "again", "1"), timeout=90, what="the restarted Job")
    env = {e.name: e.value for e in second.containers[0].env}
    # The restarted replicas look for the newest checkpoint themselves, after the old replicas' last upload.
    assert env["RUNYARD_RESUME_FROM"] == f"s3://{bucket}/team/again"
    assert env["AWS_ENDPOINT_URL"] == server.endpoint
    from runyard.artifacts import resolve_resume

    with pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        found = resolve_resume(env["RUNYARD_RESUME_FROM"], tmp_path / "resume")
    assert found is not None and found.name == "step-000002.pt", found
    status = runs.wait_phase("again", "Succeeded", timeout=90)
    assert status["restarts"] == 1


def test_artifacts_survive_deletion_unless_asked(runs: Runs, store: tuple[S3Server, str], tmp_path: Path) -> None:
    server, bucket = store
    seed(server, bucket, "keep", tmp_path)
    seed(server, bucket, "drop", tmp_path)
    runs.create(
        s3_training_run("keep", server, bucket, run_policy={"ttlSecondsAfterFinished": 0, "cleanPodPolicy": "All"})
    )
    runs.create(s3_training_run("drop", server, bucket, artifacts={"deleteOnRunDeletion": True}))
    wait_until(
        lambda: "runyard.dev/finalizer" in (runs.get("drop")["metadata"].get("finalizers") or []), what="finalizer"
    )
    runs.wait_phase("drop", "Succeeded", timeout=90)
    runs.delete("drop")

    def gone(name: str) -> bool:
        try:
            runs.get(name)
        except client.ApiException as err:
            return bool(err.status == 404)
        return False

    wait_until(lambda: gone("drop"), timeout=60, what="drop to be deleted")
    assert list(s3.list_objects(server.client(), bucket, "team/drop/")) == []
    # TTL deletion and cleanPodPolicy All never touch the store.
    wait_until(lambda: gone("keep"), timeout=90, what="keep to be deleted by its TTL")
    keys = {o.key for o in s3.list_objects(server.client(), bucket, "team/keep/")}
    assert {f"team/keep/{p}" for p in FILES} <= keys


def test_logs_are_archived_per_attempt_and_read_back_after_the_pods_are_gone(
    cluster: Cluster, runs: Runs, store: tuple[S3Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kwok nodes run no kubelet, so the API server answers pods/log with an error: every rank's archive entry says
    so, the status and a Warning Event surface it, and `logs` shows it per rank once cleanPodPolicy took the pods."""
    server, bucket = store
    runs.create(
        s3_training_run(
            "logged",
            server,
            bucket,
            outcome="fail-first",
            sim={"sim.runyard.dev/exit-code": "137"},
            run_policy={"backoffLimit": 1, "backoffSeconds": 0, "cleanPodPolicy": "All"},
        )
    )
    status = runs.wait_phase("logged", "Succeeded", timeout=120)
    assert status["restarts"] == 1
    logs = status["artifacts"]["logs"]
    assert logs["uri"] == f"s3://{bucket}/team/logged/logs" and logs["attempts"] == [0, 1], logs
    assert logs["message"].startswith("attempt 1: node-0: not read: "), logs
    # One per archived attempt.
    wait_until(
        lambda: [e.reason for e in runs.events("logged")].count("LogArchiveIncomplete") >= 2,
        timeout=30,
        what="a LogArchiveIncomplete event per attempt",
    )
    for attempt in (0, 1):
        index = s3.get_json(server.client(), bucket, f"team/logged/logs/attempt-{attempt}/index.json")
        assert index is not None and [r["rank"] for r in index["ranks"]] == ["node-0", "node-1"], index
        assert all(r["error"].startswith("not read: ") and r["pod"] for r in index["ranks"]), index

    wait_until(lambda: not runs.pods("logged"), timeout=60, what="cleanPodPolicy All to delete the pods")
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    sdk = Client(kubeconfig=cluster.kubeconfig, namespace=runs.namespace)
    for attempt in (None, 0):
        lines = list(sdk.logs("logged", attempt=attempt))
        assert [line.prefix for line in lines] == ["[node-0]", "[node-1]"], lines
        shown = 1 if attempt is None else 0
        assert all(
            line.notice and line.text.startswith(f"no archived log of attempt {shown}: not read: ") for line in lines
        ), lines
