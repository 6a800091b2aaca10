"""MLflow run lifecycle: one MLflow run per TrainingRun, created before any rank, given its terminal status at the end.

Env rendering is not here: the tracking plugin renders every tracker's env from the tracker registry, MLflow's
included, from the `MLflowTarget` this lifecycle returns.

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
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from runyard import constants as c
from runyard.trackers import MLflowTarget, rank_label
from runyard.tracking import env as tenv
from runyard.tracking import mlflow_ops
from runyard.tracking.local import run_url
from runyard.tracking.tags import node_tags, run_tags

if TYPE_CHECKING:
    from runyard.api import TrainingRun
    from runyard_operator.config import MLflowConfig, SecretKeyRef
    from runyard_operator.plugins import PluginContext

logger = logging.getLogger(__name__)

_PHASE_STATUS: dict[str, mlflow_ops.TerminalStatus] = {"Succeeded": "FINISHED", "Failed": "FAILED"}
# The operator's MLflow client must fail fast (MLflow retries 7 times with backoff by default): hooks hold a
# reconcile and the sweep retries anyway. Deployments may still override these in the operator's env.
_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    """An EnvVar read from a Secret key in the pod's namespace (the operator never sees the value)."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def error_text(err: BaseException) -> str:
    """An exception as one line for logs and status, with credentials in URLs removed."""
    return mlflow_ops.redact(f"{type(err).__name__}: {err}")[:500]


def _mlflow_run_id(status: Mapping[str, Any]) -> str | None:
    run_id = ((status.get("tracking") or {}).get("mlflow") or {}).get("runId")
    return str(run_id) if run_id else None


class MLflowLifecycle:
    """Creates, finishes and sweeps the MLflow runs of TrainingRuns on the server `config` names."""

    def __init__(self, config: MLflowConfig, *, sweep_interval_seconds: float, sweep_batch: int) -> None:
        self.config = config
        self.sweep_interval_seconds = sweep_interval_seconds
        self.sweep_batch = sweep_batch
        self._ctx: PluginContext | None = None
        self._task: asyncio.Task[None] | None = None
        # uid -> status already verified on the server; uid -> (run_id, status) still to be set (deleted runs).
        self._confirmed: dict[str, str] = {}
        self._pending: dict[str, tuple[str, mlflow_ops.TerminalStatus]] = {}
        self._client: Any = None

    def _mlflow(self) -> Any:
        if self._client is None:
            for key, value in _CLIENT_ENV.items():
                os.environ.setdefault(key, value)
            self._client = mlflow_ops.client_for(self.config.tracking_uri)
        return self._client

    def _url(self, experiment_id: str, run_id: str) -> str | None:
        base = self.config.ui_url or self.config.tracking_uri
        if not base.startswith(("http://", "https://")):
            return None
        return run_url(base, experiment_id, run_id)

    def pod_secret_env(self) -> list[dict[str, Any]]:
        """The pods' MLflow credentials, as secretKeyRef entries."""
        refs = (
            (c.ENV_MLFLOW_TRACKING_USERNAME, self.config.username),
            (c.ENV_MLFLOW_TRACKING_PASSWORD, self.config.password),
            (c.ENV_MLFLOW_TRACKING_TOKEN, self.config.token),
        )
        return [secret_env(name, ref) for name, ref in refs if ref is not None]

    # --- operator lifetime ---------------------------------------------------------------------------

    async def start(self, ctx: PluginContext) -> None:
        self._ctx = ctx
        self._task = asyncio.create_task(self._sweep_forever(), name="tracking-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- per run -------------------------------------------------------------------------------------

    async def ensure(self, run: TrainingRun, tracking: MutableMapping[str, Any]) -> MLflowTarget | None:
        """The run's MLflow run, created if needed; records ids, link or failure in `tracking` (status.tracking).

        None when MLflow is unreachable: the run then trains untracked rather than waiting for the tracker.
        """
        uid = str(run.metadata.uid)
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
                artifact_location=self.config.artifact_location,
            )
        except Exception as err:
            message = f"MLflow run not created: {error_text(err)}"
            logger.warning("tracking %s/%s: %s", run.metadata.namespace, run.name, message)
            tracking["message"] = message
            return None
        if ref.created:
            logger.info("tracking %s/%s: created MLflow run %s", run.metadata.namespace, run.name, ref.run_id)
        tracking["mlflow"] = {"experimentId": ref.experiment_id, "runId": ref.run_id}
        url = self._url(ref.experiment_id, ref.run_id)
        if url:
            tracking["url"] = url
        return MLflowTarget(
            self.config.pod_tracking_uri or self.config.tracking_uri,
            ref.experiment_id,
            ref.run_id,
            system_metrics=self.config.system_metrics,
            system_metrics_interval=self.config.system_metrics_interval,
        )

    async def finished(self, run: TrainingRun, status: Mapping[str, Any]) -> None:
        run_id = _mlflow_run_id(status)
        desired = _PHASE_STATUS.get(str(status.get("phase")))
        if not run_id or desired is None:
            return
        uid = str(run.metadata.uid)
        ranks: list[tuple[str, str]] = []
        if self._ctx is not None:
            ranks = sorted((rank_label(p.role, p.index), p.node) for p in self._ctx.pods_of(uid) if p.node)
        tags = {**node_tags(status.get("nodes") or [], ranks), c.TAG_K8S_PHASE: str(status.get("phase"))}
        try:
            await asyncio.to_thread(mlflow_ops.set_tags, self._mlflow(), run_id, tags)
            await asyncio.to_thread(mlflow_ops.terminate, self._mlflow(), run_id, desired)
        except Exception as err:
            # Left to the sweep, which retries terminal runs it has not confirmed.
            logger.warning(
                "tracking %s/%s: terminal status deferred: %s", run.metadata.namespace, run.name, error_text(err)
            )

    async def deleted(self, run: TrainingRun, status: Mapping[str, Any]) -> None:
        run_id = _mlflow_run_id(status)
        if not run_id:
            return
        desired = _PHASE_STATUS.get(str(status.get("phase")), "KILLED")
        uid = str(run.metadata.uid)
        self._confirmed.pop(uid, None)
        try:
            await asyncio.to_thread(mlflow_ops.terminate, self._mlflow(), run_id, desired)
        except Exception as err:
            # Never hold the deletion hostage to the tracker: the sweep retries (in this operator process).
            logger.warning(
                "tracking %s/%s: %s status deferred: %s", run.metadata.namespace, run.name, desired, error_text(err)
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
                logger.warning("tracking sweep failed: %s", error_text(err))
            await asyncio.sleep(self.sweep_interval_seconds)

    def due(self) -> list[tuple[str, str, mlflow_ops.TerminalStatus]]:
        """(uid, run_id, desired status) of terminal runs not yet confirmed, then queued deletions."""
        due: list[tuple[str, str, mlflow_ops.TerminalStatus]] = []
        if self._ctx is not None:
            for _, body in self._ctx.runs():
                status = body.get("status") or {}
                desired = _PHASE_STATUS.get(str(status.get("phase")))
                run_id = _mlflow_run_id(status)
                uid = str((body.get("metadata") or {}).get("uid"))
                if body.get("metadata", {}).get("deletionTimestamp"):
                    continue  # the finalizer owns it
                if desired and run_id and self._confirmed.get(uid) != desired:
                    due.append((uid, run_id, desired))
        due += [(uid, run_id, desired) for uid, (run_id, desired) in self._pending.items()]
        return due[: self.sweep_batch]

    async def sweep(self) -> int:
        """One pass; returns how many MLflow runs got their status changed."""
        changed = 0
        for uid, run_id, desired in self.due():
            try:
                did = await asyncio.to_thread(mlflow_ops.terminate, self._mlflow(), run_id, desired)
            except Exception as err:
                logger.warning("tracking sweep: run %s: %s", run_id, error_text(err))
                continue
            if uid in self._pending:
                self._pending.pop(uid, None)
            elif not did:
                self._confirmed[uid] = desired
            if did:
                changed += 1
                logger.info("tracking sweep: MLflow run %s set to %s", run_id, desired)
        return changed
