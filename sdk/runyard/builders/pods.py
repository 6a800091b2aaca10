"""Pod templates of a run's roles: container, env, resources, volumes, security context, user overrides."""

from __future__ import annotations

import copy
from typing import Any

from runyard import constants as c
from runyard.api.v1alpha1 import Framework, MPISpec, TrainingRun
from runyard.builders.addressing import KubernetesAddressing
from runyard.builders.artifacts import add_env, build_artifacts
from runyard.builders.context import BuildContext
from runyard.builders.env import build_env
from runyard.builders.launch import wrap_command
from runyard.builders.meta import namespace_of, role_labels
from runyard.builders.mpi import (
    hostfile_mount,
    hostfile_volume,
    ssh_mounts,
    ssh_volumes,
    sshd_script,
    wait_for_workers_script,
)
from runyard.builders.names import service_name

SHM_VOLUME = "runyard-shm"


def merge_pod_template(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge `override` into `base`: maps recursively, lists of named items by name, other lists replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = merge_pod_template(current, value)
        elif isinstance(current, list) and isinstance(value, list) and _named(current) and _named(value):
            by_name = {item["name"]: i for i, item in enumerate(current)}
            result = list(current)
            for item in value:
                if item["name"] in by_name:
                    result[by_name[item["name"]]] = merge_pod_template(result[by_name[item["name"]]], item)
                else:
                    result.append(copy.deepcopy(item))
            merged[key] = result
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def _resources(run: TrainingRun, role: str) -> dict[str, Any]:
    res = run.spec.replicas[role].resources
    requests: dict[str, str] = {}
    if res.cpu is not None:
        requests["cpu"] = res.cpu
    if res.memory is not None:
        requests["memory"] = res.memory
    limits = dict(requests)
    if res.gpus:
        limits[c.GPU_RESOURCE] = str(res.gpus)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _pod_security(run: TrainingRun) -> dict[str, Any]:
    opts = run.spec.security_context
    security: dict[str, Any] = {
        "runAsNonRoot": opts.run_as_non_root if opts else True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if opts:
        for key, value in (
            ("runAsUser", opts.run_as_user),
            ("runAsGroup", opts.run_as_group),
            ("fsGroup", opts.fs_group),
        ):
            if value is not None:
                security[key] = value
    return security


def _container_security(run: TrainingRun) -> dict[str, Any]:
    opts = run.spec.security_context
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": bool(opts and opts.read_only_root_filesystem),
    }


def _tolerations(run: TrainingRun) -> list[dict[str, Any]]:
    """The spec's tolerations, plus a bounded stay on a NotReady/unreachable node (then eviction, then a restart).

    Without it the DefaultTolerationSeconds admission plugin gives 300 s, during which a gang whose node is gone
    still shows Running.
    """
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in run.spec.tolerations or ()]
    own = {t.get("key") for t in tolerations}
    for key in c.NODE_LOST_TAINTS:
        if key not in own and None not in own:
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": c.DEFAULT_NODE_LOST_SECONDS,
                }
            )
    return tolerations


def _env_from(run: TrainingRun) -> list[dict[str, Any]]:
    spec = run.spec
    env_from = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env_from or ()]
    s3 = spec.artifacts.s3
    if s3 and s3.credentials_secret:
        env_from.append({"secretRef": {"name": s3.credentials_secret}})
    return env_from


def build_pod_template(run: TrainingRun, role: str, ctx: BuildContext) -> dict[str, Any]:
    """The PodTemplateSpec of `role`'s Indexed Job, with `spec.podTemplate` merged over it."""
    spec = run.spec
    replica = spec.replicas[role]
    addressing = KubernetesAddressing(run.name, namespace_of(run), ctx.cluster_domain)
    is_mpi = spec.framework is Framework.MPI
    mpi = spec.mpi or MPISpec()
    port = spec.default_port()

    container: dict[str, Any] = {"name": c.CONTAINER_NAME, "image": replica.image or spec.image}
    command = replica.command if replica.command is not None else spec.command
    args = replica.args if replica.args is not None else spec.args
    torchrun = False
    if is_mpi and role == c.ROLE_WORKER and replica.command is None:
        # MPI workers only host the ranks mpirun starts over SSH.
        command, args = ["/bin/sh", "-c", sshd_script(mpi.ssh_port)], None
    else:
        launched = wrap_command(spec.framework, command, args)
        torchrun = launched != (command, args)
        command, args = launched
    if command is not None:
        container["command"] = list(command)
    if args is not None:
        container["args"] = list(args)
    artifacts = build_artifacts(run, role, ctx)
    container["env"] = add_env(build_env(run, role, None, addressing, ctx), artifacts.env)
    if torchrun and not any(e["name"] == c.ENV_TORCHELASTIC_ERROR_FILE for e in container["env"]):
        container["env"].append({"name": c.ENV_TORCHELASTIC_ERROR_FILE, "value": c.TERMINATION_LOG_PATH})
    env_from = _env_from(run)
    if env_from:
        container["envFrom"] = env_from
    if not (is_mpi and role == c.ROLE_LAUNCHER):
        port_name = "ssh" if is_mpi else "rendezvous"
        container["ports"] = [{"name": port_name, "containerPort": port, "protocol": "TCP"}]
    if is_mpi and role == c.ROLE_WORKER:
        container["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 5}
    resources = _resources(run, role)
    if resources:
        container["resources"] = resources
    container["securityContext"] = _container_security(run)
    # A crash without a termination message still leaves its reason in the status: the log's last lines.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"

    volumes: list[dict[str, Any]] = list(artifacts.volumes)
    mounts: list[dict[str, Any]] = list(artifacts.mounts)
    if replica.resources.shared_memory is not None:
        volumes.append(
            {
                "name": SHM_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": replica.resources.shared_memory},
            }
        )
        mounts.append({"name": SHM_VOLUME, "mountPath": c.SHM_MOUNT})
    init_containers: list[dict[str, Any]] = list(artifacts.init_containers)
    if is_mpi:
        volumes += ssh_volumes(run, ctx)
        mounts += ssh_mounts()
        if role == c.ROLE_LAUNCHER:
            volumes.append(hostfile_volume(run))
            mounts.append(hostfile_mount())
            init_containers.append(
                {
                    "name": "wait-for-workers",
                    "image": container["image"],
                    "command": [
                        "/bin/sh",
                        "-c",
                        wait_for_workers_script(run, ctx, mpi, c.DEFAULT_MPI_WAIT_SECONDS),
                    ],
                    "securityContext": _container_security(run),
                    "volumeMounts": ssh_mounts(),
                }
            )
    volumes += list(spec.volumes or ())
    mounts += [m.model_dump(by_alias=True, exclude_none=True) for m in spec.volume_mounts or ()]
    container["volumeMounts"] = mounts

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "subdomain": service_name(run.name),
        # Service links add env vars per Service of the namespace to every container: noise, slow at scale.
        "enableServiceLinks": False,
        "securityContext": _pod_security(run),
    }
    if artifacts.termination_grace_period_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = artifacts.termination_grace_period_seconds
    if init_containers:
        pod_spec["initContainers"] = init_containers
    pod_spec["containers"] = [container]
    pod_spec["volumes"] = volumes
    optional = {
        "serviceAccountName": spec.service_account_name,
        "priorityClassName": spec.priority_class_name,
        "nodeSelector": spec.node_selector,
        "affinity": spec.affinity,
        "tolerations": _tolerations(run),
    }
    pod_spec.update({k: v for k, v in optional.items() if v is not None})

    labels = role_labels(run, role, ctx.restart_attempt)
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": pod_spec}
    if spec.pod_template:
        template = merge_pod_template(template, spec.pod_template)
        # The Service selector and the operator's bookkeeping rely on these labels: keep them.
        template["metadata"]["labels"] = {**template["metadata"].get("labels", {}), **labels}
    return template
