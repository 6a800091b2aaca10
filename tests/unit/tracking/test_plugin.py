"""The operator's TrackingPlugin against a real sqlite MLflow store, with a fake PluginContext (no cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import pytest

from runyard import constants as c
from runyard.tracking import mlflow_ops
from runyard_operator.config import OperatorConfig
from runyard_operator.observe import PodView
from runyard_operator.plugins import PluginContext, build_plugins
from runyard_operator.tracking.plugin import TrackingPlugin
from tests.unit.factories import UID
from tests.unit.tracking.conftest import THIRD_PARTY_WARNINGS, make_tracked_run

pytestmark = [pytest.mark.slow, *THIRD_PARTY_WARNINGS]
SECRET = {"name": "mlflow-creds", "key": "password"}


def _pod(index: int, node: str) -> PodView:
    return PodView(
        name=f"demo-node-{index}", uid=f"p{index}", run_uid=UID, role="node", attempt=0, index=index,
        phase="Succeeded", node=node, ready=False, unschedulable_message="", termination=None, gpus=1,
        deleting=False, start_time="", reason="", message="",
    )  # fmt: skip


class FakeCtx:
    def __init__(self) -> None:
        self.bodies: dict[tuple[str, str], dict[str, Any]] = {}

    def context(self) -> PluginContext:
        return PluginContext(
            kube=cast(Any, None),
            runs=lambda: list(self.bodies.items()),
            pods_of=lambda uid: [_pod(0, "kwok-gpu-0"), _pod(1, "kwok-gpu-1")],
            reconcile=lambda key: None,
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{path / 'db'}"
    mlflow_ops.ensure_experiment(mlflow_ops.client_for(uri), "team-a", (path / "art").as_uri())
    return uri


def _plugin(uri: str, **tracking: Any) -> TrackingPlugin:
    config = OperatorConfig.model_validate(
        {
            "tracking": {
                "mlflow": {"trackingUri": uri, "podTrackingUri": "http://mlflow.mlops:5000", "uiUrl": "http://ui/",
                           "password": SECRET, "username": {"name": "mlflow-creds", "key": "user"},
                           "systemMetrics": True},
                "secretEnv": {"wandb": {"WANDB_API_KEY": {"name": "wandb", "key": "key"}}},
                "sweepIntervalSeconds": 3600,
                **tracking,
            }
        }
    )  # fmt: skip
    plugin = TrackingPlugin.from_config(config)
    assert plugin is not None
    return plugin


def _env(prepared_env: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in prepared_env}


def test_build_plugins_includes_tracking_and_needs_finalizer_only_with_mlflow(store: str) -> None:
    assert any(isinstance(p, TrackingPlugin) for p in build_plugins(OperatorConfig()))
    run = make_tracked_run()
    assert not TrackingPlugin(OperatorConfig().tracking).needs_finalizer(run)
    assert _plugin(store).needs_finalizer(run)
    assert not _plugin(store).needs_finalizer(make_tracked_run(trackers=["wandb"]))


def test_prepare_is_idempotent_and_renders_env(store: str) -> None:
    uid = "0000aaaa-2222-3333-4444-555555555555"
    run = make_tracked_run(uid=uid, params={"lr": "0.1"}, trackers=["mlflow", "wandb"])
    plugin = _plugin(store)
    first = asyncio.run(plugin.prepare(run, {}))
    tracking = first.status["tracking"]
    run_id, exp = tracking["mlflow"]["runId"], tracking["mlflow"]["experimentId"]
    assert tracking["url"] == f"http://ui/#/experiments/{exp}/runs/{run_id}"
    assert tracking["ids"] == {"wandb": uid.replace("-", "")}
    env = _env(first.env)
    assert env[c.ENV_MLFLOW_TRACKING_URI] == "http://mlflow.mlops:5000"
    assert env[c.ENV_MLFLOW_RUN_ID] == run_id and env[c.ENV_MLFLOW_EXPERIMENT_ID] == exp
    assert env[c.ENV_MLFLOW_SYSTEM_METRICS_NODE_ID] == "$(RUNYARD_ROLE)-$(RUNYARD_REPLICA_INDEX)"
    assert env[c.ENV_MLFLOW_TRACKING_PASSWORD] == {"secretKeyRef": SECRET}
    assert env["WANDB_API_KEY"] == {"secretKeyRef": {"name": "wandb", "key": "key"}}
    # Gang restart (status known) and crash-before-status-write (status empty) both reuse the run.
    assert asyncio.run(plugin.prepare(run, first.status)).status["tracking"]["mlflow"]["runId"] == run_id
    assert asyncio.run(_plugin(store).prepare(run, {})).status["tracking"]["mlflow"]["runId"] == run_id
    client = mlflow_ops.client_for(store)
    runs = client.search_runs([exp], filter_string=f"tags.`{c.TAG_TRAININGRUN_UID}` = '{uid}'")
    assert len(runs) == 1 and runs[0].data.params == {"lr": "0.1"}
    assert runs[0].data.tags[c.TAG_K8S_NAMESPACE] == "team-a"


def test_finished_deleted_and_sweep_set_terminal_status(store: str) -> None:
    client = mlflow_ops.client_for(store)
    fake = FakeCtx()
    plugin = _plugin(store)

    async def scenario() -> None:
        await plugin.start(fake.context())
        try:
            ok = make_tracked_run(uid="0000bbbb-2222-3333-4444-555555555555")
            st = (await plugin.prepare(ok, {})).status
            ok_id = st["tracking"]["mlflow"]["runId"]
            client.set_terminated(ok_id, "FINISHED")  # a rank ended the run early ...
            await plugin.finished(ok, {**st, "phase": "Failed", "nodes": ["kwok-gpu-1", "kwok-gpu-0"]})
            run = client.get_run(ok_id)  # ... but the TrainingRun's outcome wins
            assert run.info.status == "FAILED"
            assert run.data.tags[c.TAG_K8S_NODES] == "kwok-gpu-0,kwok-gpu-1"
            assert run.data.tags["k8s.node.node-1"] == "kwok-gpu-1"

            killed = make_tracked_run(uid="0000cccc-2222-3333-4444-555555555555")
            st2 = (await plugin.prepare(killed, {})).status
            await plugin.deleted(killed, {**st2, "phase": "Running"})
            assert client.get_run(st2["tracking"]["mlflow"]["runId"]).info.status == "KILLED"

            # A terminal run the operator never finished (e.g. MLflow was down at the transition): the sweep fixes it.
            lazy = make_tracked_run(uid="0000dddd-2222-3333-4444-555555555555")
            st3 = (await plugin.prepare(lazy, {})).status
            body: Mapping[str, Any] = {"metadata": {"uid": lazy.metadata.uid}, "status": {**st3, "phase": "Succeeded"}}
            fake.bodies[("team-a", "lazy")] = dict(body)
            assert await plugin.sweep() == 1
            assert client.get_run(st3["tracking"]["mlflow"]["runId"]).info.status == "FINISHED"
            assert await plugin.sweep() == 0  # confirms
            assert await plugin.sweep() == 0 and not plugin._due()
        finally:
            await plugin.stop()

    asyncio.run(scenario())


def test_tracking_uri_with_a_password_is_refused_at_start() -> None:
    """It would reach every pod's env and the runs' status in plain text: the configuration is rejected instead."""
    with pytest.raises(ValueError, match="must not contain credentials") as err:
        _plugin("http://user:s3cr3t@127.0.0.1:1")
    assert "s3cr3t" not in str(err.value).split("input_value")[0]


def test_unreachable_server_degrades_without_leaking_credentials() -> None:
    plugin = _plugin("http://127.0.0.1:1")
    run = make_tracked_run(uid="0000eeee-2222-3333-4444-555555555555", trackers=["mlflow", "tensorboard"])
    prepared = asyncio.run(plugin.prepare(run, {}))
    message = prepared.status["tracking"]["message"]
    assert message.startswith("MLflow run not created")
    env = _env(prepared.env)
    assert c.ENV_MLFLOW_RUN_ID not in env and env[c.ENV_TRACKERS] == "tensorboard"
    # Deletion must not hang on the tracker: the KILL is queued for the sweep instead of raising.
    asyncio.run(plugin.deleted(run, {"tracking": {"mlflow": {"runId": "r"}}, "phase": "Running"}))
    assert plugin._due() == [(run.metadata.uid, "r", "KILLED")]


def test_redact() -> None:
    assert (
        mlflow_ops.redact("GET https://bob:pw@host/api failed; http://x") == "GET https://***@host/api failed; http://x"
    )


def test_configuration_the_tracker_registry_refuses() -> None:
    """Unknown trackers, plain-text credentials and per-run ids set cluster-wide are refused at start."""
    config = OperatorConfig.model_validate(
        {
            "tracking": {
                "defaultTrackers": ["mlfow"],
                "extraEnv": {"wandb": {"WANDB_API_KEY": "s3cr3t", "WANDB_RUN_ID": "one-for-all", "WANDB_MODE": "x"}},
                "secretEnv": {"comet": {"COMET_EXPERIMENT_KEY": SECRET}},
            }
        }
    )
    with pytest.raises(ValueError, match="invalid tracking configuration") as err:
        TrackingPlugin(config.tracking)
    message = str(err.value)
    assert "tracking.defaultTrackers: unknown tracker 'mlfow' (one of mlflow, wandb," in message
    assert "tracking.extraEnv.wandb.WANDB_API_KEY: a credential; use tracking.secretEnv" in message
    assert "tracking.extraEnv.wandb.WANDB_RUN_ID: Runyard sets it per run or rank" in message
    assert "tracking.secretEnv.comet.COMET_EXPERIMENT_KEY: Runyard sets it per run or rank" in message
    assert "WANDB_MODE" not in message and "s3cr3t" not in message
