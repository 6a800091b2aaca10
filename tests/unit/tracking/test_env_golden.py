"""Golden env per tracker (pod-template and literal per-rank forms); regenerate with UPDATE_GOLDEN=1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runyard import constants as c
from runyard import trackers
from runyard.api import TrainingRun
from runyard.builders import BuildContext, KubernetesAddressing, build_env
from runyard.tracking import env as tenv
from tests.unit.factories import NAMESPACE, UID, manifest

GOLDEN = Path(__file__).parent / "golden"
MLFLOW = tenv.MLflowTarget("http://mlflow.mlops:5000", "7", "0123456789abcdef0123456789abcdef", True, 5)
SETTINGS: dict[str, dict[str, str]] = {
    "wandb": {"WANDB_BASE_URL": "http://wandb.mlops", "WANDB_ENTITY": "team-a"},
    "comet": {"COMET_URL_OVERRIDE": "http://comet.mlops/clientlib/"},
    "neptune": {"NEPTUNE_PROJECT": "team-a/llm"},
}


def _run(**tracking: Any) -> TrainingRun:
    spec = {
        "framework": "pytorch",
        "command": ["python", "train.py"],
        "replicas": {"node": {"replicas": 2, "resources": {"gpus": 8}}},
        "tracking": {"experiment": "llm", "runName": "llm-7b-lr3e-4", "tags": {"team": "a"}, **tracking},
    }
    body = manifest("llm-7b", spec)
    body["metadata"]["annotations"] = {c.ANNOTATION_CLEARML_TASK_ID: "f" * 32}
    return TrainingRun.model_validate(body)


def _render(tracker: str, settings: dict[str, dict[str, str]]) -> dict[str, Any]:
    run = _run(trackers=[tracker])
    plan = tenv.plan_for(run, [tracker], mlflow=MLFLOW, settings=settings)
    return {
        "pod": tenv.pod_env(plan),
        "rank": {label: tenv.rank_env(plan, tenv.Rank("node", i, i)) for label, i in (("node-0", 0), ("node-1", 1))},
        "ids": tenv.tracker_ids(plan),
    }


@pytest.mark.parametrize("configured", [True, False], ids=["server", "bare"])
@pytest.mark.parametrize("tracker", trackers.names())
def test_env_matches_golden(tracker: str, configured: bool, update_golden: bool) -> None:
    rendered = yaml.safe_dump(_render(tracker, SETTINGS if configured else {}), sort_keys=False)
    path = GOLDEN / f"{tracker}-{'server' if configured else 'bare'}.yaml"
    if update_golden:
        path.write_text(rendered)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert rendered == path.read_text(), f"{path.name} differs: review, then run with UPDATE_GOLDEN=1"


def test_pod_env_expands_after_builder_variables() -> None:
    # $(RUNYARD_ROLE) and $(RUNYARD_REPLICA_INDEX) only expand when defined earlier in the container's env.
    run = _run(trackers=list(trackers.names()))
    plan = tenv.plan_for(run, trackers.names(), mlflow=MLFLOW, settings=SETTINGS)
    env = build_env(
        run, "node", None, KubernetesAddressing(run.name, NAMESPACE), BuildContext(extra_env=tuple(tenv.pod_env(plan)))
    )
    names = [e["name"] for e in env]
    for i, entry in enumerate(env):
        for ref in (c.ENV_ROLE, c.ENV_REPLICA_INDEX, c.ENV_NODE_NAME, c.ENV_NAMESPACE, c.ENV_POD_NAME):
            if f"$({ref})" in str(entry.get("value", "")):
                assert ref in names[:i], f"{entry['name']} references {ref} before it is defined"
    # The builder's shared TensorBoard root comes first; the per-rank directory after it wins in the kubelet.
    tb = [e["value"] for e in env if e["name"] == c.ENV_TENSORBOARD_DIR]
    assert tb == [
        "/runyard/artifacts/tensorboard",
        "/runyard/artifacts/tensorboard/$(RUNYARD_ROLE)-$(RUNYARD_REPLICA_INDEX)",
    ]
    # Nothing else the builder injects is duplicated.
    dupes = {n for n in names if names.count(n) > 1}
    assert dupes == {c.ENV_TENSORBOARD_DIR}


def test_ids_are_valid_for_each_tracker() -> None:
    ids = tenv.tracker_ids(tenv.plan_for(_run(), trackers.names()))
    assert ids["wandb"] == UID.replace("-", "") and len(ids["wandb"]) == 32
    assert len(ids["comet"]) == 40 and ids["comet"].isalnum()
    assert ids["neptune"] == UID and len(ids["neptune"]) <= 36
    assert ids["polyaxon"] == f"default.llm.runs.{UID.replace('-', '')}"
    assert ids["clearml"] == "f" * 32
    assert "mlflow" not in ids


def test_selection_defaults_and_experiment_fallbacks() -> None:
    run = TrainingRun.model_validate(manifest("r", {"framework": "generic", "replicas": {"node": {}}}))
    assert tenv.selected_trackers(run, ["mlflow", "bogus", "mlflow", "wandb"]) == ("mlflow", "wandb")
    assert tenv.experiment_name(run) == NAMESPACE
    assert tenv.tracker_run_name(run) == "r"
    assert tenv.selected_trackers(_run(trackers=["comet"]), ["mlflow"]) == ("comet",)


@pytest.mark.parametrize("settings", [{}, SETTINGS], ids=["cloud", "server"])
def test_wandb_ranks_share_one_run_in_shared_mode(settings: dict[str, dict[str, str]]) -> None:
    # Shared mode with or without a configured server (W&B's cloud is a server too): ranks that share WANDB_RUN_ID
    # without it each resume the run as its only writer and their histories collide.
    shared = tenv.plan_for(_run(trackers=["wandb"]), ["wandb"], settings=settings)
    assert tenv.common_env(shared)[c.ENV_WANDB_MODE] == "shared"
    assert tenv.common_env(shared)[c.ENV_WANDB_PRIMARY_LABEL] == "node-0"
    assert tenv.rank_env(shared, tenv.Rank("node", 0, 0))[c.ENV_WANDB_X_PRIMARY] == "true"
    assert tenv.rank_env(shared, tenv.Rank("node", 1, 1))[c.ENV_WANDB_X_PRIMARY] == "false"
    assert tenv.rank_env(shared)[c.ENV_WANDB_X_PRIMARY] == "false"  # pods: promoted by runyard.context()
    labels = {tenv.rank_env(shared, tenv.Rank("node", i, i))[c.ENV_WANDB_X_LABEL] for i in range(3)}
    assert labels == {"node-0", "node-1", "node-2"}


def test_wandb_configured_mode_wins_and_drops_shared_settings() -> None:
    run = _run(trackers=["wandb"])
    offline = tenv.plan_for(run, ["wandb"], settings={"wandb": {"WANDB_MODE": "offline", "WANDB_DIR": "/x"}})
    assert tenv.common_env(offline)[c.ENV_WANDB_MODE] == "offline"
    assert c.ENV_WANDB_PRIMARY_LABEL not in tenv.common_env(offline)
    rank = tenv.rank_env(offline, tenv.Rank("node", 1, 1))
    assert rank[c.ENV_WANDB_DIR] == "/x" and c.ENV_WANDB_X_PRIMARY not in rank


def test_wandb_env_is_what_the_installed_sdk_reads_as_shared_mode() -> None:
    # The env names are W&B settings (WANDB_X_PRIMARY -> x_primary): read them back with the pinned SDK.
    from wandb.sdk.wandb_settings import Settings  # requirements-dev pins wandb

    plan = tenv.plan_for(_run(trackers=["wandb"]), ["wandb"])
    for rank, primary in ((tenv.Rank("node", 0, 0), True), (tenv.Rank("node", 1, 1), False)):
        settings = Settings()
        settings.update_from_env_vars({**tenv.common_env(plan), **tenv.rank_env(plan, rank)})
        assert settings.mode == "shared"
        assert settings.x_primary is primary and settings.x_update_finish_state is primary
        assert settings.x_label == rank.label and settings.run_id == UID.replace("-", "")
        assert settings.run_group == "llm-7b" and settings.run_job_type == "node"


def test_env_module_imports_no_tracker_client() -> None:
    import subprocess
    import sys

    code = "import sys, runyard, runyard.tracking.env, runyard.tracking; print(sorted(m for m in ('mlflow','wandb','comet_ml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
