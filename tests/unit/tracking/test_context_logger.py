"""runyard.context() from injected env, per-process W&B/TensorBoard adjustments, and the batched MetricLogger."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard import constants as c
from runyard.context import apply_process_env, read_context
from tests.unit.tracking.conftest import THIRD_PARTY_WARNINGS

POD = {
    c.ENV_RUN_NAME: "llm",
    c.ENV_RUN_UID: "u-1",
    c.ENV_NAMESPACE: "team-a",
    c.ENV_ROLE: "node",
    c.ENV_REPLICA_INDEX: "1",
    c.ENV_RANK_LABEL: "node-1",
    c.ENV_OUTPUT_DIR: "/runyard/artifacts/outputs/node-1",
    c.ENV_ARTIFACT_DIR: "/runyard/artifacts",
    c.ENV_TENSORBOARD_DIR: "/runyard/artifacts/tensorboard/node-1",
    c.ENV_TRACKERS: "mlflow,wandb",
    c.ENV_MLFLOW_RUN_ID: "r1",
    c.ENV_WANDB_RUN_ID: "w1",
    "WORLD_SIZE": "16",
    "RANK": "8",
    "LOCAL_RANK": "0",
    "LOCAL_WORLD_SIZE": "8",
}


def test_read_context_from_pod_env() -> None:
    ctx = read_context(POD)
    assert (ctx.rank, ctx.local_rank, ctx.world_size, ctx.local_world_size) == (8, 0, 16, 8)
    assert (ctx.run_name, ctx.run_uid, ctx.namespace, ctx.role, ctx.replica_index) == (
        "llm",
        "u-1",
        "team-a",
        "node",
        1,
    )
    assert ctx.output_dir == Path("/runyard/artifacts/outputs/node-1")
    assert ctx.tensorboard_dir == Path("/runyard/artifacts/tensorboard/node-1/local-0")
    assert ctx.resume_from is None and not ctx.is_primary and ctx.in_runyard
    assert ctx.tracker_ids == {"mlflow": "r1", "wandb": "w1"}
    assert ctx.trackers == ("mlflow", "wandb")
    assert read_context({**POD, c.ENV_RESUME_FROM: "/ckpt/7"}).resume_from == "/ckpt/7"


def test_outside_runyard_is_rank_zero_of_one() -> None:
    ctx = read_context({})
    assert (ctx.rank, ctx.world_size, ctx.run_name, ctx.in_runyard, ctx.is_primary) == (0, 1, None, False, True)


def test_wandb_primary_promoted_only_on_global_rank_zero() -> None:
    shared = {c.ENV_WANDB_PRIMARY_LABEL: "node-0", c.ENV_WANDB_X_PRIMARY: "false", "LOCAL_WORLD_SIZE": "1"}
    env = {**POD, **shared, c.ENV_RANK_LABEL: "node-0", "RANK": "0"}
    apply_process_env(read_context(env), env)
    assert env[c.ENV_WANDB_X_PRIMARY] == "true" and env[c.ENV_WANDB_X_UPDATE_FINISH_STATE] == "true"
    other = {**POD, **shared}
    apply_process_env(read_context(other), other)
    assert other[c.ENV_WANDB_X_PRIMARY] == "false"


def test_context_function_applies_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import runyard

    for k, v in POD.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LOCAL_RANK", "3")
    ctx = runyard.context()
    assert ctx.local_rank == 3
    assert os.environ[c.ENV_TENSORBOARD_DIR] == "/runyard/artifacts/tensorboard/node-1/local-3"


@pytest.mark.slow
@THIRD_PARTY_WARNINGS[0]
@THIRD_PARTY_WARNINGS[1]
@THIRD_PARTY_WARNINGS[2]
def test_metric_logger_batches_and_flushes_on_close(tmp_path: Path) -> None:
    from runyard.tracking import mlflow_ops
    from runyard.tracking.logger import MetricLogger

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow_ops.client_for(uri)
    exp = mlflow_ops.ensure_experiment(client, "e", (tmp_path / "a").as_uri())
    run_id = client.create_run(exp).info.run_id
    log = MetricLogger(run_id=run_id, tracking_uri=uri, max_buffer=5, flush_interval=3600)
    for step in range(7):
        log.log({"loss": 1.0 / (step + 1)}, step=step)
    # Five went out when the buffer filled; two wait for close().
    assert len(client.get_metric_history(run_id, "loss")) == 5
    log.close()
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(7))
    log.log({"late": 1.0})  # after close: dropped, no error
    assert "late" not in client.get_run(run_id).data.metrics


def test_metric_logger_without_run_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    from runyard.tracking.logger import MetricLogger

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    log = MetricLogger()
    assert not log.enabled
    log.log({"x": 1.0})
    log.close()
