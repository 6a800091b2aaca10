"""Framework env contracts, for pod templates (index=None) and for local processes (literal index)."""

from __future__ import annotations

import json
from typing import Any

from runyard import constants as c
from runyard.api.v1alpha1 import Framework, MPIImplementation, MPISpec, Tracker, TrainingRun, TrainingRunSpec
from runyard.builders.addressing import Addressing
from runyard.builders.context import BuildContext

# Kubernetes expands `$(VAR)` in env values from variables defined earlier in the same list.
INDEX_REF = f"$({c.ENV_REPLICA_INDEX})"
HOSTFILE_PATH = f"{c.MPI_CONFIG_MOUNT}/{c.MPI_HOSTFILE_KEY}"
SSH_KEY_PATH = f"{c.MPI_SSH_DIR}/id_key"
_TF_INDEX_SENTINEL = "__RUNYARD_TF_INDEX__"

EnvList = list[dict[str, Any]]


def _var(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def primary_role(spec: TrainingRunSpec) -> str:
    """The role whose replica 0 coordinates the run (and whose success is the run's success)."""
    if spec.framework is Framework.TENSORFLOW:
        return c.ROLE_CHIEF if c.ROLE_CHIEF in spec.replicas else c.ROLE_WORKER
    if spec.framework is Framework.MPI:
        return c.ROLE_LAUNCHER
    return c.ROLE_NODE


def total_replicas(spec: TrainingRunSpec) -> int:
    """Pods of the run over all roles."""
    return sum(r.replicas for r in spec.replicas.values())


def resolve_nproc_per_node(spec: TrainingRunSpec) -> int | None:
    """Processes per node as a number, or None when only torchrun knows it (`cpu`, CPU-only `auto`).

    Unset means one process per GPU (or 1 without GPUs). `auto` and `gpu` resolve to the node's GPU count
    because the pod sees exactly its `nvidia.com/gpu` limit.
    """
    gpus = spec.replicas[c.ROLE_NODE].resources.gpus if c.ROLE_NODE in spec.replicas else 0
    nproc = spec.nproc_per_node
    if nproc is None:
        return max(gpus, 1)
    if isinstance(nproc, int):
        return nproc
    if nproc in ("auto", "gpu") and gpus > 0:
        return gpus
    return None


def _mpi(spec: TrainingRunSpec) -> MPISpec:
    return spec.mpi or MPISpec()


def ssh_options(port: int) -> str:
    """ssh client options the MPI launcher uses to reach workers.

    Workers' sshd listens on a non-default port with per-run keys and fresh host keys (so no known_hosts);
    ConnectionAttempts rides out DNS records that appear a little after the pods, as in mpi-operator.
    """
    return (
        "-o ConnectionAttempts=10 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        f"-o LogLevel=ERROR -p {port} -i {SSH_KEY_PATH}"
    )


def build_tf_config(run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> str:
    """TF_CONFIG as TensorFlow's TFConfigClusterResolver reads it: cluster, task, environment; compact JSON.

    With `index=None` the task index is the literal `$(RUNYARD_REPLICA_INDEX)`, which the kubelet expands.
    """
    spec = run.spec
    port = spec.default_port()
    cluster = {
        r: [f"{addressing.host(r, i)}:{addressing.port(r, i, port)}" for i in range(spec.replicas[r].replicas)]
        for r in sorted(spec.replicas)
    }
    config = {
        "cluster": cluster,
        "task": {"type": role, "index": _TF_INDEX_SENTINEL if index is None else index},
        "environment": "cloud",
    }
    text = json.dumps(config, separators=(",", ":"))
    return text.replace(f'"{_TF_INDEX_SENTINEL}"', INDEX_REF)


def build_hostfile(run: TrainingRun, addressing: Addressing) -> str:
    """The MPI hostfile: one line per worker host in the implementation's syntax.

    Workers that share a host (local runs) become one line with their slots summed.
    """
    spec = run.spec
    mpi = _mpi(spec)
    workers = spec.replicas[c.ROLE_WORKER].replicas if c.ROLE_WORKER in spec.replicas else 0
    slots: dict[str, int] = {}
    for i in range(workers):
        host = addressing.host(c.ROLE_WORKER, i)
        slots[host] = slots.get(host, 0) + mpi.slots_per_worker
    if mpi.implementation is MPIImplementation.OPENMPI:
        lines = [f"{host} slots={n}" for host, n in slots.items()]
    else:
        lines = [f"{host}:{n}" for host, n in slots.items()]
    return "".join(f"{line}\n" for line in lines)


def _pytorch_env(spec: TrainingRunSpec, index: int | None, addressing: Addressing) -> EnvList:
    nodes = spec.replicas[c.ROLE_NODE].replicas
    host = addressing.host(c.ROLE_NODE, 0)
    port = addressing.port(c.ROLE_NODE, 0, spec.default_port())
    node_rank = INDEX_REF if index is None else str(index)
    nproc = resolve_nproc_per_node(spec)
    env = [
        _var(c.ENV_PET_MASTER_ADDR, host),
        _var(c.ENV_PET_MASTER_PORT, port),
        _var(c.ENV_PET_NNODES, nodes),
        _var(c.ENV_PET_NODE_RANK, node_rank),
        _var(c.ENV_PET_NPROC_PER_NODE, nproc if nproc is not None else spec.nproc_per_node),
        _var(c.ENV_MASTER_ADDR, host),
        _var(c.ENV_MASTER_PORT, port),
    ]
    if nproc is None:
        return env
    # Process-level world size (Kubeflow #1790 counts pods). RANK is the rank of the node's first process;
    # torchrun overrides RANK/WORLD_SIZE/LOCAL_WORLD_SIZE per process anyway.
    env += [_var(c.ENV_WORLD_SIZE, nodes * nproc), _var(c.ENV_LOCAL_WORLD_SIZE, nproc)]
    if index is not None:
        env.append(_var(c.ENV_RANK, index * nproc))
    elif nproc == 1:
        env.append(_var(c.ENV_RANK, INDEX_REF))
    if nproc == 1:
        # Scripts started without a launcher (a shell script, the image's entrypoint) still find their local rank.
        env.append(_var(c.ENV_LOCAL_RANK, 0))
    # With several processes per pod, a pod template cannot compute index * nproc: RANK is left to torchrun.
    return env


def _jax_env(spec: TrainingRunSpec, index: int | None, addressing: Addressing) -> EnvList:
    nodes = spec.replicas[c.ROLE_NODE].replicas
    host = addressing.host(c.ROLE_NODE, 0)
    port = addressing.port(c.ROLE_NODE, 0, spec.default_port())
    process_id = INDEX_REF if index is None else str(index)
    return [
        _var(c.ENV_JAX_COORDINATOR_ADDRESS, f"{host}:{port}"),
        _var(c.ENV_JAX_NUM_PROCESSES, nodes),
        _var(c.ENV_JAX_PROCESS_ID, process_id),
        # Kubeflow JAXJob v1 names: address without the port, port separately.
        _var(c.ENV_COORDINATOR_ADDRESS, host),
        _var(c.ENV_COORDINATOR_PORT, port),
        _var(c.ENV_NUM_PROCESSES, nodes),
        _var(c.ENV_PROCESS_ID, process_id),
    ]


def _mpi_env(spec: TrainingRunSpec, role: str) -> EnvList:
    env = [_var(c.ENV_K_MPI_JOB_ROLE, role)]
    if role != c.ROLE_LAUNCHER:
        return env
    mpi = _mpi(spec)
    ssh = ssh_options(mpi.ssh_port)
    if mpi.implementation is MPIImplementation.OPENMPI:
        env += [
            _var(c.ENV_OMPI_KEEP_FQDN, "true"),
            _var(c.ENV_OMPI_DEFAULT_HOSTFILE, HOSTFILE_PATH),
            _var(c.ENV_OMPI_RSH_ARGS, ssh),
            _var(c.ENV_OMPI_DEFAULT_SLOTS, mpi.slots_per_worker),
        ]
    elif mpi.implementation is MPIImplementation.INTEL:
        env += [
            _var(c.ENV_I_MPI_HOST_FILE, HOSTFILE_PATH),
            _var(c.ENV_I_MPI_BOOTSTRAP_ARGS, ssh),
            _var(c.ENV_I_MPI_PERHOST, mpi.slots_per_worker),
        ]
    else:
        env += [_var(c.ENV_HYDRA_HOST_FILE, HOSTFILE_PATH), _var(c.ENV_HYDRA_LAUNCH_ARGS, ssh)]
    # The launcher only starts processes: hide any GPU the node's runtime would expose to it.
    return [*env, _var(c.ENV_NVIDIA_VISIBLE_DEVICES, ""), _var(c.ENV_NVIDIA_DRIVER_CAPABILITIES, "")]


def framework_env(run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> EnvList:
    """Only the framework's contract variables (PET_*, TF_CONFIG, JAX_*, MPI launcher settings)."""
    spec = run.spec
    if spec.framework is Framework.PYTORCH:
        return _pytorch_env(spec, index, addressing)
    if spec.framework is Framework.TENSORFLOW:
        return [_var(c.ENV_TF_CONFIG, build_tf_config(run, role, index, addressing))]
    if spec.framework is Framework.JAX:
        return _jax_env(spec, index, addressing)
    if spec.framework is Framework.MPI:
        return _mpi_env(spec, role)
    return []


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
        raise ValueError(f"run {run.name} has no role {role!r}; roles: {', '.join(spec.roles())}")
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
        _var(c.ENV_FRAMEWORK, spec.framework.value),
        _var(c.ENV_RESTART_ATTEMPT, ctx.restart_attempt),
        _var(c.ENV_NUM_REPLICAS, total_replicas(spec)),
        _var(c.ENV_RUN_COORDINATOR, addressing.host(primary_role(spec), 0)),
        _var(c.ENV_ARTIFACT_DIR, spec.artifacts.path),
    ]
    if spec.tracking and spec.tracking.trackers and Tracker.TENSORBOARD in spec.tracking.trackers:
        env.append(_var(c.ENV_TENSORBOARD_DIR, f"{spec.artifacts.path.rstrip('/')}/tensorboard"))
    if ctx.resume_from:
        env.append(_var(c.ENV_RESUME_FROM, ctx.resume_from))
    env += framework_env(run, role, index, addressing)
    user = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env or ()]
    user_names = {e["name"] for e in user}
    if c.ENV_PYTHONUNBUFFERED not in user_names:
        env.append(_var(c.ENV_PYTHONUNBUFFERED, "1"))
    env += [dict(e) for e in ctx.extra_env if e.get("name") not in user_names]
    return env + user
