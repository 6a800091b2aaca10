"""Golden env per tracker (pod-template and literal per-rank forms); regenerate with UPDATE_GOLDEN=1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runyard import constants as c
from runyard.api import Tracker, TrainingRun
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


def _render(tracker: Tracker, settings: dict[str, dict[str, str]]) -> dict[str, Any]:
    run = _run(trackers=[tracker.value])
    plan = tenv.plan_for(run, [tracker], mlflow=MLFLOW, settings=settings)
    return {
        "pod": tenv.pod_env(plan),
        "rank": {label: tenv.rank_env(plan, tenv.Rank("node", i, i)) for label, i in (("node-0", 0), ("node-1", 1))},
        "ids": tenv.tracker_ids(plan),
    }


@pytest.mark.parametrize("configured", [True, False], ids=["server", "bare"])
@pytest.mark.parametrize("tracker", list(Tracker), ids=lambda t: t.value)
def test_env_matches_golden(tracker: Tracker, configured: bool, update_golden: bool) -> None:
    rendered = yaml.safe_dump(_render(tracker, SETTINGS if configured else {}), sort_keys=False)
    path = GOLDEN / f"{tracker.value}-{'server' if configured else 'bare'}.yaml"
    if update_golden:
        path.write_text(rendered)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert rendered == path.read_text(), f"{path.name} differs: review, then run with UPDATE_GOLDEN=1"


def test_pod_env_expands_after_builder_variables() -> None:
    # $(RUNYARD_ROLE) and $(RUNYARD_REPLICA_INDEX) only expand when defined earlier in the container's env.
    run = _run(trackers=[t.value for t in Tracker])
    plan = tenv.plan_for(run, list(Tracker), mlflow=MLFLOW, settings=SETTINGS)
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
    ids = tenv.tracker_ids(tenv.plan_for(_run(), list(Tracker)))
    assert ids["wandb"] == UID.replace("-", "") and len(ids["wandb"]) == 32
    assert len(ids["comet"]) == 40 and ids["comet"].isalnum()
    assert ids["neptune"] == UID and len(ids["neptune"]) <= 36
    assert ids["polyaxon"] == f"default.llm.runs.{UID.replace('-', '')}"
    assert ids["clearml"] == "f" * 32
    assert "mlflow" not in ids


def test_selection_defaults_and_experiment_fallbacks() -> None:
    run = TrainingRun.model_validate(manifest("r", {"framework": "generic", "replicas": {"node": {}}}))
    assert tenv.selected_trackers(run, ["mlflow", "bogus", "mlflow", "wandb"]) == (Tracker.MLFLOW, Tracker.WANDB)
    assert tenv.experiment_name(run) == NAMESPACE
    assert tenv.tracker_run_name(run) == "r"
    assert tenv.selected_trackers(_run(trackers=["comet"]), ["mlflow"]) == (Tracker.COMET,)


def test_wandb_shared_mode_only_with_a_server_and_settings_win() -> None:
    run = _run(trackers=["wandb"])
    bare = tenv.plan_for(run, [Tracker.WANDB])
    assert c.ENV_WANDB_MODE not in tenv.common_env(bare)
    assert c.ENV_WANDB_X_PRIMARY not in tenv.rank_env(bare, tenv.Rank("node", 0, 0))
    shared = tenv.plan_for(run, [Tracker.WANDB], settings=SETTINGS)
    assert tenv.common_env(shared)[c.ENV_WANDB_MODE] == "shared"
    assert tenv.rank_env(shared, tenv.Rank("node", 0, 0))[c.ENV_WANDB_X_PRIMARY] == "true"
    assert tenv.rank_env(shared, tenv.Rank("node", 1, 1))[c.ENV_WANDB_X_PRIMARY] == "false"
    assert tenv.rank_env(shared)[c.ENV_WANDB_X_PRIMARY] == "false"  # pods: promoted by runyard.context()
    offline = tenv.plan_for(run, [Tracker.WANDB], settings={"wandb": {"WANDB_MODE": "offline", "WANDB_DIR": "/x"}})
    assert tenv.common_env(offline)[c.ENV_WANDB_MODE] == "offline"
    assert tenv.rank_env(offline, tenv.Rank("node", 1, 1))[c.ENV_WANDB_DIR] == "/x"


def test_env_module_imports_no_tracker_client() -> None:
    import subprocess
    import sys

    code = "import sys, runyard, runyard.tracking.env, runyard.tracking; print(sorted(m for m in ('mlflow','wandb','comet_ml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
