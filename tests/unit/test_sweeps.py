"""Sweeps, pure: proposals (grid, random, Optuna TPE) are deterministic and in bounds, the median rule, the budget,
the best trial and the trial's TrainingRun."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from runyard import constants as c
from runyard.api.sweeps import TrainingRunSweepSpec
from runyard.crdgen import build_sweep_crd
from runyard.sweeps import (
    PRUNED,
    RUNNING,
    SUCCEEDED,
    TrialRecord,
    best,
    grid_points,
    params_of,
    plan,
    should_stop,
    suggest,
    total_trials,
    trial_manifest,
)


def _spec(**over: Any) -> TrainingRunSweepSpec:
    base: dict[str, Any] = {
        "trial": {
            "framework": "pytorch",
            "image": "img:1",
            "command": ["python", "train.py", "--lr={{lr}}"],
            "replicas": {"node": {"replicas": 2}},
            "env": [{"name": "KEEP", "value": "1"}],
        },
        "parameters": [
            {"name": "lr", "type": "float", "min": 0.001, "max": 0.5, "log": True, "env": "RUNYARD_EXAMPLE_LR"},
            {"name": "epochs", "type": "int", "min": 1, "max": 3},
            {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]},
        ],
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "maxTrials": 6,
        "parallelism": 2,
    }
    return TrainingRunSweepSpec.model_validate({**base, **over})


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_proposals_are_deterministic_and_in_bounds(algorithm: str) -> None:
    spec = _spec(algorithm=algorithm, seed=7)
    history = [
        TrialRecord(i, f"s-{i}", suggest(spec, i, []), SUCCEEDED, value=0.1 * i, history=((1, 0.1 * i),))
        for i in range(4)
    ]
    for index in range(6):
        first, again = suggest(spec, index, history), suggest(spec, index, history)
        assert first == again
        assert 0.001 <= first["lr"] <= 0.5 and first["epochs"] in (1, 2, 3) and first["opt"] in ("sgd", "adam")
    assert len({repr(suggest(spec, i, [])) for i in range(6)}) == 6  # different trials, different proposals


def test_grid_enumerates_every_combination_in_order() -> None:
    spec = _spec(
        algorithm="grid",
        maxTrials=100,
        parameters=[
            {"name": "lr", "type": "float", "min": 0.1, "max": 0.3, "step": 0.1},
            {"name": "bs", "type": "int", "values": [16, 32]},
        ],
    )
    assert grid_points(spec.parameters) == [
        {"lr": 0.1, "bs": 16},
        {"lr": 0.1, "bs": 32},
        {"lr": 0.2, "bs": 16},
        {"lr": 0.2, "bs": 32},
        {"lr": 0.3, "bs": 16},
        {"lr": 0.3, "bs": 32},
    ]
    assert total_trials(spec) == 6 and suggest(spec, 3, []) == {"lr": 0.2, "bs": 32}


def test_invalid_spaces_name_the_parameter() -> None:
    with pytest.raises(ValidationError, match="parameter lr: log scale needs min > 0"):
        _spec(parameters=[{"name": "lr", "type": "float", "min": 0, "max": 1, "log": True}])
    with pytest.raises(ValidationError, match="parameter opt: categorical needs `values`"):
        _spec(parameters=[{"name": "opt", "type": "categorical"}])
    with pytest.raises(ValidationError, match="a grid over a float needs `values` or `step`"):
        _spec(algorithm="grid", parameters=[{"name": "lr", "type": "float", "min": 0.1, "max": 1}])


def test_plan_keeps_parallelism_and_ends_after_the_last_trial() -> None:
    spec = _spec()
    assert plan(spec, []).create == (0, 1)
    one_done = [TrialRecord(0, "s-0", {}, SUCCEEDED, 0.5), TrialRecord(1, "s-1", {}, RUNNING)]
    assert plan(spec, one_done).create == (2,)
    all_done = [TrialRecord(i, f"s-{i}", {}, SUCCEEDED, 0.1) for i in range(6)]
    final = plan(spec, all_done)
    assert final.done and final.create == () and "all 6 trials finished" in final.message


def test_budget_stops_new_trials_and_ends_when_running_ones_finish() -> None:
    spec = _spec(budget={"gpuHours": 1.0})
    spent = [
        TrialRecord(0, "s-0", {}, SUCCEEDED, 0.5, gpu_hours=0.7),
        TrialRecord(1, "s-1", {}, RUNNING, gpu_hours=0.4),
    ]
    assert plan(spec, spent).create == () and not plan(spec, spent).done
    ended = [spent[0], TrialRecord(1, "s-1", {}, SUCCEEDED, 0.6, gpu_hours=0.4)]
    result = plan(spec, ended)
    assert result.done and "GPU-hour budget spent (1.100 of 1.0) after 2 trials" in result.message


def test_median_rule_stops_a_trial_below_the_finished_ones() -> None:
    spec = _spec(earlyStopping={"startStep": 2, "minTrials": 2})
    finished = [
        TrialRecord(0, "s-0", {}, SUCCEEDED, 0.9, history=((1, 0.5), (2, 0.7), (3, 0.9))),
        TrialRecord(1, "s-1", {}, SUCCEEDED, 0.8, history=((1, 0.4), (2, 0.6), (3, 0.8))),
    ]
    poor = TrialRecord(2, "s-2", {}, RUNNING, history=((1, 0.1), (2, 0.2)))
    good = TrialRecord(3, "s-3", {}, RUNNING, history=((1, 0.5), (2, 0.9)))
    early = TrialRecord(4, "s-4", {}, RUNNING, history=((1, 0.0),))
    assert should_stop(spec, poor, finished) and not should_stop(spec, good, finished)
    assert not should_stop(spec, early, finished)  # before startStep
    assert not should_stop(spec, poor, finished[:1])  # fewer than minTrials finished
    assert plan(spec, [*finished, poor, good]).prune == ("s-2",)
    assert not should_stop(_spec(), poor, finished)  # no earlyStopping: never


def test_best_trial_follows_the_goal() -> None:
    records = [
        TrialRecord(0, "s-0", {"lr": 0.1}, SUCCEEDED, 0.7),
        TrialRecord(1, "s-1", {"lr": 0.2}, SUCCEEDED, 0.9),
        TrialRecord(2, "s-2", {"lr": 0.3}, PRUNED, 0.95),
    ]
    found = best(_spec(), records)
    assert found is not None and found.name == "s-1"
    low = best(_spec(objective={"metric": "loss", "goal": "minimize"}), records)
    assert low is not None and low.name == "s-0"


def test_trial_manifest_carries_parameters_everywhere_a_program_reads_them() -> None:
    spec = _spec()
    run = trial_manifest("lr", "ns", spec, 3, {"lr": 0.05, "epochs": 2, "opt": "adam"}, parent_run_id="p1")
    assert run["metadata"] == {
        "name": "lr-3",
        "namespace": "ns",
        "labels": {c.LABEL_SWEEP: "lr", c.LABEL_TRIAL_INDEX: "3"},
    }
    body = run["spec"]
    assert body["command"] == ["python", "train.py", "--lr=0.05"]
    assert {"name": "RUNYARD_EXAMPLE_LR", "value": "0.05"} in body["env"] and {"name": "KEEP", "value": "1"} in body[
        "env"
    ]
    assert body["tracking"]["params"] == {"lr": "0.05", "epochs": "2", "opt": "adam"}
    assert body["tracking"]["tags"][c.TAG_MLFLOW_PARENT_RUN_ID] == "p1"
    assert params_of(body, spec) == {"lr": 0.05, "epochs": 2, "opt": "adam"}


def test_sweep_crd_embeds_the_run_schema() -> None:
    crd = build_sweep_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    trial = schema["properties"]["spec"]["properties"]["trial"]
    assert "framework" in trial["required"] and trial["x-kubernetes-validations"]
    values = schema["properties"]["spec"]["properties"]["parameters"]["items"]["properties"]["values"]
    assert values["items"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert crd["spec"]["names"]["shortNames"] == ["sweep", "trs"]
