"""A local sweep of real training: 6 trials of the 2-rank PyTorch example, 2 at a time, as MLflow children."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard import constants as c
from runyard.local_sweep import run_sweep_local

ROOT = Path(__file__).resolve().parents[3]
pytest.importorskip("torch")
pytest.importorskip("optuna")
# The real MLflow client (mlflow -> sqlalchemy) emits deprecation noise that is not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


def test_six_trials_two_at_a_time_nested_under_one_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(ROOT)
    before = set(ROOT.glob("mlruns/*/*"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_sweep_local(
        ROOT / "examples" / "sweeps" / "digits-lr.yaml", state_dir=tmp_path / "state", tracking_uri=uri
    )
    assert [t.name for t in result.trials] == [f"digits-lr-{i}" for i in range(6)]
    assert all(t.state == "succeeded" for t in result.trials), result.trials
    assert all(t.value is not None and 0.0 <= t.value <= 1.0 for t in result.trials)
    assert len({t.params["lr"] for t in result.trials}) == 6
    assert all(0.005 <= t.params["lr"] <= 0.5 for t in result.trials)
    assert result.best is not None and result.best.value == max(t.value or 0 for t in result.trials)
    assert all(len(t.history) == 2 for t in result.trials)  # one val_accuracy per epoch

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(result.parent_run_id or "")
    assert parent.info.status == "FINISHED" and parent.data.params["best_trial"] == result.best.name
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{c.TAG_MLFLOW_PARENT_RUN_ID}` = '{parent.info.run_id}'"
    )
    assert sorted(r.data.tags["runyard.trial"] for r in children) == [str(i) for i in range(6)]
    assert all(r.data.params["lr"] for r in children)
    # Two at a time: some trials overlap, never three.
    spans = [(r.info.start_time, r.info.end_time) for r in children]
    overlaps = [sum(1 for s, e in spans if s <= t < e) for t, _ in spans]
    assert max(overlaps) == 2
    # Every trial's files are under the state directory, none in MLflow's default ./mlruns of the working directory
    # (a sweep that created the experiment without a location once wrote them into the repository).
    manifests = list((tmp_path / "state" / c.LOCAL_MLFLOW_ARTIFACTS).glob("*/artifacts/manifest.json"))
    assert len(manifests) == 6, manifests
    assert set(ROOT.glob("mlruns/*/*")) == before
