"""`runyard compare`: two local runs tracked in a real MLflow store (and a cluster run's record from its status) side
by side, as a table with the differing rows marked, as JSON, and as one PNG overlaying their curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from runyard.api import TrainingRun
from runyard.cli import app
from runyard.compare import RunRecord, best_of, record_from_cluster, table
from runyard.tracking.local import start_local_tracking
from tests.unit.tracking.conftest import make_tracked_run

runner = CliRunner()


def test_best_is_the_lowest_loss_and_the_highest_accuracy() -> None:
    assert best_of("loss", [0.9, 0.2, 0.4]) == 0.2
    assert best_of("val/error_rate", [3.0, 1.0]) == 1.0
    assert best_of("accuracy", [0.5, 0.9, 0.8]) == 0.9


def test_table_marks_the_rows_that_differ() -> None:
    a = RunRecord("a", "local", "Succeeded", "pytorch", "img:1", "python t.py", "abc", 61.0, 0.5, 0.01,
                  params={"lr": "0.1"}, final={"loss": 0.3}, best={"loss": 0.25})  # fmt: skip
    b = RunRecord("b", "local", "Succeeded", "pytorch", "img:1", "python t.py", "abc", 3725.0, None, None,
                  params={"lr": "0.01", "batch": "64"}, final={"loss": 0.2}, best={"loss": 0.2})  # fmt: skip
    headers, rows = table([a, b])
    assert headers == ["field", "a", "b"]
    shown = {r[0]: r[1:] for r in rows}
    assert shown["  outcome"] == ["Succeeded", "Succeeded"] and shown["  image"] == ["img:1", "img:1"]
    assert shown["* duration"] == ["1m01s", "1h02m05s"] and shown["* GPU-hours"] == ["0.5", "-"]
    assert shown["* param lr"] == ["0.1", "0.01"] and shown["* param batch"] == ["-", "64"]
    assert shown["* final loss"] == ["0.3", "0.2"] and shown["* best loss"] == ["0.25", "0.2"]


def test_a_cluster_runs_record_comes_from_its_spec_and_status() -> None:
    run = TrainingRun.model_validate(
        {
            "metadata": {"name": "llm", "namespace": "team", "annotations": {"runyard.dev/git-commit": "f00d"}},
            "spec": {
                "framework": "pytorch",
                "image": "img:2",
                "command": ["python", "x.py"],
                "args": ["--lr", "1"],
                "replicas": {"node": {"replicas": 2}},
            },
            "status": {
                "phase": "Succeeded",
                "startTime": "2026-12-05T10:00:00Z",
                "completionTime": "2026-12-05T10:30:00Z",
                "gpu": {"gpuHours": 8.0, "energyKWh": 3.2},
                "tracking": {"mlflow": {"runId": "r1"}},
            },
        }
    )
    record = record_from_cluster(run)
    assert (record.name, record.source, record.outcome, record.run_id) == ("team/llm", "cluster", "Succeeded", "r1")
    assert (record.command, record.git_commit, record.duration_seconds) == ("python x.py --lr 1", "f00d", 1800.0)
    assert (record.gpu_hours, record.energy_kwh) == (8.0, 3.2)


def local_run(state: Path, name: str, lr: str, losses: list[float]) -> Path:
    run = make_tracked_run(name, uid=f"uid-{name}", params={"lr": lr})
    lt = start_local_tracking(run, state_dir=state)
    for step, loss in enumerate(losses):
        lt.log_metrics(step, {"loss": loss, "accuracy": 1 - loss})
    lt.log_metrics(0, {"system/ws/gpu_0_utilization_percentage": 90.0})  # telemetry: not a result
    lt.finish("FINISHED")
    run_dir = state / "runs" / name
    run_dir.mkdir(parents=True)
    (run_dir / "trainingrun.yaml").write_text(
        yaml.safe_dump(run.model_dump(mode="json", by_alias=True, exclude_none=True))
    )
    result = {"name": name, "framework": "pytorch", "succeeded": True, "duration_seconds": 42.0,
              "tracking_uri": lt.tracking_uri, "run_id": lt.run_id, "gpu": {"gpu_hours": 0.02, "energy_kwh": 0.001}}  # fmt: skip
    (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_compare_local_runs_as_table_json_and_plot(tmp_path: Path) -> None:
    state = tmp_path / ".runyard"
    fast = local_run(state, "fast", "0.1", [0.9, 0.5, 0.2, 0.3])
    slow = local_run(state, "slow", "0.01", [0.9, 0.8, 0.7])
    shown = runner.invoke(app, ["compare", str(fast), str(slow), "--plot", str(tmp_path / "cmp.png")])
    assert shown.exit_code == 0, shown.output
    lines = {line.split("   ")[0].strip(): line for line in shown.output.splitlines()}
    assert "0.1" in lines["* param lr"] and "0.01" in lines["* param lr"]
    assert lines["* final loss"].split()[-2:] == ["0.3", "0.7"]
    assert lines["* best loss"].split()[-2:] == ["0.2", "0.7"]
    assert lines["* best accuracy"].split()[-2:] == ["0.8", "0.3"]
    assert "GPU-hours" in shown.output and not any("system/" in line for line in lines)
    assert (tmp_path / "cmp.png").stat().st_size > 0 and "plot: " in shown.output

    as_json = runner.invoke(app, ["compare", str(fast), str(slow), "-o", "json", "-m", "loss"])
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.output)
    assert [(r["source"], r["params"], r["final"]) for r in records] == [
        ("local", {"lr": "0.1"}, {"loss": 0.3}),
        ("local", {"lr": "0.01"}, {"loss": 0.7}),
    ]
    assert records[0]["git_commit"] == "abc123" and records[0]["gpu_hours"] == 0.02

    alone = runner.invoke(app, ["compare", str(fast)])
    assert alone.exit_code == 2 and "at least two runs" in alone.output
