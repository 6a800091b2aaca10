"""The Lightning recipe: `mlflow_logger()` makes Lightning log into the Runyard run, against a real sqlite MLflow store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runyard import constants as c
from runyard.tracking import mlflow_ops
from runyard.tracking.lightning import logger_kwargs
from runyard.tracking.local import LocalTracking, start_local_tracking
from tests.unit.tracking.conftest import QUIET, THIRD_PARTY_WARNINGS, clean_env, make_tracked_run

pytestmark = THIRD_PARTY_WARNINGS
LIGHTNING_MAIN = Path(__file__).parent / "lightning_main.py"


def test_logger_kwargs_join_the_injected_run() -> None:
    env = {c.ENV_MLFLOW_RUN_ID: "r1", c.ENV_MLFLOW_TRACKING_URI: "http://mlflow:5000"}
    assert logger_kwargs(env) == {"run_id": "r1", "tracking_uri": "http://mlflow:5000"}
    # Explicit arguments win; outside Runyard they pass through untouched.
    assert logger_kwargs(env, run_id="mine", log_model=True) == {
        "run_id": "mine",
        "tracking_uri": "http://mlflow:5000",
        "log_model": True,
    }
    assert logger_kwargs({}, experiment_name="e") == {"experiment_name": "e"}


def _fit(lt: LocalTracking, how: str, cwd: Path) -> str:
    """One Lightning process with the env a local rank 0 gets; returns its output."""
    env = {**clean_env(), **QUIET, **lt.env, **lt.rank_env("node", 0, 0), c.ENV_RUN_NAME: "demo"}
    out = subprocess.run(
        [sys.executable, str(LIGHTNING_MAIN), how], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _runs(uri: str) -> dict[str, str]:
    """run id -> experiment name, over every experiment of the store."""
    client = mlflow_ops.client_for(uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    return {r.info.run_id: experiments[r.info.experiment_id] for r in client.search_runs(list(experiments))}


@pytest.mark.slow
@pytest.mark.torch
def test_lightning_logs_into_the_runyard_run_and_creates_no_other(tmp_path: Path) -> None:
    lt = start_local_tracking(make_tracked_run(experiment="exp"), state_dir=tmp_path / ".runyard", system_metrics=False)
    assert lt.tracking_uri and lt.run_id
    assert lt.run_id in _fit(lt, "runyard", tmp_path)

    assert _runs(lt.tracking_uri) == {lt.run_id: "exp"}
    client = mlflow_ops.client_for(lt.tracking_uri)
    run = client.get_run(lt.run_id)
    assert len(client.get_metric_history(lt.run_id, "lightning_loss")) == 4  # every step, into the tagged run
    assert run.data.tags[c.TAG_TRAININGRUN_UID] == make_tracked_run().metadata.uid

    # The gap the recipe closes: a plain MLFlowLogger() ignores MLFLOW_RUN_ID and writes a second, untagged run.
    _fit(lt, "plain", tmp_path)
    others = {rid: exp for rid, exp in _runs(lt.tracking_uri).items() if rid != lt.run_id}
    assert list(others.values()) == ["lightning_logs"]
    assert c.TAG_TRAININGRUN_UID not in client.get_run(next(iter(others))).data.tags
