"""The env of a replica: Runyard's own variables, its framework's contract, injected env, then the user's."""

from __future__ import annotations

from typing import Any

from runyard import constants as c
from runyard import frameworks, trackers
from runyard.api.v1alpha1 import TrainingRun, TrainingRunSpec
from runyard.builders.addressing import Addressing
from runyard.builders.context import BuildContext

EnvList = list[dict[str, Any]]


def _var(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def primary_role(spec: TrainingRunSpec) -> str:
    """The role whose replica 0 coordinates the run (its framework profile decides)."""
    return frameworks.of(spec).primary_role(spec)


def total_replicas(spec: TrainingRunSpec) -> int:
    """Pods of the run over all roles."""
    return sum(r.replicas for r in spec.replicas.values())


def framework_env(run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> EnvList:
    """Only the framework's contract variables (PET_*, TF_CONFIG, JAX_*, MPI launcher settings...)."""
    return frameworks.of(run.spec).env(run, role, index, addressing)


def build_env(
    run: TrainingRun,
    role: str,
    index: int | None,
    addressing: Addressing,
    ctx: BuildContext | None = None,
) -> EnvList:
    """The complete env of one replica, as Kubernetes EnvVar dicts.

    `index=None` renders the pod-template form: RUNYARD_REPLICA_INDEX comes from the Indexed Job's
    completion-index annotation and is the first entry, so later values can use `$(RUNYARD_REPLICA_INDEX)`.
    An int renders literal values for a local process. Order: Runyard variables, framework contract,
    `ctx.extra_env`, then `spec.env` (which may override `extra_env`, never the reserved names before it).
    """
    spec = run.spec
    if role not in spec.replicas:
        raise ValueError(f"run {run.name} has no role {role!r}; roles: {', '.join(frameworks.roles_of(spec))}")
    ctx = ctx or BuildContext()
    env: EnvList
    if index is None:
        env = [
            _field(c.ENV_REPLICA_INDEX, f"metadata.annotations['{c.ANNOTATION_JOB_COMPLETION_INDEX}']"),
            _field(c.ENV_POD_NAME, "metadata.name"),
            _field(c.ENV_NODE_NAME, "spec.nodeName"),
            _field(c.ENV_NAMESPACE, "metadata.namespace"),
        ]
    else:
        env = [_var(c.ENV_REPLICA_INDEX, index)]
        if run.metadata.namespace:
            env.append(_var(c.ENV_NAMESPACE, run.metadata.namespace))
    env.append(_var(c.ENV_RUN_NAME, run.name))
    if run.metadata.uid:
        env.append(_var(c.ENV_RUN_UID, run.metadata.uid))
    env += [
        _var(c.ENV_ROLE, role),
        _var(c.ENV_FRAMEWORK, spec.framework),
        _var(c.ENV_RESTART_ATTEMPT, ctx.restart_attempt),
        _var(c.ENV_NUM_REPLICAS, total_replicas(spec)),
        _var(c.ENV_RUN_COORDINATOR, addressing.host(primary_role(spec), 0)),
        _var(c.ENV_ARTIFACT_DIR, spec.artifacts.path),
    ]
    env += [_var(name, value) for name, value in trackers.base_env(run).items()]
    if ctx.resume_from:
        env.append(_var(c.ENV_RESUME_FROM, ctx.resume_from))
    env += framework_env(run, role, index, addressing)
    user = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env or ()]
    user_names = {e["name"] for e in user}
    if c.ENV_PYTHONUNBUFFERED not in user_names:
        env.append(_var(c.ENV_PYTHONUNBUFFERED, "1"))
    env += [dict(e) for e in ctx.extra_env if e.get("name") not in user_names]
    return env + user
