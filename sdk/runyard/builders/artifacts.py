"""Artifact volumes, mounts and the S3 sync sidecar of a pod template (pure: `pods.py` calls `build_artifacts`).

Store layout: a run keeps its files under `<store prefix>/<run>/<role>-<index>/`, one directory per rank.

* `pvc://CLAIM/prefix`: the claim is mounted at `spec.artifacts.path` with the sub-path of the rank
  (`subPathExpr`), and the run's directory read-only at RUN_ARTIFACTS_MOUNT so every rank can read any checkpoint.
* `s3://bucket/prefix`: the trainer writes into an emptyDir at `spec.artifacts.path`; a native sidecar (an init
  container with `restartPolicy: Always`) mounts the same emptyDir read-only and runs `runyard.artifacts.sync`.
* no store, `file://` (local runs only): an emptyDir, so a non-root trainer can write the directory.

The operator hands its cluster-wide defaults (store, sidecar image, interval, S3 endpoint and credentials) to
the builders as env entries of `ctx.extra_env` (names in `DEFAULT_ENV`); `spec.artifacts` always wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runyard import constants as c
from runyard.api.v1alpha1 import TrainingRun
from runyard.artifacts.store import StoreURI, rank_name
from runyard.builders.context import BuildContext

ARTIFACTS_VOLUME = "runyard-artifacts"
INDEX_REF = f"$({c.ENV_REPLICA_INDEX})"
# Env names the operator's artifacts plugin uses to pass defaults through `BuildContext.extra_env`.
DEFAULT_ENV = (
    c.ENV_ARTIFACT_STORE,
    c.ENV_ARTIFACT_SYNC_IMAGE,
    c.ENV_ARTIFACT_SYNC_INTERVAL,
    c.ENV_AWS_ENDPOINT_URL,
    c.ENV_AWS_REGION,
)
_CREDENTIAL_ENV = (c.ENV_AWS_ACCESS_KEY_ID, c.ENV_AWS_SECRET_ACCESS_KEY, c.ENV_AWS_SESSION_TOKEN)
SIDECAR_RESOURCES: dict[str, Any] = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}

EnvList = list[dict[str, Any]]


@dataclass(frozen=True)
class ArtifactsPod:
    """The artifact parts of one role's pod template."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # of the trainer container
    env: EnvList = field(default_factory=list)  # added to the trainer's env unless it already has the name
    init_containers: list[dict[str, Any]] = field(default_factory=list)  # go before any other init container
    termination_grace_period_seconds: int | None = None


def _default(ctx: BuildContext, name: str) -> str | None:
    for entry in ctx.extra_env:
        if entry.get("name") == name and entry.get("value"):
            return str(entry["value"])
    return None


def effective_store(run: TrainingRun, ctx: BuildContext) -> str | None:
    """`spec.artifacts.store`, else the operator's default store."""
    return run.spec.artifacts.store or _default(ctx, c.ENV_ARTIFACT_STORE)


def sync_interval(run: TrainingRun, ctx: BuildContext) -> int:
    """Seconds between two sync passes: the spec's, the operator's default, or 30."""
    if run.spec.artifacts.sync_interval_seconds:
        return run.spec.artifacts.sync_interval_seconds
    configured = _default(ctx, c.ENV_ARTIFACT_SYNC_INTERVAL)
    return (
        int(configured)
        if configured and configured.isdigit() and int(configured) > 0
        else c.DEFAULT_ARTIFACT_SYNC_INTERVAL
    )


def rank_store_uri(store: str, run_name: str, role: str, index: int | str = INDEX_REF) -> str:
    """The store URI of one rank's directory; with the default index, the `$(RUNYARD_REPLICA_INDEX)` form."""
    return StoreURI.parse(store).run(run_name).uri(rank_name(role, index))


def add_env(env: EnvList, extra: EnvList) -> EnvList:
    """`env` followed by the entries of `extra` whose names it does not have yet."""
    names = {e.get("name") for e in env}
    return env + [e for e in extra if e.get("name") not in names]


def _var(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def _s3_env(run: TrainingRun, ctx: BuildContext) -> EnvList:
    s3 = run.spec.artifacts.s3
    endpoint = (s3.endpoint if s3 else None) or _default(ctx, c.ENV_AWS_ENDPOINT_URL)
    region = (s3.region if s3 else None) or _default(ctx, c.ENV_AWS_REGION)
    env: EnvList = []
    if endpoint:
        env.append(_var(c.ENV_AWS_ENDPOINT_URL, endpoint))
    if region:
        env.append(_var(c.ENV_AWS_REGION, region))
    return env


def _sidecar(run: TrainingRun, role: str, ctx: BuildContext, store: str) -> dict[str, Any]:
    spec = run.spec.artifacts
    env: EnvList = [
        {
            "name": c.ENV_REPLICA_INDEX,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{c.ANNOTATION_JOB_COMPLETION_INDEX}']"}},
        },
        *_s3_env(run, ctx),
        _var(c.ENV_PYTHONUNBUFFERED, "1"),
        # The root filesystem is read-only: do not even try to write __pycache__.
        _var("PYTHONDONTWRITEBYTECODE", "1"),
    ]
    sidecar: dict[str, Any] = {
        "name": c.ARTIFACT_SYNC_CONTAINER,
        "image": _default(ctx, c.ENV_ARTIFACT_SYNC_IMAGE) or c.DEFAULT_ARTIFACT_SYNC_IMAGE,
        # Native sidecar: starts before the trainer, stops after it, and does not keep the Job from completing.
        "restartPolicy": "Always",
        "command": ["python", "-m", "runyard.artifacts.sync"],
        "args": [
            "--src",
            spec.path,
            "--dest",
            rank_store_uri(store, run.name, role),
            "--interval",
            str(sync_interval(run, ctx)),
        ],
        "env": env,
    }
    if spec.s3 and spec.s3.credentials_secret:
        sidecar["envFrom"] = [{"secretRef": {"name": spec.s3.credentials_secret}}]
    else:
        # The operator's default credentials arrive as secretKeyRef env entries; the sidecar needs them too.
        sidecar["env"] += [dict(e) for e in ctx.extra_env if e.get("name") in _CREDENTIAL_ENV]
    sidecar["resources"] = SIDECAR_RESOURCES
    sidecar["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }
    sidecar["volumeMounts"] = [{"name": ARTIFACTS_VOLUME, "mountPath": spec.path, "readOnly": True}]
    return sidecar


def build_artifacts(run: TrainingRun, role: str, ctx: BuildContext) -> ArtifactsPod:
    """Volumes, trainer mounts and env, and the sync sidecar for `role`'s pods.

    On a gang restart, or replicas recreated after a suspension stopped them, without a known checkpoint
    (`ctx.resume_from` unset: the operator lets the replicas find the newest one, which the stopped replicas'
    sidecars may still be uploading when it reads the store), RUNYARD_RESUME_FROM names the run's directory, which
    `runyard.artifacts.resolve_resume` searches for the newest complete checkpoint.
    """
    spec = run.spec.artifacts
    store = effective_store(run, ctx)
    uri = StoreURI.parse(store) if store else None
    resume_env: EnvList = []
    if uri and uri.scheme == "pvc":
        run_dir = uri.run(run.name).prefix
        if ctx.resumes and not ctx.resume_from:
            resume_env.append(_var(c.ENV_RESUME_FROM, c.RUN_ARTIFACTS_MOUNT))
        return ArtifactsPod(
            volumes=[{"name": ARTIFACTS_VOLUME, "persistentVolumeClaim": {"claimName": uri.location}}],
            mounts=[
                # Per rank, so replicas never overwrite each other's files on a shared claim.
                {
                    "name": ARTIFACTS_VOLUME,
                    "mountPath": spec.path,
                    "subPathExpr": f"{run_dir}/{rank_name(role, INDEX_REF)}",
                },
                {"name": ARTIFACTS_VOLUME, "mountPath": c.RUN_ARTIFACTS_MOUNT, "subPath": run_dir, "readOnly": True},
            ],
            env=resume_env,
        )
    # Non-root containers cannot create the artifact directory themselves; an emptyDir makes it writable.
    volumes: list[dict[str, Any]] = [{"name": ARTIFACTS_VOLUME, "emptyDir": {}}]
    mounts = [{"name": ARTIFACTS_VOLUME, "mountPath": spec.path}]
    if not (uri and uri.scheme == "s3"):
        return ArtifactsPod(volumes=volumes, mounts=mounts)
    assert store is not None
    if ctx.resumes and not ctx.resume_from:
        resume_env.append(_var(c.ENV_RESUME_FROM, uri.run(run.name).uri()))
    return ArtifactsPod(
        volumes=volumes,
        mounts=mounts,
        # The trainer resolves RUNYARD_RESUME_FROM against the same endpoint the sidecar uploads to.
        env=[*_s3_env(run, ctx), *resume_env],
        init_containers=[_sidecar(run, role, ctx, store)],
        termination_grace_period_seconds=c.DEFAULT_ARTIFACT_SYNC_GRACE_SECONDS,
    )
