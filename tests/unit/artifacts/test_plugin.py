"""ArtifactsPlugin against a real S3 server: defaults, resume on restart, status.artifacts, MLflow, deletion.

The plugin never calls the API: status.artifacts goes back through hooks and contributions, which the controller writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from runyard import constants as c
from runyard.artifacts import s3
from runyard.artifacts.sync import Syncer
from runyard.builders import BuildContext, build_pod_template
from runyard.validation import parse_run
from runyard_operator.artifacts.plugin import MLFLOW_TAG_URI, ArtifactsPlugin
from runyard_operator.config import OperatorConfig
from tests.unit.artifacts.s3server import S3Server
from tests.unit.factories import manifest


class NoKube:
    """The plugin reads no Secret and writes no status: any API call fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the artifacts plugin called Kube.{name}")


@pytest.fixture(autouse=True)
def operator_credentials(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator reaches the store with its own environment's credentials, as in its Deployment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)


def plugin_for(
    server: S3Server, artifacts: dict[str, Any] | None = None, mlflow_uri: str | None = None
) -> ArtifactsPlugin:
    config = OperatorConfig.model_validate({"artifacts": artifacts or {}})
    plugin = ArtifactsPlugin.from_config(config)
    assert plugin is not None
    plugin.mlflow_uri = mlflow_uri
    return plugin


def s3_run(server: S3Server, bucket: str, name: str = "r1", **artifacts: Any) -> Any:
    spec = {
        "framework": "pytorch",
        "replicas": {"node": {"replicas": 2}},
        "artifacts": {
            "store": f"s3://{bucket}/team",
            "s3": {"endpoint": server.endpoint, "credentialsSecret": "s3-creds"},
            **artifacts,
        },
    }
    return parse_run(manifest(name, spec))


def seed(server: S3Server, bucket: str, tmp_path: Path, run: str = "r1") -> dict[str, bytes]:
    """Upload two ranks' files with the real sync code, as the sidecars would have."""
    files = {
        "node-0/checkpoints/step-000001.pt": b"one",
        "node-0/checkpoints/step-000002/model.bin": b"two" * 100,
        "node-0/checkpoints/step-000002/_COMPLETE": b"",
        "node-1/metrics.json": b'{"acc": 0.9}',
    }
    for path, data in files.items():
        target = tmp_path / run / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for rank in ("node-0", "node-1"):
        assert Syncer(tmp_path / run / rank, f"s3://{bucket}/team/{run}/{rank}", server.client()).sync_once()
    return files


def test_restart_resumes_from_newest_checkpoint_and_finish_writes_manifest(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    plugin = plugin_for(s3_server)
    run = s3_run(s3_server, bucket)
    files = seed(s3_server, bucket, tmp_path)
    first = asyncio.run(plugin.prepare(run, {"phase": "Pending"}))
    # The first attempt never resumes (a deleted run of the same name may have left files behind).
    assert first.status == {"artifacts": {"storeUri": f"s3://{bucket}/team/r1"}}
    restart = asyncio.run(plugin.prepare(run, {"phase": "Restarting", "restarts": 1, **first.status}))
    artifacts = restart.status["artifacts"]
    assert artifacts["newestCheckpoint"] == f"s3://{bucket}/team/r1/node-0/checkpoints/step-000002"
    # status.lastCheckpoint and status.resumedFrom name it, with its step and the digest of its files.
    last = restart.status["lastCheckpoint"]
    assert (last["uri"], last["step"], last["attempt"]) == (artifacts["newestCheckpoint"], 2, 1)
    assert len(last["sha256"]) == 64 and last["bytes"] > 0 and last["time"]
    resumed = restart.status["resumedFrom"]
    assert (resumed["attempt"], resumed["step"], resumed["uri"]) == (1, 2, last["uri"])
    # Replicas a suspension stopped resume the same way, in the same attempt.
    stopped = {"phase": "Suspended", "restarts": 0, "stopped": {"attempt": 0, "reason": "Preempted"}}
    replaced = asyncio.run(plugin.prepare(run, stopped | first.status))
    assert replaced.status["resumedFrom"]["attempt"] == 0 and replaced.status["resumedFrom"]["step"] == 2
    assert artifacts["files"] == 4 and artifacts["totalBytes"] == sum(len(d) for d in files.values())
    # The controller passes newestCheckpoint as BuildContext.resume_from: the new pods get it.
    template = build_pod_template(
        run, "node", BuildContext(restart_attempt=1, resume_from=artifacts["newestCheckpoint"])
    )
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
    assert env[c.ENV_RESUME_FROM] == artifacts["newestCheckpoint"]

    finished = asyncio.run(plugin.finished(run, {"phase": "Succeeded", "restarts": 1, **restart.status}))
    assert finished["lastCheckpoint"]["step"] == 2 and finished["lastCheckpoint"]["attempt"] == 1
    done = finished["artifacts"]
    assert done["manifest"] == f"s3://{bucket}/team/r1/manifest.json"
    assert done["storeUri"] == f"s3://{bucket}/team/r1" and done["files"] == 4
    doc = s3.get_json(s3_server.client(), bucket, "team/r1/manifest.json")
    assert doc is not None and doc["run"] == "r1"
    for entry in doc["files"]:
        assert entry["sha256"] == hashlib.sha256(files[entry["path"]]).hexdigest()
        assert entry["rank"] == entry["path"].split("/")[0]
        body = s3_server.client().get_object(Bucket=bucket, Key=f"team/r1/{entry['path']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]


def test_store_trouble_never_fails_the_reconcile(s3_server: S3Server, bucket: str) -> None:
    plugin = plugin_for(s3_server)
    run = s3_run(s3_server, bucket)
    run.spec.artifacts.s3.endpoint = "http://127.0.0.1:9"  # nothing listens there
    prepared = asyncio.run(plugin.prepare(run, {"restarts": 1, "artifacts": {"newestCheckpoint": "s3://x/old"}}))
    # The previously known checkpoint is kept rather than forgotten.
    assert prepared.status["artifacts"]["newestCheckpoint"] == "s3://x/old"
    assert asyncio.run(plugin.finished(run, {}))["artifacts"] == {"storeUri": f"s3://{bucket}/team/r1"}


def test_delete_only_when_asked_and_only_that_run(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    plugin = plugin_for(s3_server)
    seed(s3_server, bucket, tmp_path, "r1")
    seed(s3_server, bucket, tmp_path, "r10")
    keep = s3_run(s3_server, bucket)
    assert not plugin.needs_finalizer(keep)
    asyncio.run(plugin.deleted(keep, {}))
    assert len(list(s3.list_objects(s3_server.client(), bucket, "team/r1/"))) == 6
    drop = s3_run(s3_server, bucket, deleteOnRunDeletion=True)
    assert plugin.needs_finalizer(drop)
    asyncio.run(plugin.deleted(drop, {}))
    assert list(s3.list_objects(s3_server.client(), bucket, "team/r1/")) == []
    assert len(list(s3.list_objects(s3_server.client(), bucket, "team/r10/"))) == 6
    pvc = parse_run(
        manifest(
            "p",
            {
                "framework": "pytorch",
                "replicas": {"node": {}},
                "artifacts": {"store": "pvc://c/x", "deleteOnRunDeletion": True},
            },
        )
    )
    assert not plugin.needs_finalizer(pvc)


def test_cluster_defaults_reach_the_pod_template(s3_server: S3Server) -> None:
    plugin = plugin_for(
        s3_server,
        {
            "defaultStore": "s3://cluster-bucket/runs",
            "s3": {"endpoint": "http://s3.storage:9000", "region": "eu-1", "credentialsSecret": "default-s3"},
            "syncIntervalSeconds": 15,
            "sidecarImage": "registry.local/runyard/artifact-sync:1.2.3",
        },
    )
    run = parse_run(manifest("r2", {"framework": "pytorch", "replicas": {"node": {}}}))
    prepared = asyncio.run(plugin.prepare(run, {}))
    assert prepared.status["artifacts"]["storeUri"] == "s3://cluster-bucket/runs/r2"
    pod = build_pod_template(run, "node", BuildContext(extra_env=tuple(prepared.env)))["spec"]
    sidecar = pod["initContainers"][0]
    assert sidecar["image"] == "registry.local/runyard/artifact-sync:1.2.3"
    assert sidecar["args"][3:] == ["s3://cluster-bucket/runs/r2/node-$(RUNYARD_REPLICA_INDEX)", "--interval", "15"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in sidecar["env"]}
    assert env["AWS_ENDPOINT_URL"] == "http://s3.storage:9000" and env["AWS_REGION"] == "eu-1"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "default-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    # Runs without any store (and no default) are left alone.
    bare = plugin_for(s3_server)
    assert asyncio.run(bare.prepare(run, {})).env == []
    assert asyncio.run(bare.finished(run, {})) == {}
    assert ArtifactsPlugin.from_config(OperatorConfig.model_validate({"artifacts": {"enabled": False}})) is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_manifest_and_location_logged_to_mlflow(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("artifacts", artifact_location=(tmp_path / "mlartifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    plugin = plugin_for(s3_server, mlflow_uri=uri)
    seed(s3_server, bucket, tmp_path)
    status = {"tracking": {"mlflow": {"runId": run_id}}}
    asyncio.run(plugin.finished(s3_run(s3_server, bucket), status))
    tags = client.get_run(run_id).data.tags
    assert tags[MLFLOW_TAG_URI] == f"s3://{bucket}/team/r1"
    assert tags["runyard.artifacts.newest_checkpoint"].endswith("node-0/checkpoints/step-000002")
    logged = json.loads(Path(client.download_artifacts(run_id, "runyard/manifest.json", str(tmp_path))).read_text())
    assert len(logged["files"]) == 4


def test_failed_run_is_summarised_again_after_the_last_final_sync(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """A run that failed while other ranks were still stopping: their final passes land after finished()."""
    from types import SimpleNamespace

    from runyard_operator.plugins import PluginContext

    plugin = plugin_for(s3_server)
    plugin.settle_poll_seconds = 0.05
    pods = [SimpleNamespace(phase="Running")]
    woken: list[tuple[str, str]] = []
    plugin.ctx = PluginContext(kube=NoKube(), runs=list, pods_of=lambda uid: pods, reconcile=woken.append)  # type: ignore[arg-type,return-value]
    run = s3_run(s3_server, bucket)
    seed(s3_server, bucket, tmp_path)

    async def scenario() -> dict[str, Any]:
        first = await plugin.finished(run, {"phase": "Failed"})
        late = tmp_path / "late" / "checkpoints" / "step-000009.pt"
        late.parent.mkdir(parents=True)
        late.write_bytes(b"nine")
        sidecar = Syncer(tmp_path / "late", f"s3://{bucket}/team/r1/node-1", s3_server.client())
        sidecar.load_remote_manifest()  # as the real sidecar does when it starts
        assert sidecar.sync_once()
        pods[0] = SimpleNamespace(phase="Failed")
        await asyncio.wait_for(asyncio.gather(*plugin._tasks), timeout=30)
        return first

    first = asyncio.run(scenario())
    assert first["artifacts"]["files"] == 4
    # The late summary is a contribution for the controller's next write, which it wakes.
    pending = plugin.ctx.status.pending(str(run.metadata.uid))
    assert pending is not None and woken == [(run.metadata.namespace, "r1")]
    artifacts = pending.apply({"artifacts": first["artifacts"]})["artifacts"]
    assert artifacts["files"] == 5 and artifacts["storeUri"] == f"s3://{bucket}/team/r1"
    assert artifacts["newestCheckpoint"] == f"s3://{bucket}/team/r1/node-1/checkpoints/step-000009.pt"
