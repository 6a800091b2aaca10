"""Tracking plugin: one MLflow run per TrainingRun (created before any rank), tracker env for every pod, terminal status.

Terminal status is made robust in three layers, because the controller calls `finished()` exactly once:
1. `finished()` sets FINISHED/FAILED (and node tags) at the transition;
2. `deleted()` (finalizer) sets KILLED when the run is deleted before it ended, and queues the call when MLflow is
   unreachable instead of blocking the deletion;
3. an operator-wide sweep (started in `start()`, first pass at once, so it covers operator restarts) re-checks every
   terminal TrainingRun whose MLflow run it has not yet confirmed, sets the status when it differs (a failed call in
   1. or 2., or a rank's late `end_run()` overwriting it) and retries queued KILLs. A run is confirmed after a pass that
   found nothing to change, so each finished run costs at most a couple of `get_run` calls per operator lifetime.
Every MLflow call blocks, so each one runs in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runyard import constants as c
from runyard.api.v1alpha1 import Tracker
from runyard.tracking import env as tenv
from runyard.tracking import mlflow_ops
from runyard.tracking.local import run_url
from runyard.tracking.tags import node_tags, run_tags
from runyard_operator.plugins import PluginContext, Prepared, RunPlugin

if TYPE_CHECKING:
    from runyard.api import TrainingRun
    from runyard_operator.config import OperatorConfig, SecretKeyRef, TrackingConfig

logger = logging.getLogger(__name__)

_PHASE_STATUS: dict[str, mlflow_ops.TerminalStatus] = {"Succeeded": "FINISHED", "Failed": "FAILED"}
# The operator's MLflow client must fail fast (MLflow retries 7 times with backoff by default): hooks hold a
# reconcile and the sweep retries anyway. Deployments may still override these in the operator's env.
_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _error(err: BaseException) -> str:
    return mlflow_ops.redact(f"{type(err).__name__}: {err}")[:500]


class TrackingPlugin(RunPlugin):
    """Renders tracker env into every pod and manages the run's MLflow run (when `tracking.mlflow` is configured)."""

    name = "tracking"

    def __init__(self, config: TrackingConfig) -> None:
        self.config = config
        self.defaults = config.effective_defaults()
        self._ctx: PluginContext | None = None
        self._task: asyncio.Task[None] | None = None
        # uid -> status already verified on the server; uid -> (run_id, status) still to be set (deleted runs).
        self._confirmed: dict[str, str] = {}
        self._pending: dict[str, tuple[str, mlflow_ops.TerminalStatus]] = {}
        self._client: Any = None

    @classmethod
    def from_config(cls, config: OperatorConfig) -> TrackingPlugin | None:
        # Always on: runs may ask for env-only trackers (W&B, TensorBoard...) even when no server is configured.
        return cls(config.tracking)

    # --- helpers -------------------------------------------------------------------------------------

    def trackers(self, run: TrainingRun) -> tuple[Tracker, ...]:
        return tenv.selected_trackers(run, self.defaults)

    def _mlflow_on(self, run: TrainingRun) -> bool:
        return self.config.mlflow is not None and Tracker.MLFLOW in self.trackers(run)

    def _mlflow(self) -> Any:
        if self._client is None:
            assert self.config.mlflow is not None
            for key, value in _CLIENT_ENV.items():
                os.environ.setdefault(key, value)
            self._client = mlflow_ops.client_for(self.config.mlflow.tracking_uri)
        return self._client

    def _url(self, experiment_id: str, run_id: str) -> str | None:
        m = self.config.mlflow
        assert m is not None
        base = m.ui_url or m.tracking_uri
        if not base.startswith(("http://", "https://")):
            return None
        return run_url(base, experiment_id, run_id)

    def _secret_refs(self, trackers: tuple[Tracker, ...]) -> list[dict[str, Any]]:
        env: list[dict[str, Any]] = []
        m = self.config.mlflow
        if m is not None and Tracker.MLFLOW in trackers:
            for name, ref in (
                (c.ENV_MLFLOW_TRACKING_USERNAME, m.username),
                (c.ENV_MLFLOW_TRACKING_PASSWORD, m.password),
                (c.ENV_MLFLOW_TRACKING_TOKEN, m.token),
            ):
                if ref is not None:
                    env.append(_secret_env(name, ref))
        for tracker in trackers:
            for name, ref in sorted(self.config.secret_env.get(tracker.value, {}).items()):
                env.append(_secret_env(name, ref))
        return env

    # --- hooks ---------------------------------------------------------------------------------------

    def needs_finalizer(self, run: TrainingRun) -> bool:
        return self._mlflow_on(run)

    async def start(self, ctx: PluginContext) -> None:
        self._ctx = ctx
        if self.config.mlflow is not None:
            self._task = asyncio.create_task(self._sweep_forever(), name="tracking-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def prepare(self, run: TrainingRun, status: Mapping[str, Any]) -> Prepared:
        trackers = self.trackers(run)
        if not trackers:
            return Prepared()
        uid = str(run.metadata.uid)
        tracking: dict[str, Any] = dict(status.get("tracking") or {})
        tracking.pop("message", None)
        target: tenv.MLflowTarget | None = None
        if self._mlflow_on(run):
            m = self.config.mlflow
            assert m is not None
            known = (tracking.get("mlflow") or {}).get("runId")
            spec_tracking = run.spec.tracking
            try:
                ref = await asyncio.to_thread(
                    mlflow_ops.ensure_run,
                    self._mlflow(),
                    experiment=tenv.experiment_name(run),
                    uid=uid,
                    run_name=tenv.tracker_run_name(run),
                    tags=run_tags(run, uid),
                    params=dict(spec_tracking.params or {}) if spec_tracking else {},
                    known_run_id=known,
                    artifact_location=m.artifact_location,
                )
            except Exception as err:
                # The run trains untracked rather than waiting for the tracker; status says why.
                message = f"MLflow run not created: {_error(err)}"
                logger.warning("tracking %s/%s: %s", run.metadata.namespace, run.name, message)
                tracking["message"] = message
            else:
                if ref.created:
                    logger.info("tracking %s/%s: created MLflow run %s", run.metadata.namespace, run.name, ref.run_id)
                tracking["mlflow"] = {"experimentId": ref.experiment_id, "runId": ref.run_id}
                url = self._url(ref.experiment_id, ref.run_id)
                if url:
                    tracking["url"] = url
                target = tenv.MLflowTarget(
                    m.pod_tracking_uri or m.tracking_uri,
                    ref.experiment_id,
                    ref.run_id,
                    system_metrics=m.system_metrics,
                    system_metrics_interval=m.system_metrics_interval,
                )
        plan = tenv.plan_for(
            run,
            [t for t in trackers if t is not Tracker.MLFLOW or target is not None],
            mlflow=target,
            settings=self.config.extra_env,
        )
        ids = tenv.tracker_ids(plan)
        if ids:
            tracking["ids"] = ids
        env = tenv.pod_env(plan) + self._secret_refs(plan.trackers)
        return Prepared(env=env, status={"tracking": tracking} if tracking else {})

    async def finished(self, run: TrainingRun, status: Mapping[str, Any]) -> dict[str, Any]:
        run_id = ((status.get("tracking") or {}).get("mlflow") or {}).get("runId")
        desired = _PHASE_STATUS.get(str(status.get("phase")))
        if not run_id or desired is None or self.config.mlflow is None:
            return {}
        uid = str(run.metadata.uid)
        ranks: list[tuple[str, str]] = []
        if self._ctx is not None:
            ranks = sorted((tenv.rank_label(p.role, p.index), p.node) for p in self._ctx.pods_of(uid) if p.node)
        tags = {**node_tags(status.get("nodes") or [], ranks), c.TAG_K8S_PHASE: str(status.get("phase"))}
        try:
            await asyncio.to_thread(mlflow_ops.set_tags, self._mlflow(), run_id, tags)
            await asyncio.to_thread(mlflow_ops.terminate, self._mlflow(), run_id, desired)
        except Exception as err:
            # Left to the sweep, which retries terminal runs it has not confirmed.
            logger.warning(
                "tracking %s/%s: terminal status deferred: %s", run.metadata.namespace, run.name, _error(err)
            )
        return {}

    async def deleted(self, run: TrainingRun, status: Mapping[str, Any]) -> None:
        run_id = ((status.get("tracking") or {}).get("mlflow") or {}).get("runId")
        if not run_id or self.config.mlflow is None:
            return
        desired = _PHASE_STATUS.get(str(status.get("phase")), "KILLED")
        uid = str(run.metadata.uid)
        self._confirmed.pop(uid, None)
        try:
            await asyncio.to_thread(mlflow_ops.terminate, self._mlflow(), run_id, desired)
        except Exception as err:
            # Never hold the deletion hostage to the tracker: the sweep retries (in this operator process).
            logger.warning(
                "tracking %s/%s: %s status deferred: %s", run.metadata.namespace, run.name, desired, _error(err)
            )
            self._pending[uid] = (run_id, desired)

    # --- sweep ---------------------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                logger.warning("tracking sweep failed: %s", _error(err))
            await asyncio.sleep(self.config.sweep_interval_seconds)

    def _due(self) -> list[tuple[str, str, mlflow_ops.TerminalStatus]]:
        """(uid, run_id, desired status) of terminal runs not yet confirmed, then queued deletions."""
        due: list[tuple[str, str, mlflow_ops.TerminalStatus]] = []
        if self._ctx is not None:
            for _, body in self._ctx.runs():
                status = body.get("status") or {}
                desired = _PHASE_STATUS.get(str(status.get("phase")))
                run_id = ((status.get("tracking") or {}).get("mlflow") or {}).get("runId")
                uid = str((body.get("metadata") or {}).get("uid"))
                if body.get("metadata", {}).get("deletionTimestamp"):
                    continue  # the finalizer owns it
                if desired and run_id and self._confirmed.get(uid) != desired:
                    due.append((uid, run_id, desired))
        due += [(uid, run_id, desired) for uid, (run_id, desired) in self._pending.items()]
        return due[: self.config.sweep_batch]

    async def sweep(self) -> int:
        """One pass; returns how many MLflow runs got their status changed."""
        changed = 0
        for uid, run_id, desired in self._due():
            try:
                did = await asyncio.to_thread(mlflow_ops.terminate, self._mlflow(), run_id, desired)
            except Exception as err:
                logger.warning("tracking sweep: run %s: %s", run_id, _error(err))
                continue
            if uid in self._pending:
                self._pending.pop(uid, None)
            elif not did:
                self._confirmed[uid] = desired
            if did:
                changed += 1
                logger.info("tracking sweep: MLflow run %s set to %s", run_id, desired)
        return changed
