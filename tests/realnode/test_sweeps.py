"""A TrainingRunSweep on the real node: 6 trials of the 2-node PyTorch example (gloo), 2 at a time, proposed by
Optuna's TPE, children of one MLflow parent run, the best one in the sweep's status and from the CLI."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from tests.conftest import Cluster
from tests.operator_fixtures import Runs, wait_until
from tests.realnode.conftest import runyard_cli

SWEEP = "examples/sweeps/digits-lr.yaml"


def _sweep(runs: Runs, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(runs.api.api_client).get_namespaced_custom_object(
            "runyard.dev", "v1alpha1", runs.namespace, "trainingrunsweeps", name
        )
    )


def test_sweep_of_multi_node_trials_runs_for_real(cluster: Cluster, rruns: Runs, mlflow_real: str) -> None:
    from mlflow import MlflowClient

    created = runyard_cli(cluster, "sweep", "create", "-f", SWEEP, "-n", rruns.namespace)
    assert created.returncode == 0, created.stderr
    seen_running: list[int] = []

    def finished() -> dict[str, Any] | None:
        status = _sweep(rruns, "digits-lr").get("status") or {}
        seen_running.append(int(status.get("trialsRunning") or 0))
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_until(finished, timeout=900, interval=2, what="the sweep to end")
    assert status["phase"] == "Succeeded", status
    assert max(seen_running) == 2  # parallelism 2, and it was used
    trials = status["trials"]
    assert [t["name"] for t in trials] == [f"digits-lr-{i}" for i in range(6)]
    assert all(t["phase"] in ("Succeeded", "Pruned") for t in trials), trials
    assert len({t["params"]["lr"] for t in trials}) == 6
    succeeded = [t for t in trials if t["phase"] == "Succeeded"]
    assert status["best"]["value"] == max(t["value"] for t in succeeded)

    # Each trial is a full 2-node TrainingRun the sweep controls (owner reference), its lr in both pods' env.
    for trial in trials:
        run = rruns.get(trial["name"])
        (owner,) = run["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("TrainingRunSweep", "digits-lr", True)
        env = {e["name"]: e["value"] for e in run["spec"]["env"]}
        assert float(env["RUNYARD_EXAMPLE_LR"]) == trial["params"]["lr"]
        assert run["spec"]["replicas"]["node"]["replicas"] == 2

    # One parent run in MLflow, the trials its children.
    mlflow = MlflowClient(tracking_uri=mlflow_real)
    parent = mlflow.get_run(status["trackingRunId"])
    assert parent.info.status == "FINISHED" and parent.data.params["best_trial"] == status["best"]["name"]
    children = mlflow.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(r.data.tags["runyard.trial"] for r in children) == [str(i) for i in range(6)]

    best = runyard_cli(cluster, "sweep", "best", "digits-lr", "-n", rruns.namespace)
    assert best.returncode == 0 and json.loads(best.stdout)["name"] == status["best"]["name"], best.stderr
    shown = runyard_cli(cluster, "sweep", "status", "digits-lr", "-n", rruns.namespace)
    assert shown.returncode == 0 and "digits-lr-5" in shown.stdout and "VAL_ACCURACY" in shown.stdout
    table = cluster.kubectl("get", "sweep", "digits-lr", "-n", rruns.namespace).stdout
    assert "Succeeded" in table and status["best"]["name"] in table
