"""The sweep controller against the in-memory API and a real MLflow store: trials created with owner references up to
the parallelism, read back from the trials themselves, early-stopped by the median rule, the best one recorded, a
name held by someone else refused, and the sweep's parent MLflow run with the trials as children."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runyard import constants as c
from runyard_operator.sweeps import SweepController
from tests.unit.operator.fake_kube import FakeKube

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]
NS = "ml"


def _sweep(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.SWEEP_KIND,
        "metadata": {"name": "lr", "namespace": NS},
        "spec": {
            "trial": {"framework": "generic", "image": "i:1", "replicas": {"node": {"replicas": 2}}},
            "parameters": [{"name": "lr", "type": "float", "min": 0.01, "max": 1.0, "env": "LR"}],
            "objective": {"metric": "acc", "goal": "maximize"},
            "algorithm": "random",
            "maxTrials": 4,
            "parallelism": 2,
            **spec,
        },
    }


def _setup(tmp_path: Path) -> tuple[FakeKube, SweepController, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    kube = FakeKube()
    ctrl = SweepController(kube, mlflow_uri=uri, check_interval=0.0)  # type: ignore[arg-type]

    def watch(event: str, kind: str, body: dict[str, Any]) -> None:
        if kind == c.SWEEP_KIND:
            ctrl.on_sweep_event(event, body)
        elif kind == c.KIND:
            ctrl.on_trial_event(event, body)

    kube.watchers.append(watch)
    return kube, ctrl, uri


def _finish(kube: FakeKube, uri: str, name: str, values: list[float], phase: str = "Succeeded") -> None:
    from runyard.tracking import mlflow_ops

    client = mlflow_ops.client_for(uri)
    exp = mlflow_ops.ensure_experiment(client, "trials")
    run_id = client.create_run(exp).info.run_id
    for step, value in enumerate(values, start=1):
        client.log_metric(run_id, "acc", value, step=step)
    kube.mutate(c.KIND, NS, name, {"status": {"phase": phase, "tracking": {"mlflow": {"runId": run_id}}}})


def _status(kube: FakeKube) -> dict[str, Any]:
    return dict((kube.get_object(c.SWEEP_KIND, NS, "lr") or {}).get("status") or {})


def test_trials_run_two_at_a_time_and_the_best_is_recorded(tmp_path: Path) -> None:
    kube, ctrl, uri = _setup(tmp_path)

    async def scenario() -> None:
        await kube.create(_sweep())
        await ctrl.reconcile((NS, "lr"))
        trials = kube.of_kind(c.KIND)
        assert [t["metadata"]["name"] for t in trials] == ["lr-0", "lr-1"]
        owner = trials[0]["metadata"]["ownerReferences"][0]
        sweep_uid = kube.get_object(c.SWEEP_KIND, NS, "lr")["metadata"]["uid"]  # type: ignore[index]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (c.SWEEP_KIND, sweep_uid, True)
        lr = float(trials[0]["spec"]["tracking"]["params"]["lr"])
        assert {"name": "LR", "value": repr(lr)} in trials[0]["spec"]["env"]
        parent = _status(kube)["trackingRunId"]
        assert trials[0]["spec"]["tracking"]["tags"][c.TAG_MLFLOW_PARENT_RUN_ID] == parent
        assert _status(kube)["trialsRunning"] == 2

        _finish(kube, uri, "lr-0", [0.5, 0.7])
        await ctrl.reconcile((NS, "lr"))
        assert [t["metadata"]["name"] for t in kube.of_kind(c.KIND)] == ["lr-0", "lr-1", "lr-2"]
        for name, acc in (("lr-1", [0.6, 0.9]), ("lr-2", [0.1, 0.2])):
            _finish(kube, uri, name, acc)
        await ctrl.reconcile((NS, "lr"))
        _finish(kube, uri, "lr-3", [0.3], phase="Failed")
        await ctrl.reconcile((NS, "lr"))
        status = _status(kube)
        assert status["phase"] == "Succeeded" and status["trialsCreated"] == 4
        assert status["best"]["name"] == "lr-1" and status["best"]["value"] == 0.9
        assert [t["phase"] for t in status["trials"]] == ["Succeeded", "Succeeded", "Succeeded", "Failed"]
        from runyard.tracking import mlflow_ops

        parent_run = mlflow_ops.client_for(uri).get_run(parent)
        assert parent_run.info.status == "FINISHED" and parent_run.data.params["best_trial"] == "lr-1"
        # A finished sweep is left alone: no more trials, no more writes.
        writes = len(kube.patches)
        await ctrl.reconcile((NS, "lr"))
        assert len(kube.patches) == writes and len(kube.of_kind(c.KIND)) == 4

    asyncio.run(scenario())


def test_median_rule_suspends_a_poor_trial(tmp_path: Path) -> None:
    kube, ctrl, uri = _setup(tmp_path)

    async def scenario() -> None:
        await kube.create(_sweep(parallelism=3, maxTrials=3, earlyStopping={"startStep": 1, "minTrials": 2}))
        await ctrl.reconcile((NS, "lr"))
        _finish(kube, uri, "lr-0", [0.6, 0.8])
        _finish(kube, uri, "lr-1", [0.5, 0.7])
        _finish(kube, uri, "lr-2", [0.1], phase="Running")
        await ctrl.reconcile((NS, "lr"))
        trial = kube.get_object(c.KIND, NS, "lr-2") or {}
        assert trial["metadata"]["annotations"][c.ANNOTATION_PRUNED] == "true"
        assert trial["spec"]["runPolicy"]["suspend"] is True
        status = _status(kube)
        assert status["phase"] == "Succeeded" and status["trials"][2]["phase"] == "Pruned"

    asyncio.run(scenario())


def test_a_trial_name_held_by_someone_else_fails_the_sweep_naming_it(tmp_path: Path) -> None:
    kube, ctrl, _ = _setup(tmp_path)
    kube.put({"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": "lr-1", "namespace": NS}, "spec": {}})

    async def scenario() -> None:
        await kube.create(_sweep())
        await ctrl.reconcile((NS, "lr"))
        status = _status(kube)
        assert status["phase"] == "Failed"
        assert "TrainingRun ml/lr-1 already exists and is not this sweep's trial" in status["message"]
        assert "ownerReferences" not in (kube.get_object(c.KIND, NS, "lr-1") or {})["metadata"]

    asyncio.run(scenario())


def test_a_trial_read_while_running_is_read_again_when_it_finishes(tmp_path: Path) -> None:
    """Readings of a running trial are reused for check_interval; the one that finishes is read again at once."""
    kube, ctrl, uri = _setup(tmp_path)
    ctrl.check_interval = 3600.0

    async def scenario() -> None:
        await kube.create(_sweep(maxTrials=2))
        await ctrl.reconcile((NS, "lr"))
        _finish(kube, uri, "lr-0", [0.2], phase="Running")
        await ctrl.reconcile((NS, "lr"))
        assert _status(kube)["trials"][0]["value"] == 0.2
        from runyard.tracking import mlflow_ops

        run_id = (kube.get_object(c.KIND, NS, "lr-0") or {})["status"]["tracking"]["mlflow"]["runId"]
        mlflow_ops.client_for(uri).log_metric(run_id, "acc", 0.8, step=2)
        kube.mutate(c.KIND, NS, "lr-0", {"status": {"phase": "Succeeded"}})
        _finish(kube, uri, "lr-1", [0.5])
        await ctrl.reconcile((NS, "lr"))
        status = _status(kube)
        assert status["phase"] == "Succeeded" and status["best"] == {
            "name": "lr-0",
            "value": 0.8,
            "params": status["trials"][0]["params"],
        }

    asyncio.run(scenario())


def test_a_restarted_controller_decides_from_the_trials_the_api_holds(tmp_path: Path) -> None:
    """Its watch cache is empty after a restart: new trials are planned from a fresh list, so none is proposed twice
    and the finished ones count against maxTrials."""
    kube, ctrl, uri = _setup(tmp_path)

    async def scenario() -> None:
        await kube.create(_sweep(maxTrials=3))
        await ctrl.reconcile((NS, "lr"))
        _finish(kube, uri, "lr-0", [0.4])
        _finish(kube, uri, "lr-1", [0.6])
        restarted = SweepController(kube, mlflow_uri=uri, check_interval=0.0)  # type: ignore[arg-type]
        restarted.on_sweep_event("ADDED", kube.get_object(c.SWEEP_KIND, NS, "lr") or {})
        await restarted.reconcile((NS, "lr"))
        assert [t["metadata"]["name"] for t in kube.of_kind(c.KIND)] == ["lr-0", "lr-1", "lr-2"]
        status = _status(kube)
        assert status["trialsCreated"] == 3 and status["best"]["name"] == "lr-1"

    asyncio.run(scenario())
