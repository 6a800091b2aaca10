"""Local runs: how each framework maps to processes (plan_local), gang semantics, logs, and the CLI's exit code."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from runyard import cli
from runyard.api import TrainingRun
from runyard.exceptions import LocalRunError
from runyard.local import format_summary, plan_local, run_local
from runyard.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"


def example(name: str) -> TrainingRun:
    return TrainingRun.model_validate(yaml.safe_load((EXAMPLES / name).read_text()))


def generic(command: list[str], replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runyard.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "gen"},
        "spec": {
            "framework": "generic",
            "image": "i",
            "command": command,
            "replicas": {"node": {"replicas": replicas}},
            **spec,
        },
    }


def test_pytorch_plan_is_one_torchrun_per_node(tmp_path: Path) -> None:
    """The same launch as in a pod: torchrun without flags, which it reads from the PET_* env."""
    plan = plan_local(example("pytorch-ddp.yaml"), base_port=30000, run_dir=tmp_path, python="/py")
    assert [p.label for p in plan] == ["node-0", "node-1"]
    first, second = plan
    assert first.argv == ["/py", "-m", "torch.distributed.run", "examples/pytorch/train_digits.py"]
    assert (first.env["PET_NNODES"], first.env["PET_NODE_RANK"], first.env["PET_NPROC_PER_NODE"]) == ("2", "0", "1")
    assert (first.env["PET_MASTER_ADDR"], first.env["PET_MASTER_PORT"]) == ("127.0.0.1", "30000")
    assert second.env["PET_NODE_RANK"] == "1" and second.env["RANK"] == "1" and second.env["WORLD_SIZE"] == "2"
    assert second.env["PET_MASTER_PORT"] == "30000" and second.env["RUNYARD_EXAMPLE_BACKEND"] == "gloo"
    assert first.env["RUNYARD_ARTIFACT_DIR"] == str(tmp_path / "artifacts" / "node-0")


def test_pytorch_module_and_non_python_commands(tmp_path: Path) -> None:
    run = example("pytorch-ddp.yaml")
    run.spec.command = ["python", "-m", "pkg.train", "--lr", "1"]
    assert plan_local(run, base_port=30000, run_dir=tmp_path)[0].argv[-4:] == ["--module", "pkg.train", "--lr", "1"]
    # A command that is not python launches itself, as it does in a pod (wrapping it would start ranks twice).
    run.spec.command = ["bash", "train.sh"]
    assert plan_local(run, base_port=30000, run_dir=tmp_path)[0].argv == ["bash", "train.sh"]
    run.spec.command = ["torchrun", "t.py"]
    assert plan_local(run, base_port=30000, run_dir=tmp_path, python="/py")[0].argv == [
        "/py", "-m", "torch.distributed.run", "t.py"
    ]  # fmt: skip
    run.spec.command = None
    with pytest.raises(LocalRunError, match=r"spec\.command is required"):
        plan_local(run, base_port=30000, run_dir=tmp_path)


def test_tensorflow_plan_has_tf_config_per_replica(tmp_path: Path) -> None:
    plan = plan_local(example("tensorflow-multiworker.yaml"), base_port=30000, run_dir=tmp_path, python="/py")
    assert [p.label for p in plan] == ["chief-0", "worker-0", "worker-1", "ps-0"]
    config = json.loads(plan[2].env["TF_CONFIG"])
    assert config["task"] == {"type": "worker", "index": 1}
    assert config["cluster"]["worker"] == ["127.0.0.1:30200", "127.0.0.1:30201"]
    assert config["cluster"]["chief"] == ["127.0.0.1:30100"] and config["cluster"]["ps"] == ["127.0.0.1:30300"]
    assert plan[0].argv == ["/py", "examples/tensorflow/train.py"]


def test_jax_plan_has_coordinator_env(tmp_path: Path) -> None:
    plan = plan_local(example("jax-multiprocess.yaml"), base_port=30000, run_dir=tmp_path)
    assert [(p.env["JAX_PROCESS_ID"], p.env["JAX_NUM_PROCESSES"]) for p in plan] == [("0", "2"), ("1", "2")]
    assert {p.env["JAX_COORDINATOR_ADDRESS"] for p in plan} == {"127.0.0.1:30000"}


def test_mpi_plan_runs_only_the_launcher_with_a_local_hostfile(tmp_path: Path) -> None:
    (launcher,) = plan_local(example("mpi-allreduce.yaml"), base_port=30000, run_dir=tmp_path)
    assert launcher.label == "launcher-0"
    assert launcher.argv[0] == "mpirun" and "--oversubscribe" in launcher.argv
    assert ("--allow-run-as-root" in launcher.argv) == (os.geteuid() == 0)
    assert launcher.argv[-2:] == ["python", "examples/mpi/allreduce.py"]
    hostfile = Path(launcher.env["OMPI_MCA_orte_default_hostfile"])
    assert hostfile == tmp_path / "hostfile" and hostfile.read_text() == "127.0.0.1 slots=2\n"
    assert "OMPI_MCA_plm_rsh_args" not in launcher.env and "NVIDIA_VISIBLE_DEVICES" not in launcher.env


def test_resume_from_reaches_every_replica(tmp_path: Path) -> None:
    plan = plan_local(example("jax-multiprocess.yaml"), base_port=30000, run_dir=tmp_path, resume_from="/ckpt/x.pt")
    assert {p.env["RUNYARD_RESUME_FROM"] for p in plan} == {"/ckpt/x.pt"}


def test_value_from_env_is_left_unset_with_a_warning(tmp_path: Path) -> None:
    manifest = generic(
        ["python", "x.py"], env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    )
    warnings: list[str] = []
    plan = plan_local(TrainingRun.model_validate(manifest), base_port=30000, run_dir=tmp_path, warn=warnings.append)
    assert all("TOKEN" not in p.env for p in plan)
    assert warnings == ["env TOKEN: valueFrom is not available in local runs; left unset"]


def test_generic_run_streams_prefixed_lines_and_records_the_run(tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []
    code = "import os; print('replica', os.environ['RUNYARD_REPLICA_INDEX'], 'of', os.environ['RUNYARD_NUM_REPLICAS'])"
    result = run_local(
        generic(["python", "-c", code], replicas=3),
        state_dir=tmp_path,
        on_line=lambda label, line: lines.append((label, line)),
    )
    assert result.succeeded and result.exit_code == 0
    assert sorted(lines) == [("node-0", "replica 0 of 3"), ("node-1", "replica 1 of 3"), ("node-2", "replica 2 of 3")]
    assert (result.log_dir / "node-2.log").read_text() == "replica 2 of 3\n"
    assert result.run_dir.parent == tmp_path / "runs" and result.run_dir.name.startswith("gen-")
    recorded = json.loads((result.run_dir / "result.json").read_text())
    assert recorded["succeeded"] is True and recorded["replicas"] == {"node-0": 0, "node-1": 0, "node-2": 0}
    assert "Succeeded" in format_summary(result)
    assert recorded["artifact_files"] == 0 and (result.artifact_dir / "manifest.json").exists()


def test_one_failing_replica_fails_the_gang_and_stops_the_others(tmp_path: Path) -> None:
    code = "import os, sys, time; i = int(os.environ['RUNYARD_REPLICA_INDEX']); time.sleep(0 if i else 60); sys.exit(7)"
    started = time.monotonic()
    result = run_local(generic(["python", "-c", code]), state_dir=tmp_path, on_line=lambda *a: None)
    assert time.monotonic() - started < 30, "the sleeping replica must have been terminated"
    assert not result.succeeded and result.exit_code == 1
    assert result.failure is not None and result.failure.label == "node-1" and result.failure.returncode == 7
    assert "node-1 exited with code 7" in result.reason
    assert [r.terminated for r in result.replicas] == [True, False]


def test_timeout_fails_the_run(tmp_path: Path) -> None:
    result = run_local(
        generic(["python", "-c", "import time; time.sleep(60)"], replicas=1), state_dir=tmp_path, timeout=1
    )
    assert result.exit_code == 1 and result.reason == "timed out after 1s"


def test_cli_run_local_exits_with_the_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(generic(["python", "-c", "print('hi')"], replicas=1)))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(generic(["python", "-c", "import sys; sys.exit(3)"], replicas=1)))
    runner = CliRunner()
    good = runner.invoke(cli.app, ["run", "--local", str(ok)])
    assert good.exit_code == 0, good.output
    assert "run gen (generic): Succeeded" in good.output and "run dir:   .runyard/runs/gen-" in good.output
    failed = runner.invoke(cli.app, ["run", "--local", str(bad)])
    assert failed.exit_code == 1 and "node-0 exited with code 3" in failed.output


def test_missing_launcher_is_a_local_run_error(tmp_path: Path) -> None:
    with pytest.raises(LocalRunError, match="no-such-launcher not found"):
        run_local(generic(["no-such-launcher"], replicas=1), state_dir=tmp_path)


@pytest.mark.mpi
def test_mpi_example_runs_locally(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_local(EXAMPLES / "mpi-allreduce.yaml", state_dir=tmp_path, cwd=ROOT, timeout=120,
                       on_line=lambda label, line: lines.append(f"[{label}] {line}"))  # fmt: skip
    assert result.succeeded, "\n".join(lines)
    assert any(line.endswith("allreduce over 2 ranks: ok") for line in lines), lines


def test_jax_example_runs_locally(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_local(EXAMPLES / "jax-multiprocess.yaml", state_dir=tmp_path, cwd=ROOT, timeout=180,
                       on_line=lambda label, line: lines.append(f"[{label}] {line}"))  # fmt: skip
    assert result.succeeded, "\n".join(lines)
    assert any(line.startswith("[node-1] process 1/2: w=") for line in lines)


# mlflow's SQL store trips SQLAlchemy/pydantic deprecation warnings that pytest would turn into errors.
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.torch
@pytest.mark.slow
def test_pytorch_example_runs_locally_with_tracking_and_checkpoints(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from runyard.plot import plot_run_dir

    lines: list[str] = []
    env = {"RUNYARD_EXAMPLE_EPOCHS": "2"}
    run = example("pytorch-ddp.yaml")
    run.spec.tracking.params = {"lr": "0.05", "epochs": "2"}  # type: ignore[union-attr]
    result = run_local(run, state_dir=tmp_path, cwd=ROOT, timeout=300, env=env,
                       on_line=lambda label, line: lines.append(f"[{label}] {line}"))  # fmt: skip
    assert result.succeeded, "\n".join(lines)
    assert result.run_id and result.tracking_uri
    client = MlflowClient(result.tracking_uri)
    tracked = client.get_run(result.run_id)
    assert tracked.info.status == "FINISHED"
    keys = set(tracked.data.metrics)
    assert {"loss", "accuracy", "val_accuracy", "rank_0/loss", "rank_1/loss", "rank_1/accuracy"} <= keys
    steps = [m.step for m in client.get_metric_history(result.run_id, "rank_1/loss")]
    assert steps == sorted(steps) and len(steps) == 2 * 23  # 1437 training images, 2 ranks, batch 32, drop_last
    assert result.metrics["val_accuracy"] > 0.7
    node0 = result.artifact_dir / "node-0"
    assert (node0 / "checkpoints" / "step-000023.pt").exists() and (node0 / "checkpoints" / "step-000046.pt").exists()
    assert (node0 / "model.pt").exists()
    # The manifest holds a sha256 per file and the tracked run points at it.
    manifest = json.loads((result.artifact_dir / "manifest.json").read_text())
    entries = {f["path"]: f for f in manifest["files"]}
    model = next(f for p, f in entries.items() if p.endswith("node-0/model.pt"))
    assert model["sha256"] == hashlib.sha256((node0 / "model.pt").read_bytes()).hexdigest()
    tags = client.get_run(result.run_id).data.tags
    assert tags["runyard.artifacts.location"] and tags["runyard.artifacts.newest_checkpoint"].endswith("step-000046.pt")
    assert "manifest.json" in [a.path for a in client.list_artifacts(result.run_id)]
    png = plot_run_dir(result.run_dir)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.torch
@pytest.mark.slow
def test_pytorch_example_runs_unchanged_as_a_kubeflow_style_script(tmp_path: Path) -> None:
    import subprocess

    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RUNYARD_"))}
    procs = [
        subprocess.Popen(
            [sys.executable, str(EXAMPLES / "pytorch" / "train_digits.py"), "--epochs", "1"],
            env={
                **base,
                "WORLD_SIZE": "2",
                "RANK": str(rank),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "RUNYARD_ARTIFACT_DIR": str(tmp_path / f"rank{rank}"),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "rank 1/2" in outputs[1] and (tmp_path / "rank0" / "model.pt").exists()


def _two_ranks(tmp_path: Path, extra: dict[str, str]) -> list[subprocess.Popen[str]]:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RUNYARD_"))}
    env = {**base, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), **extra}
    return [
        subprocess.Popen(
            [sys.executable, str(EXAMPLES / "pytorch" / "train_digits.py"), "--epochs", "10"],
            env={**env, "RANK": str(rank), "RUNYARD_ARTIFACT_DIR": str(tmp_path / f"rank{rank}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]


@pytest.mark.torch
@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_at_one_step_with_a_checkpoint_and_they_resume_there(tmp_path: Path) -> None:
    # What a suspension or a Kueue preemption does to a pod, with real torch (gloo): SIGTERM, then the grace period.
    procs = _two_ranks(tmp_path, {"RUNYARD_EXAMPLE_STEP_DELAY": "0.05"})
    assert procs[1].stdout is not None
    for line in procs[1].stdout:
        if "steps per epoch" in line:  # printed once runyard.should_stop() has taken SIGTERM over
            break
    # Only rank 1 is told: the flag travels in the loss all-reduce, so rank 0 stops after the same step and saves.
    procs[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [143, 143], outputs
    saved = sorted((tmp_path / "rank0" / "checkpoints").glob("step-*.pt"))
    assert len(saved) == 1 and "stop requested: saved" in outputs[0], outputs
    step = int(saved[0].stem.removeprefix("step-"))
    assert 1 <= step < 230 and not (tmp_path / "rank0" / "model.pt").exists()

    resumed = _two_ranks(tmp_path, {"RUNYARD_RESUME_FROM": str(tmp_path / "rank0")})
    outputs = [p.communicate(timeout=240)[0] for p in resumed]
    assert [p.returncode for p in resumed] == [0, 0], outputs
    for rank, output in enumerate(outputs):
        assert f"rank {rank}: resumed from {saved[0]} at step {step}" in output, output
    assert (tmp_path / "rank0" / "model.pt").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.slow
def test_xgboost_example_trains_across_two_workers_locally(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_local(EXAMPLES / "xgboost.yaml", state_dir=tmp_path, cwd=ROOT, timeout=300,
                       on_line=lambda label, line: lines.append(f"[{label}] {line}"))  # fmt: skip
    assert result.succeeded, "\n".join(lines)
    # Both workers joined one collective: each reports the digest of the model rank 0 broadcast.
    digests = [line.split("model sha256 ")[1].split()[0] for line in lines if "matches rank 0" in line]
    assert len(digests) == 2 and len(set(digests)) == 1, lines
    assert {"valid_merror", "valid_mlogloss", "rank_0/round_seconds", "rank_1/round_seconds"} <= set(result.metrics)
    assert result.metrics["valid_merror"] < 0.1
    assert (result.artifact_dir / "node-0" / "model.json").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.torch
@pytest.mark.slow
def test_deepspeed_example_trains_through_its_own_launcher_locally(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_local(EXAMPLES / "deepspeed.yaml", state_dir=tmp_path, cwd=ROOT, timeout=600,
                       on_line=lambda label, line: lines.append(f"[{label}] {line}"))  # fmt: skip
    assert result.succeeded, "\n".join(lines[-60:])
    # DeepSpeed's runner, given the run's hostfile, forked both ranks itself (no SSH locally).
    assert any("deepspeed.launcher.launch" in line for line in lines), lines[:20]
    assert sum("weights agree across 2 ranks" in line for line in lines) == 2, lines[-40:]
    assert {"loss", "val_accuracy", "rank_0/loss", "rank_1/loss"} <= set(result.metrics)
    assert (result.artifact_dir / "launcher-0" / "model.pt").exists()
