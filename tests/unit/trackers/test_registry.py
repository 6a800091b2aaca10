"""The tracker registry is the one source: API validation, CRD enum, env rendering and the SDK context follow it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from runyard import constants as c
from runyard import trackers
from runyard.api import TrainingRun
from runyard.context import read_context
from runyard.crdgen import build_crd
from runyard.trackers import registry
from runyard.trackers.base import TEMPLATE_RANK_LABEL, Rank, TrackerProfile, TrackingPlan
from runyard.tracking import env as tenv
from runyard.validation import validate_manifest
from tests.unit.factories import UID, manifest


def _manifest(trackers_: list[str], **spec: Any) -> dict[str, Any]:
    return manifest(
        "r", {"framework": "generic", "replicas": {"node": {}}, "tracking": {"trackers": trackers_}, **spec}
    )


def test_names_are_the_registry_table_and_every_entry_loads_its_profile() -> None:
    assert trackers.names() == tuple(registry.TRACKERS)
    assert trackers.names() == ("mlflow", "wandb", "comet", "clearml", "tensorboard", "polyaxon", "neptune")
    assert [p.name for p in trackers.all()] == list(trackers.names())
    assert all(isinstance(p, TrackerProfile) for p in trackers.all())
    assert trackers.get("wandb") is trackers.get("wandb")  # loaded once
    with pytest.raises(KeyError):
        trackers.get("tensorbored")


def test_known_keeps_registered_names_once_in_order() -> None:
    assert trackers.known(["wandb", "bogus", "mlflow", "wandb"]) == ("wandb", "mlflow")


def test_registry_and_profiles_load_no_tracker_client_and_no_pydantic() -> None:
    # Training processes load the profiles through runyard.context(): they must stay as light as `import runyard`.
    code = (
        "import sys, runyard, runyard.trackers as t; t.all(); "
        "print(sorted(m for m in ('pydantic', 'mlflow', 'wandb', 'comet_ml', 'clearml', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("index", [0, 1])
def test_unknown_tracker_names_the_field_and_the_registered_names(index: int) -> None:
    names = ["mlflow", "tensorboard"]
    names[index] = "tensorbored"
    problems = [str(p) for p in validate_manifest(_manifest(names))]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"spec.tracking.trackers[{index}]: unknown tracker")
    assert "'tensorbored'" in problems[0] and all(n in problems[0] for n in trackers.names())
    with pytest.raises(ValidationError, match=r"tracking\.trackers\." + str(index)):
        TrainingRun.model_validate(_manifest(names))


def test_more_trackers_than_registered_are_refused_like_the_crd_does() -> None:
    too_many = [*trackers.names(), "mlflow"]
    problems = [str(p) for p in validate_manifest(_manifest(too_many))]
    assert problems == [f"spec.tracking.trackers: at most {len(trackers.names())} trackers (one of each)"]
    assert validate_manifest(_manifest(list(trackers.names()))) == []


def test_items_are_plain_strings() -> None:
    run = TrainingRun.model_validate(_manifest(["wandb", "mlflow"]))
    assert run.spec.tracking is not None and run.spec.tracking.trackers == ["wandb", "mlflow"]
    assert all(type(t) is str for t in run.spec.tracking.trackers)
    assert run.to_manifest()["spec"]["tracking"]["trackers"] == ["wandb", "mlflow"]


def test_crd_enum_and_max_items_come_from_the_registry() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    field = spec["properties"]["tracking"]["properties"]["trackers"]
    assert field["type"] == "array" and field["maxItems"] == len(trackers.names())
    assert field["items"] == {
        "type": "string",
        "enum": list(trackers.names()),
        "description": "Experiment trackers Runyard can configure for the training code.",
    }


def test_base_env_comes_from_the_trackers_the_spec_names() -> None:
    tb = TrainingRun.model_validate(_manifest(["mlflow", "tensorboard"], artifacts={"path": "/out/"}))
    assert trackers.base_env(tb) == {c.ENV_TENSORBOARD_DIR: "/out/tensorboard"}
    assert trackers.base_env(tb, "/tmp/run/artifacts/node-0") == {
        c.ENV_TENSORBOARD_DIR: "/tmp/run/artifacts/node-0/tensorboard"
    }
    assert trackers.base_env(TrainingRun.model_validate(_manifest(["mlflow"]))) == {}
    bare = TrainingRun.model_validate(manifest("r", {"framework": "generic", "replicas": {"node": {}}}))
    assert trackers.base_env(bare) == {}


def test_credential_and_reserved_names() -> None:
    credentials, reserved = trackers.credential_env_names(), trackers.reserved_env_names()
    assert {c.ENV_WANDB_API_KEY, c.ENV_MLFLOW_TRACKING_TOKEN, c.ENV_COMET_API_KEY} <= credentials
    assert not credentials & reserved
    # Every run id is derived per run: configuration setting one would merge every run into one.
    assert {p.id_env for p in trackers.all() if p.id_env} <= reserved


# --- adding a tracker ------------------------------------------------------------------------------------------


class _Aim(TrackerProfile):
    """A tracker that exists only in this test: added through the registry, nothing else."""

    name = "aim"
    id_env = "AIM_RUN_HASH"
    credential_env: ClassVar[tuple[str, ...]] = ("AIM_TOKEN",)
    reserved_env: ClassVar[tuple[str, ...]] = ("AIM_RUN_HASH",)

    def status_id(self, plan: TrackingPlan) -> str | None:
        return plan.run_uid[:8]

    def common_env(self, plan: TrackingPlan) -> dict[str, str]:
        return {"AIM_RUN_HASH": plan.run_uid[:8]}

    def rank_env(self, plan: TrackingPlan, rank: Rank | None) -> dict[str, str]:
        return {"AIM_CONTEXT": rank.label if rank else TEMPLATE_RANK_LABEL}


@pytest.fixture
def aim_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(registry.TRACKERS, "aim", f"{__name__}:_Aim")
    yield
    monkeypatch.undo()
    registry.get.cache_clear()


@pytest.mark.usefixtures("aim_registered")
def test_a_module_and_a_registry_line_are_enough_to_add_a_tracker() -> None:
    doc = _manifest(["mlflow", "aim"])
    assert validate_manifest(doc) == []
    run = TrainingRun.model_validate(doc)
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["tracking"]["properties"]["trackers"]["items"]["enum"][-1] == "aim"
    plan = tenv.plan_for(run, tenv.selected_trackers(run))
    assert plan.trackers == ("mlflow", "aim")  # MLflow without a run renders nothing, Aim its env
    env = {e["name"]: e.get("value") for e in tenv.pod_env(plan)}
    assert env[c.ENV_TRACKERS] == "mlflow,aim" and env["AIM_RUN_HASH"] == UID[:8]
    assert env["AIM_CONTEXT"] == TEMPLATE_RANK_LABEL
    assert tenv.tracker_ids(plan) == {"aim": UID[:8]}
    assert read_context({"AIM_RUN_HASH": "abc"}).tracker_ids == {"aim": "abc"}
    assert "AIM_TOKEN" in trackers.credential_env_names()
