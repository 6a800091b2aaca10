"""Pod templates with artifact stores: the native sync sidecar for s3://, per-rank PVC sub-paths, resume env."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from runyard import constants as c
from runyard.builders import BuildContext, build_children, build_pod_template
from runyard.validation import parse_run
from tests.unit.factories import CTX, manifest

S3_ARTIFACTS = {
    "store": "s3://ml-artifacts/team-a",
    "s3": {"endpoint": "http://minio.storage:9000", "region": "eu-west-1", "credentialsSecret": "s3-creds"},
    "syncIntervalSeconds": 10,
}


def run_with(artifacts: dict[str, Any] | None = None, framework: str = "pytorch", **spec: Any) -> Any:
    replicas = {"launcher": {}, "worker": {"replicas": 2}} if framework == "mpi" else {"node": {"replicas": 2}}
    body: dict[str, Any] = {"framework": framework, "command": ["python", "train.py"], "replicas": replicas, **spec}
    if artifacts is not None:
        body["artifacts"] = artifacts
    return parse_run(manifest("r1", body))


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_s3_store_gets_native_sidecar_sharing_an_empty_dir() -> None:
    pod = build_pod_template(run_with(S3_ARTIFACTS), "node", CTX)["spec"]
    sidecar = pod["initContainers"][0]
    trainer = pod["containers"][0]
    assert sidecar["name"] == c.ARTIFACT_SYNC_CONTAINER
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == c.DEFAULT_ARTIFACT_SYNC_IMAGE
    assert sidecar["command"] == ["python", "-m", "runyard.artifacts.sync"]
    assert sidecar["args"] == [
        "--src",
        "/runyard/artifacts",
        "--dest",
        "s3://ml-artifacts/team-a/r1/node-$(RUNYARD_REPLICA_INDEX)",
        "--interval",
        "10",
    ]
    env = env_of(sidecar)
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000" and env["AWS_REGION"] == "eu-west-1"
    assert "fieldRef" in env[c.ENV_REPLICA_INDEX]
    assert sidecar["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    # Restricted: no privilege, read-only root, read-only view of the trainer's files.
    assert sidecar["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    assert sidecar["volumeMounts"] == [
        {"name": "runyard-artifacts", "mountPath": "/runyard/artifacts", "readOnly": True}
    ]
    assert {"name": "runyard-artifacts", "emptyDir": {}} in pod["volumes"]
    assert {"name": "runyard-artifacts", "mountPath": "/runyard/artifacts"} in trainer["volumeMounts"]
    assert "privileged" not in str(pod)
    assert pod["terminationGracePeriodSeconds"] == c.DEFAULT_ARTIFACT_SYNC_GRACE_SECONDS
    trainer_env = env_of(trainer)
    assert trainer_env[c.ENV_ARTIFACT_DIR] == "/runyard/artifacts"
    assert trainer_env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert c.ENV_RESUME_FROM not in trainer_env


def test_sidecar_goes_before_the_mpi_launchers_wait_container() -> None:
    run = run_with(S3_ARTIFACTS, framework="mpi")
    names = [ic["name"] for ic in build_pod_template(run, "launcher", CTX)["spec"]["initContainers"]]
    assert names == [c.ARTIFACT_SYNC_CONTAINER, "wait-for-workers"]


def test_no_store_means_no_sidecar_and_unchanged_grace() -> None:
    pod = build_pod_template(run_with(), "node", CTX)["spec"]
    assert "initContainers" not in pod and "terminationGracePeriodSeconds" not in pod
    assert {"name": "runyard-artifacts", "emptyDir": {}} in pod["volumes"]


def test_pvc_store_mounts_rank_sub_path_and_run_dir_read_only() -> None:
    pod = build_pod_template(run_with({"store": "pvc://ckpts/runs"}), "node", CTX)["spec"]
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "runyard-artifacts"]
    assert mounts == [
        {
            "name": "runyard-artifacts",
            "mountPath": "/runyard/artifacts",
            "subPathExpr": "runs/r1/node-$(RUNYARD_REPLICA_INDEX)",
        },
        {"name": "runyard-artifacts", "mountPath": c.RUN_ARTIFACTS_MOUNT, "subPath": "runs/r1", "readOnly": True},
    ]
    assert {"name": "runyard-artifacts", "persistentVolumeClaim": {"claimName": "ckpts"}} in pod["volumes"]
    assert "initContainers" not in pod


def test_restart_resume_env() -> None:
    # The operator knows the checkpoint: it is passed as is (env.py), the builder adds nothing.
    known = BuildContext(restart_attempt=1, resume_from="s3://ml-artifacts/team-a/r1/node-0/checkpoints/step-9.pt")
    env = env_of(build_pod_template(run_with(S3_ARTIFACTS), "node", known)["spec"]["containers"][0])
    assert env[c.ENV_RESUME_FROM] == known.resume_from
    # Unknown (store unreadable by the operator, or a PVC): the run's directory, searched by resolve_resume.
    env = env_of(
        build_pod_template(run_with(S3_ARTIFACTS), "node", BuildContext(restart_attempt=1))["spec"]["containers"][0]
    )
    assert env[c.ENV_RESUME_FROM] == "s3://ml-artifacts/team-a/r1"
    pvc = run_with({"store": "pvc://ckpts/runs"})
    env = env_of(build_pod_template(pvc, "node", BuildContext(restart_attempt=2))["spec"]["containers"][0])
    assert env[c.ENV_RESUME_FROM] == c.RUN_ARTIFACTS_MOUNT
    env = env_of(build_pod_template(pvc, "node", BuildContext())["spec"]["containers"][0])
    assert c.ENV_RESUME_FROM not in env
    # Replicas replacing ones a suspension or preemption stopped resume too, in the same attempt.
    for run in (run_with(S3_ARTIFACTS), pvc):
        env = env_of(build_pod_template(run, "node", BuildContext(resuming=True))["spec"]["containers"][0])
        assert env[c.ENV_RESUME_FROM] in ("s3://ml-artifacts/team-a/r1", c.RUN_ARTIFACTS_MOUNT)
        assert env[c.ENV_RESTART_ATTEMPT] == "0"


def test_operator_defaults_arrive_through_extra_env_and_spec_wins() -> None:
    defaults = BuildContext(
        extra_env=(
            {"name": c.ENV_ARTIFACT_STORE, "value": "s3://cluster-default/runs"},
            {"name": c.ENV_ARTIFACT_SYNC_IMAGE, "value": "registry.local/sync:1"},
            {"name": c.ENV_ARTIFACT_SYNC_INTERVAL, "value": "45"},
            {"name": "AWS_ENDPOINT_URL", "value": "http://s3.cluster:9000"},
            {
                "name": "AWS_ACCESS_KEY_ID",
                "valueFrom": {"secretKeyRef": {"name": "default-s3", "key": "AWS_ACCESS_KEY_ID"}},
            },
        )
    )
    pod = build_pod_template(run_with(), "node", defaults)["spec"]
    sidecar = pod["initContainers"][0]
    assert sidecar["image"] == "registry.local/sync:1"
    assert sidecar["args"][3:] == ["s3://cluster-default/runs/r1/node-$(RUNYARD_REPLICA_INDEX)", "--interval", "45"]
    env = env_of(sidecar)
    assert env["AWS_ENDPOINT_URL"] == "http://s3.cluster:9000"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "default-s3", "key": "AWS_ACCESS_KEY_ID"}}
    # No duplicate env names in the trainer although both the defaults and the builder provide the endpoint.
    names = [e["name"] for e in pod["containers"][0]["env"]]
    assert len(names) == len(set(names))
    pod = build_pod_template(run_with(S3_ARTIFACTS), "node", defaults)["spec"]
    assert pod["initContainers"][0]["args"][3] == "s3://ml-artifacts/team-a/r1/node-$(RUNYARD_REPLICA_INDEX)"
    assert pod["initContainers"][0]["args"][5] == "10"


def test_every_job_of_a_tensorflow_run_gets_its_role_in_the_rank_path() -> None:
    run = parse_run(
        manifest(
            "tf",
            {
                "framework": "tensorflow",
                "replicas": {"chief": {}, "worker": {"replicas": 2}},
                "artifacts": S3_ARTIFACTS,
            },
        )
    )
    dests = {
        obj["metadata"]["name"]: obj["spec"]["template"]["spec"]["initContainers"][0]["args"][3]
        for obj in build_children(run, CTX)
        if obj["kind"] == "Job"
    }
    assert dests == {
        "tf-chief": "s3://ml-artifacts/team-a/tf/chief-$(RUNYARD_REPLICA_INDEX)",
        "tf-worker": "s3://ml-artifacts/team-a/tf/worker-$(RUNYARD_REPLICA_INDEX)",
    }


# boto3 and what it needs; the sidecar image installs exactly these besides runyard.
_BOTO3_CLOSURE = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "certifi"}


def test_import_boundaries() -> None:
    """Builders stay free of boto3; the sidecar module needs nothing beyond the standard library and boto3."""
    builders = "import sys, runyard.builders\nassert 'boto3' not in sys.modules, 'builders imported boto3'\n"
    subprocess.run([sys.executable, "-c", builders], check=True)
    sidecar = (
        "import sys, runyard.artifacts.sync\n"
        "top = {m.split('.')[0] for m in sys.modules if not m.startswith('_')}\n"
        f"extra = top - set(sys.stdlib_module_names) - {{'runyard'}} - set({sorted(_BOTO3_CLOSURE)!r})\n"
        "assert not extra, extra\n"
    )
    subprocess.run([sys.executable, "-c", sidecar], check=True)
