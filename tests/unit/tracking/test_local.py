"""Local tracking against a real sqlite MLflow store: two rank processes with plain mlflow calls land in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard import constants as c
from runyard.tracking import mlflow_ops
from runyard.tracking.local import default_tracking_uri, start_local_tracking
from tests.unit.factories import UID
from tests.unit.tracking.conftest import THIRD_PARTY_WARNINGS, make_tracked_run, run_ranks

pytestmark = [pytest.mark.slow, *THIRD_PARTY_WARNINGS]


def _rank_env(lt, i: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    # What the local runner merges: builder values it owns (role, index, run name) plus the tracking env.
    return {
        c.ENV_RUN_NAME: "demo",
        c.ENV_ROLE: "node",
        c.ENV_REPLICA_INDEX: str(i),
        **lt.env,
        **lt.rank_env("node", i, i),
    }


def test_two_ranks_one_run_with_tags_params_artifacts(tmp_path: Path) -> None:
    run = make_tracked_run(params={"lr": "0.001", "batch": "32"}, trackers=["mlflow", "tensorboard"], experiment="exp")
    lt = start_local_tracking(run, state_dir=tmp_path / ".runyard")
    assert lt.tracking_uri == default_tracking_uri(tmp_path / ".runyard")
    assert (tmp_path / ".runyard" / "mlflow.db").exists()
    assert lt.url and lt.run_id and "mlflow ui --backend-store-uri sqlite:///" in lt.url and lt.run_id in lt.url

    run_ranks([_rank_env(lt, 0), _rank_env(lt, 1)], tmp_path)
    lt.finish("FINISHED")

    client = mlflow_ops.client_for(lt.tracking_uri or "")
    runs = client.search_runs([lt.experiment_id or ""])
    assert [r.info.run_id for r in runs] == [lt.run_id]
    data = runs[0].data
    assert runs[0].info.status == "FINISHED"
    assert {"rank_marker/node-0", "rank_marker/node-1"} <= set(data.metrics)
    assert data.params == {"lr": "0.001", "batch": "32"}
    assert data.tags[c.TAG_TRAININGRUN_UID] == UID
    assert data.tags[c.TAG_K8S_FRAMEWORK] == "pytorch"
    assert data.tags[c.TAG_K8S_GPUS_PER_REPLICA] == "node=1"
    assert data.tags[c.TAG_MLFLOW_GIT_COMMIT] == "abc123"
    assert data.tags["mlflow.runName"] == "demo"
    artifacts = {a.path for a in client.list_artifacts(lt.run_id or "", "ranks")}
    assert artifacts == {"ranks/node-0.txt", "ranks/node-1.txt"}
    assert str(runs[0].info.artifact_uri).startswith((tmp_path / ".runyard" / "mlartifacts").as_uri())
    # Each rank wrote its own TensorBoard directory under the shared root.
    tb_root = tmp_path / ".runyard" / "tensorboard"
    assert sorted(p.name for p in tb_root.iterdir()) == ["node-0", "node-1"]
    assert all(list(d.glob("events.out.tfevents.*")) for d in tb_root.iterdir())
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # type: ignore[import-untyped]

    losses = {d.name: EventAccumulator(str(d)).Reload().Scalars("loss")[0].value for d in tb_root.iterdir()}
    assert losses == {"node-0": 0.5, "node-1": 1.5}
    metrics = lt.final_metrics()
    assert metrics["rank_marker/node-1"] == 1.0 and "loss" in metrics

    # Idempotent: a second start for the same UID reuses the run (found by its uid tag) instead of creating one.
    again = start_local_tracking(run, state_dir=tmp_path / ".runyard")
    assert again.run_id == lt.run_id
    assert len(client.search_runs([lt.experiment_id or ""])) == 1


def test_env_uri_wins_over_default_and_statuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    lt = start_local_tracking(make_tracked_run(uid="aaaaaaaa-2222-3333-4444-555555555555"), state_dir=tmp_path / "s")
    assert lt.tracking_uri == uri and lt.env[c.ENV_MLFLOW_TRACKING_URI] == uri
    assert lt.rank_env("node", 1, 1)[c.ENV_MLFLOW_SYSTEM_METRICS_NODE_ID] == "node-1"
    client = mlflow_ops.client_for(uri)
    lt.finish("KILLED")
    assert client.get_run(lt.run_id or "").info.status == "KILLED"
    lt.finish("FAILED")
    assert client.get_run(lt.run_id or "").info.status == "FAILED"
    with pytest.raises(ValueError):
        lt.finish("DONE")  # type: ignore[arg-type]
    assert lt.ids == {"mlflow": lt.run_id}


def test_without_mlflow_no_store_is_created(tmp_path: Path) -> None:
    lt = start_local_tracking(make_tracked_run(trackers=["tensorboard"]), state_dir=tmp_path)
    assert lt.run_id is None and lt.url is None and lt.final_metrics() == {}
    lt.finish("FINISHED")
    assert not (tmp_path / "mlflow.db").exists()
    assert lt.rank_env("node", 0, 0)[c.ENV_TENSORBOARD_DIR] == f"{tmp_path}/tensorboard/node-0"


def test_wandb_and_comet_offline_ranks_share_ids(tmp_path: Path) -> None:
    lt = start_local_tracking(make_tracked_run(), state_dir=tmp_path, trackers=["wandb", "comet"])
    offline = {"WANDB_MODE": "offline", "COMET_START_ONLINE": "false"}
    run_ranks([{**_rank_env(lt, i), **offline} for i in (0, 1)], tmp_path)
    wandb_id = lt.ids["wandb"]
    for label in ("node-0", "node-1"):
        files = list((tmp_path / "wandb" / label / "wandb").glob(f"offline-run-*-{wandb_id}/run-{wandb_id}.wandb"))
        assert len(files) == 1, label
    import json
    import zipfile

    key = lt.ids["comet"]
    for label in ("node-0", "node-1"):
        zips = list((tmp_path / f"comet-{label}").glob(f"{key}-*.zip"))
        assert len(zips) == 1, label
        with zipfile.ZipFile(zips[0]) as z:
            assert json.loads(z.read("experiment.json"))["offline_id"] == key
