"""Env contracts: PyTorch world size and ranks, TF_CONFIG as TensorFlow parses it, JAX, MPI and the reserved names."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from runyard import constants as c
from runyard import frameworks
from runyard.api import reserved_env_names
from runyard.builders import BuildContext, KubernetesAddressing, LocalAddressing, build_env
from runyard.frameworks.ssh import build_hostfile
from runyard.frameworks.tensorflow import build_tf_config
from tests.unit.factories import SPECS, make_run


def as_dict(env: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in env if "value" in e}


def tf_cluster_resolver(tf_config: str) -> dict[str, Any]:
    """What TFConfigClusterResolver derives from TF_CONFIG (tensorflow/python/distribute/cluster_resolver)."""
    config = json.loads(tf_config)
    assert list(config) == ["cluster", "task", "environment"]
    cluster = config["cluster"]
    assert all(isinstance(v, list) and all(isinstance(a, str) for a in v) for v in cluster.values())
    task = config["task"]
    return {
        "cluster_spec": cluster,
        "task_type": str(task["type"]),
        "task_id": int(task["index"]),
        "environment": config.get("environment"),
        "rpc_layer": config.get("rpc_layer"),
    }


@pytest.mark.parametrize(("nodes", "gpus", "nproc", "want_nproc"), [(2, 0, None, 1), (4, 8, None, 8), (3, 8, 2, 2)])
def test_pytorch_world_size_is_process_level(nodes: int, gpus: int, nproc: int | None, want_nproc: int) -> None:
    spec: dict[str, Any] = {"replicas": {"node": {"replicas": nodes, "resources": {"gpus": gpus}}}}
    if nproc is not None:
        spec["nprocPerNode"] = nproc
    run = make_run("pytorch-small", **spec)
    addressing = LocalAddressing(base_port=20000)
    for index in range(nodes):
        env = as_dict(build_env(run, "node", index, addressing))
        assert env[c.ENV_PET_NNODES] == str(nodes)
        assert env[c.ENV_PET_NODE_RANK] == str(index)
        assert env[c.ENV_PET_NPROC_PER_NODE] == str(want_nproc)
        assert env[c.ENV_WORLD_SIZE] == str(nodes * want_nproc)
        assert env[c.ENV_LOCAL_WORLD_SIZE] == str(want_nproc)
        assert env[c.ENV_RANK] == str(index * want_nproc)
        assert env[c.ENV_MASTER_ADDR] == env[c.ENV_PET_MASTER_ADDR] == "127.0.0.1"
        assert env[c.ENV_MASTER_PORT] == env[c.ENV_PET_MASTER_PORT] == "20000"
        assert env[c.ENV_REPLICA_INDEX] == str(index)


def test_pytorch_pod_template_env_uses_completion_index_first() -> None:
    run = make_run("pytorch-small")
    env = build_env(run, "node", None, KubernetesAddressing("pytorch-small", "team-a"))
    first = env[0]
    assert first["name"] == c.ENV_REPLICA_INDEX
    assert first["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{c.ANNOTATION_JOB_COMPLETION_INDEX}']"
    values = as_dict(env)
    assert values[c.ENV_PET_NODE_RANK] == "$(RUNYARD_REPLICA_INDEX)"
    assert values[c.ENV_RANK] == "$(RUNYARD_REPLICA_INDEX)"  # one process per node: node rank == process rank
    assert values[c.ENV_PET_MASTER_ADDR] == "pytorch-small-node-0.pytorch-small.team-a.svc"
    # Every $(VAR) reference points at a variable defined earlier, as Kubernetes requires for expansion.
    defined: set[str] = set()
    for entry in env:
        for ref in re.findall(r"\$\(([A-Z_]+)\)", entry.get("value", "")):
            assert ref in defined, f"{entry['name']} references {ref} before it is defined"
        defined.add(entry["name"])


def test_pytorch_rank_left_to_torchrun_with_several_procs_per_pod() -> None:
    run = make_run("pytorch-large")
    values = as_dict(build_env(run, "node", None, KubernetesAddressing("pytorch-large", "team-a")))
    assert c.ENV_RANK not in values
    assert values[c.ENV_WORLD_SIZE] == "128"


@pytest.mark.parametrize(("nproc", "gpus", "want"), [("cpu", 0, "cpu"), ("auto", 0, "auto"), ("auto", 4, "4")])
def test_pytorch_symbolic_nproc(nproc: str, gpus: int, want: str) -> None:
    run = make_run("pytorch-small", nprocPerNode=nproc, replicas={"node": {"replicas": 2, "resources": {"gpus": gpus}}})
    values = as_dict(build_env(run, "node", 1, LocalAddressing(base_port=20000)))
    assert values[c.ENV_PET_NPROC_PER_NODE] == want
    assert (c.ENV_WORLD_SIZE in values) == want.isdigit()


def test_tf_config_literal_parses_like_tensorflow() -> None:
    run = make_run("tensorflow-large")
    addressing = LocalAddressing(base_port=30000)
    seen: set[str] = set()
    for role in frameworks.roles_of(run.spec):
        for index in range(run.spec.replicas[role].replicas):
            env = as_dict(build_env(run, role, index, addressing))
            resolved = tf_cluster_resolver(env[c.ENV_TF_CONFIG])
            assert resolved["task_type"] == role
            assert resolved["task_id"] == index
            assert resolved["environment"] == "cloud"
            assert resolved["rpc_layer"] is None
            cluster = resolved["cluster_spec"]
            assert list(cluster) == sorted(cluster) == ["chief", "evaluator", "ps", "worker"]
            assert [len(cluster[r]) for r in ("chief", "worker", "ps", "evaluator")] == [1, 8, 4, 1]
            seen.add(cluster[role][index])
    assert len(seen) == 14, "every task has its own address"
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", a) for a in seen)


def test_tf_config_pod_form_becomes_json_after_expansion() -> None:
    run = make_run("tensorflow-small")
    text = build_tf_config(run, "worker", None, KubernetesAddressing("tensorflow-small", "team-a", "cluster.local"))
    assert '"index":$(RUNYARD_REPLICA_INDEX)' in text
    resolved = tf_cluster_resolver(text.replace("$(RUNYARD_REPLICA_INDEX)", "1"))
    assert resolved["task_type"] == "worker" and resolved["task_id"] == 1
    assert (
        resolved["cluster_spec"]["worker"][1]
        == "tensorflow-small-worker-1.tensorflow-small.team-a.svc.cluster.local:2222"
    )
    assert " " not in text


def test_jax_contract() -> None:
    run = make_run("jax-large")
    values = as_dict(build_env(run, "node", 5, KubernetesAddressing("jax-large", "ml")))
    host = "jax-large-node-0.jax-large.ml.svc"
    assert values[c.ENV_JAX_COORDINATOR_ADDRESS] == f"{host}:1234"
    assert values[c.ENV_JAX_NUM_PROCESSES] == values[c.ENV_NUM_PROCESSES] == "32"
    assert values[c.ENV_JAX_PROCESS_ID] == values[c.ENV_PROCESS_ID] == "5"
    assert values[c.ENV_COORDINATOR_ADDRESS] == host
    assert values[c.ENV_COORDINATOR_PORT] == "1234"


@pytest.mark.parametrize(
    ("implementation", "present", "line"),
    [
        ("OpenMPI", c.ENV_OMPI_DEFAULT_HOSTFILE, "h-worker-1.h.ns.svc slots=4"),
        ("MPICH", c.ENV_HYDRA_HOST_FILE, "h-worker-1.h.ns.svc:4"),
        ("Intel", c.ENV_I_MPI_HOST_FILE, "h-worker-1.h.ns.svc:4"),
    ],
)
def test_mpi_contract(implementation: str, present: str, line: str) -> None:
    run = make_run("mpi-small", name="h", mpi={"implementation": implementation, "slotsPerWorker": 4})
    addressing = KubernetesAddressing("h", "ns")
    launcher = as_dict(build_env(run, "launcher", 0, addressing))
    worker = as_dict(build_env(run, "worker", 1, addressing))
    assert launcher[c.ENV_K_MPI_JOB_ROLE] == "launcher" and worker[c.ENV_K_MPI_JOB_ROLE] == "worker"
    assert launcher[present] == "/etc/mpi/hostfile"
    assert launcher[c.ENV_NVIDIA_VISIBLE_DEVICES] == ""
    assert present not in worker
    assert build_hostfile(run, addressing).splitlines()[1] == line


def test_local_hostfile_merges_workers_on_one_host() -> None:
    run = make_run("mpi-small")
    assert build_hostfile(run, LocalAddressing(base_port=40000, hostname="localhost")) == "localhost slots=2\n"


def test_local_addressing_gives_distinct_ports() -> None:
    addressing = LocalAddressing(base_port=50000)
    ports = {addressing.port(role, i, 2222) for role in ("chief", "worker", "ps", "evaluator") for i in range(50)}
    assert len(ports) == 200
    with pytest.raises(ValueError, match="at most 100"):
        addressing.port("worker", 100, 2222)


def test_context_env_order_and_overrides() -> None:
    run = make_run("generic-small", env=[{"name": "MLFLOW_TRACKING_URI", "value": "http://mine"}])
    ctx = BuildContext(
        restart_attempt=2,
        resume_from="/runyard/artifacts/ckpt-7",
        extra_env=({"name": "MLFLOW_TRACKING_URI", "value": "http://op"}, {"name": "MLFLOW_RUN_ID", "value": "r1"}),
    )
    env = build_env(run, "node", 0, LocalAddressing(base_port=20000), ctx)
    names = [e["name"] for e in env]
    assert names.count("MLFLOW_TRACKING_URI") == 1
    values = as_dict(env)
    assert values["MLFLOW_TRACKING_URI"] == "http://mine"
    assert values["MLFLOW_RUN_ID"] == "r1"
    assert values[c.ENV_RESTART_ATTEMPT] == "2"
    assert values[c.ENV_RESUME_FROM] == "/runyard/artifacts/ckpt-7"


@pytest.mark.parametrize("case", sorted(SPECS))
def test_injected_names_are_reserved(case: str) -> None:
    run = make_run(case)
    reserved = reserved_env_names(run.spec.framework)
    user = {e.name for e in run.spec.env or ()}
    for role in frameworks.roles_of(run.spec):
        for index in (None, 0):
            names = {e["name"] for e in build_env(run, role, index, LocalAddressing(base_port=20000))}
            injected = names - user - {c.ENV_PYTHONUNBUFFERED}
            assert injected <= reserved, f"{role}: not reserved: {sorted(injected - reserved)}"


def test_unknown_role_is_rejected() -> None:
    with pytest.raises(ValueError, match="no role 'worker'"):
        build_env(make_run("jax-small"), "worker", 0, LocalAddressing(base_port=20000))
