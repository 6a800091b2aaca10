"""Each tracker profile on its own: ids, per-rank env in both forms, credentials, base env, per-process adjustments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runyard import constants as c
from runyard import trackers
from runyard.context import apply_process_env, read_context
from runyard.trackers import clearml, comet, neptune, polyaxon, wandb
from runyard.trackers.base import INDEX_REF, TEMPLATE_RANK_LABEL, MLflowTarget, Rank, TrackingPlan

UID = "11111111-2222-3333-4444-555555555555"
MLFLOW = MLflowTarget("http://mlflow:5000", "7", "r" * 32, system_metrics=True, system_metrics_interval=5)
# `$(VAR)` references a pod template may use: the builders define these before any tracker entry.
BUILDER_REFS = {c.ENV_ROLE, c.ENV_REPLICA_INDEX, c.ENV_NODE_NAME, c.ENV_NAMESPACE, c.ENV_POD_NAME}
RANK0, RANK1 = Rank("node", 0, 0), Rank("node", 1, 1)


def _plan(*names: str, **over: object) -> TrackingPlan:
    fields: dict[str, object] = {
        "trackers": names,
        "run_uid": UID,
        "run_name": "llm",
        "experiment": "exp",
        "tracker_run_name": "llm-lr3",
        "output_dir": "/out",
        "primary_label": "node-0",
        "mlflow": MLFLOW,
        "tags": {"team": "a"},
        "annotations": {c.ANNOTATION_CLEARML_TASK_ID: "f" * 32},
        **over,
    }
    return TrackingPlan(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", trackers.names())
def test_every_profile_keeps_the_contract(name: str) -> None:
    profile = trackers.get(name)
    plan = _plan(name)
    names = [*profile.credential_env, *profile.reserved_env]
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", n) for n in names), names
    # The id the SDK context reads is the one the env carries (MLflow's lives in status.tracking.mlflow).
    if profile.id_env:
        assert profile.common_env(plan)[profile.id_env] == (profile.status_id(plan) or MLFLOW.run_id)
    # Template form: only kubelet references to variables the builders define; literal form: none at all.
    for value in profile.rank_env(plan, None).values():
        assert set(re.findall(r"\$\((\w+)\)", value)) <= BUILDER_REFS, value
    for rank in (RANK0, RANK1):
        assert "$(" not in "".join(profile.rank_env(plan, rank).values())
    assert not set(profile.common_env(plan)) & set(profile.credential_env), "credentials come from Secrets only"


def test_mlflow_joins_the_created_run_and_renders_nothing_without_it() -> None:
    mlflow = trackers.get("mlflow")
    assert mlflow.common_env(_plan("mlflow")) == {
        c.ENV_MLFLOW_TRACKING_URI: "http://mlflow:5000",
        c.ENV_MLFLOW_EXPERIMENT_ID: "7",
        c.ENV_MLFLOW_RUN_ID: "r" * 32,
        c.ENV_MLFLOW_SYSTEM_METRICS: "true",
        c.ENV_MLFLOW_SYSTEM_METRICS_INTERVAL: "5",
    }
    assert mlflow.rank_env(_plan("mlflow"), RANK1) == {c.ENV_MLFLOW_SYSTEM_METRICS_NODE_ID: "node-1"}
    assert mlflow.rank_env(_plan("mlflow"), None) == {c.ENV_MLFLOW_SYSTEM_METRICS_NODE_ID: TEMPLATE_RANK_LABEL}
    quiet = _plan("mlflow", mlflow=MLflowTarget("u", "1", "r", system_metrics=False, system_metrics_interval=5))
    assert quiet.mlflow and mlflow.common_env(quiet)[c.ENV_MLFLOW_SYSTEM_METRICS] == "false"
    assert c.ENV_MLFLOW_SYSTEM_METRICS_INTERVAL not in mlflow.common_env(quiet)
    assert mlflow.rank_env(quiet, RANK0) == {}
    assert mlflow.common_env(_plan("mlflow", mlflow=None)) == mlflow.rank_env(_plan("mlflow", mlflow=None), RANK0) == {}
    assert mlflow.status_id(_plan("mlflow")) is None


def test_wandb_shared_mode_primary_and_labels() -> None:
    profile = trackers.get("wandb")
    plan = _plan("wandb")
    common = profile.common_env(plan)
    assert common[c.ENV_WANDB_RUN_ID] == wandb.run_id(UID) == UID.replace("-", "")
    assert common[c.ENV_WANDB_MODE] == "shared" and common[c.ENV_WANDB_PRIMARY_LABEL] == "node-0"
    assert common[c.ENV_WANDB_TAGS] == "team=a" and common[c.ENV_WANDB_RUN_GROUP] == "llm"
    assert profile.rank_env(plan, RANK0)[c.ENV_WANDB_X_PRIMARY] == "true"
    assert profile.rank_env(plan, RANK1)[c.ENV_WANDB_X_UPDATE_FINISH_STATE] == "false"
    assert profile.rank_env(plan, RANK1)[c.ENV_WANDB_DIR] == "/out/wandb/node-1"
    offline = _plan("wandb", settings={"wandb": {c.ENV_WANDB_MODE: "offline"}})
    assert profile.common_env(offline)[c.ENV_WANDB_MODE] == "offline"
    assert c.ENV_WANDB_X_PRIMARY not in profile.rank_env(offline, RANK0)


def _pod(label: str, rank: int, local_rank: int = 0, local_world: int = 1) -> dict[str, str]:
    return {
        c.ENV_RUN_NAME: "llm",
        c.ENV_RANK_LABEL: label,
        c.ENV_WANDB_PRIMARY_LABEL: "node-0",
        c.ENV_WANDB_X_PRIMARY: "false",
        c.ENV_WANDB_X_LABEL: label,
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "LOCAL_WORLD_SIZE": str(local_world),
    }


def test_wandb_process_env_promotes_global_rank_zero_and_labels_local_ranks() -> None:
    primary = _pod("node-0", 0)
    apply_process_env(read_context(primary), primary)
    assert primary[c.ENV_WANDB_X_PRIMARY] == "true" and primary[c.ENV_WANDB_X_LABEL] == "node-0"
    # torchrun, two processes per pod: one primary, and every process its own label.
    first, second = _pod("node-0", 0, 0, 2), _pod("node-0", 1, 1, 2)
    for env in (first, second):
        apply_process_env(read_context(env), env)
    assert (first[c.ENV_WANDB_X_PRIMARY], second[c.ENV_WANDB_X_PRIMARY]) == ("true", "false")
    assert (first[c.ENV_WANDB_X_LABEL], second[c.ENV_WANDB_X_LABEL]) == ("node-0-local-0", "node-0-local-1")
    other = _pod("node-1", 0)  # RANK 0 of another pod (no launcher rank): not the primary replica
    apply_process_env(read_context(other), other)
    assert other[c.ENV_WANDB_X_PRIMARY] == "false"


def test_comet_one_key_one_node_identifier_per_rank() -> None:
    profile = trackers.get("comet")
    key = profile.common_env(_plan("comet"))[c.ENV_COMET_EXPERIMENT_KEY]
    assert key == comet.experiment_key(UID) and len(key) == 40 and key.isalnum()
    assert profile.rank_env(_plan("comet"), RANK1) == {
        c.ENV_COMET_NODE_IDENTIFIER: "node-1",
        c.ENV_COMET_OFFLINE_DIRECTORY: "/out/comet-node-1",
    }


def test_clearml_joins_only_a_named_task() -> None:
    profile = trackers.get("clearml")
    assert clearml.task_id(_plan("clearml")) == "f" * 32
    assert profile.common_env(_plan("clearml"))[c.ENV_CLEARML_MULTI_NODE_SINGLE_TASK] == "1"
    assert profile.rank_env(_plan("clearml"), RANK1) == {c.ENV_CLEARML_NODE_ID: "1"}
    assert profile.rank_env(_plan("clearml"), None) == {c.ENV_CLEARML_NODE_ID: INDEX_REF}
    unnamed = _plan("clearml", annotations={})
    assert profile.common_env(unnamed) == profile.rank_env(unnamed, RANK0) == {}
    assert profile.status_id(unnamed) is None


def test_polyaxon_run_instance_and_pod_identity_only_in_pods() -> None:
    profile = trackers.get("polyaxon")
    assert (
        profile.status_id(_plan("polyaxon"))
        == polyaxon.run_instance("exp", UID)
        == (f"default.exp.runs.{UID.replace('-', '')}")
    )
    assert profile.rank_env(_plan("polyaxon"), RANK0) == {}
    assert profile.rank_env(_plan("polyaxon"), None)[c.ENV_POLYAXON_K8S_POD_ID] == f"$({c.ENV_POD_NAME})"


def test_neptune_custom_run_id_and_monitoring_namespace() -> None:
    profile = trackers.get("neptune")
    assert neptune.custom_run_id(UID) == UID  # 36 characters, Neptune's maximum
    assert profile.common_env(_plan("neptune")) == {c.ENV_NEPTUNE_CUSTOM_RUN_ID: UID}
    assert profile.rank_env(_plan("neptune"), RANK1) == {c.ENV_NEPTUNE_MONITORING_NAMESPACE: "monitoring/node-1"}


def test_tensorboard_root_per_rank_directory_and_local_ranks() -> None:
    profile = trackers.get("tensorboard")
    assert profile.id_env is None and profile.status_id(_plan("tensorboard")) is None
    assert profile.base_env("/runyard/artifacts/") == {c.ENV_TENSORBOARD_DIR: "/runyard/artifacts/tensorboard"}
    assert profile.rank_env(_plan("tensorboard"), RANK1) == {c.ENV_TENSORBOARD_DIR: "/out/tensorboard/node-1"}
    env = {c.ENV_RUN_NAME: "llm", c.ENV_TENSORBOARD_DIR: "/out/tensorboard/node-1", "LOCAL_RANK": "3"}
    apply_process_env(read_context({**env, "LOCAL_WORLD_SIZE": "4"}), env)
    assert Path(env[c.ENV_TENSORBOARD_DIR]) == Path("/out/tensorboard/node-1/local-3")
