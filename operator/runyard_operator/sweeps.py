"""The TrainingRunSweep controller: trials (TrainingRuns it owns) from the sweep policy, their objective from MLflow.

Level-based like the run controller: every reconcile derives the trials from the TrainingRuns the sweep controls
(owner UID), their parameters from the trials' own specs, and decides from those; status is one merge patch per change.
MLflow has no watch, so while trials run the sweep re-reads their objective every `check_interval` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from runyard import constants as c
from runyard import sweeps as sw
from runyard.api.sweeps import TrainingRunSweep, TrainingRunSweepSpec
from runyard_operator.controller import status_patch
from runyard_operator.k8s import ApiError, Kube
from runyard_operator.timestamps import format_time
from runyard_operator.workqueue import WorkQueue

logger = logging.getLogger(__name__)

SweepKey = tuple[str, str]
CHECK_INTERVAL = 15.0
RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"
_TERMINAL = {"Succeeded": sw.SUCCEEDED, "Failed": sw.FAILED}


@dataclass(frozen=True)
class TrialView:
    """What the sweep reads of one trial TrainingRun."""

    name: str
    uid: str
    owner_uid: str
    index: int
    spec: Mapping[str, Any]
    phase: str
    pruned: bool
    mlflow_run_id: str | None
    gpu_hours: float

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> TrialView:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        owner: Mapping[str, Any] = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), {})
        try:
            index = int((meta.get("labels") or {}).get(c.LABEL_TRIAL_INDEX) or -1)
        except ValueError:
            index = -1
        return cls(
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            owner_uid=str(owner.get("uid") or "") if owner.get("kind") == c.SWEEP_KIND else "",
            index=index,
            spec=dict(body.get("spec") or {}),
            phase=str(status.get("phase") or ""),
            pruned=(meta.get("annotations") or {}).get(c.ANNOTATION_PRUNED) == "true",
            mlflow_run_id=((status.get("tracking") or {}).get("mlflow") or {}).get("runId"),
            gpu_hours=float((status.get("gpu") or {}).get("gpuHours") or 0.0),
        )


class SweepController:
    """Owns the sweep cache and queue; trials are created and pruned through `kube`, readings come from MLflow."""

    def __init__(
        self, kube: Kube, mlflow_uri: str | None = None, workers: int = 4, check_interval: float = CHECK_INTERVAL
    ) -> None:
        self.kube = kube
        self.mlflow_uri = mlflow_uri
        self.check_interval = check_interval
        self.sweeps: dict[SweepKey, dict[str, Any]] = {}
        self.trials: dict[str, dict[str, TrialView]] = {}  # sweep UID -> trial name -> view
        self.queue = WorkQueue(self.reconcile, workers=workers)
        # Objective readings per trial UID: kept for good once a trial finished, re-read every check_interval while
        # it runs (every trial status write requeues its sweep; MLflow is read far less often).
        self._readings: dict[str, tuple[float, float | None, tuple[tuple[int, float], ...]]] = {}
        self._uid_to_key: dict[str, SweepKey] = {}

    # --- cache feeding -------------------------------------------------------------------------------------

    def on_sweep_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key: SweepKey = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.sweeps.pop(key, None)
            self.trials.pop(str(meta.get("uid")), None)
            self._uid_to_key.pop(str(meta.get("uid")), None)
            return
        self.sweeps[key] = dict(body)
        self._uid_to_key[str(meta.get("uid"))] = key
        self.queue.add(key)

    def on_trial_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        if c.LABEL_SWEEP not in (meta.get("labels") or {}):
            return
        view = TrialView.of(body)
        if not view.owner_uid:
            return  # not controlled by a sweep: a label proves nothing
        trials = self.trials.setdefault(view.owner_uid, {})
        if event_type == "DELETED":
            trials.pop(view.name, None)
            self._readings.pop(view.uid, None)
        else:
            trials[view.name] = view
        key = self._uid_to_key.get(view.owner_uid)
        if key is not None:
            self.queue.add(key)

    # --- reconcile -----------------------------------------------------------------------------------------

    async def reconcile(self, key: SweepKey) -> None:
        body = self.sweeps.get(key)
        if body is None:
            return
        try:
            await self._reconcile(key, body)
        except ApiError as err:
            if err.status != 404:
                logger.warning("sweep %s/%s: %s; retrying", key[0], key[1], err)
                self.queue.add_at(key, time.monotonic() + 5.0)
        except Exception:  # one sweep never takes the operator down
            logger.exception("sweep %s/%s failed", *key)
            self.queue.add_at(key, time.monotonic() + 10.0)

    async def _reconcile(self, key: SweepKey, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        previous: dict[str, Any] = dict(body.get("status") or {})
        if meta.get("deletionTimestamp") or previous.get("phase") in (SUCCEEDED, FAILED):
            return
        try:
            sweep = TrainingRunSweep.model_validate({k: v for k, v in body.items() if k != "status"})
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
            await self._write(key, body, previous, {**previous, "phase": FAILED, "message": f"invalid: {problems}"})
            return
        spec, uid = sweep.spec, str(meta["uid"])
        views = self._views(uid)
        records = [await self._record(spec, v) for v in views]
        step = sw.plan(spec, records)
        if step.create or step.done:
            # New trials spend the budget and an end is final: decided from the trials the API holds now, not from
            # what the watch cache happened to have seen (after an operator restart it can lag by seconds).
            await self._read_trials(key, uid)
            views = self._views(uid)
            records = [await self._record(spec, v) for v in views]
            step = sw.plan(spec, records)
        status = dict(previous)
        parent = previous.get("trackingRunId") or await self._parent_run(sweep, uid)
        if parent:
            status["trackingRunId"] = parent
        for name in step.prune:
            await self.kube.patch(
                c.KIND,
                key[0],
                name,
                {"metadata": {"annotations": {c.ANNOTATION_PRUNED: "true"}}, "spec": {"runPolicy": {"suspend": True}}},
            )
            records = [replace(r, state=sw.PRUNED) if r.name == name else r for r in records]
        for index in step.create:
            params = await asyncio.to_thread(sw.suggest, spec, index, records)
            manifest = sw.trial_manifest(key[1], key[0], spec, index, params, parent_run_id=parent)
            manifest["metadata"]["ownerReferences"] = [
                {
                    "apiVersion": c.API_VERSION,
                    "kind": c.SWEEP_KIND,
                    "name": key[1],
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
            refused = await self._create_trial(manifest, uid)
            if refused:
                status |= {"phase": FAILED, "message": refused, "completionTime": format_time(datetime.now(UTC))}
                await self._write(key, body, previous, status)
                return
            records.append(sw.TrialRecord(index, manifest["metadata"]["name"], params))
        best = sw.best(spec, records)
        status |= {
            "phase": RUNNING,
            "message": step.message,
            "trials": [_trial_status(r, views) for r in sorted(records, key=lambda r: r.index)],
            "trialsCreated": len(records),
            "trialsRunning": sum(1 for r in records if r.state == sw.RUNNING),
            "gpuHours": round(sw.gpu_hours(records), 6),
        }
        if best is not None:
            status["best"] = {"name": best.name, "value": best.value, "params": dict(best.params)}
        if step.done:
            status["phase"] = SUCCEEDED if best is not None else FAILED
            status["message"] = step.message + ("" if best is not None else ": no trial succeeded")
            status["completionTime"] = format_time(datetime.now(UTC))
            await self._finish_parent(parent, spec, best)
        await self._write(key, body, previous, status)
        if not step.done and any(r.state == sw.RUNNING for r in records) and self.mlflow_uri:
            self.queue.add_at(key, time.monotonic() + self.check_interval)

    def _views(self, uid: str) -> list[TrialView]:
        """The sweep's trials: TrainingRuns it controls (owner UID), by index."""
        trials = self.trials.get(uid, {}).values()
        return sorted((v for v in trials if v.owner_uid == uid and v.index >= 0), key=lambda v: v.index)

    async def _read_trials(self, key: SweepKey, uid: str) -> None:
        """Replace the cached trials of the sweep with those the API holds now."""
        items = await self.kube.list_items(c.KIND, key[0], label_selector=f"{c.LABEL_SWEEP}={key[1]}")
        views = [TrialView.of(item) for item in items]
        self.trials[uid] = {v.name: v for v in views if v.owner_uid == uid}

    async def _record(self, spec: TrainingRunSweepSpec, view: TrialView) -> sw.TrialRecord:
        state = sw.PRUNED if view.pruned else _TERMINAL.get(view.phase, sw.RUNNING)
        record = sw.TrialRecord(view.index, view.name, sw.params_of(view.spec, spec), state, gpu_hours=view.gpu_hours)
        if not self.mlflow_uri or not view.mlflow_run_id:
            return record
        cached = self._readings.get(view.uid)
        now = time.monotonic()
        # A finished trial is read once more after it finished (its last values), then never again.
        fresh = cached is not None and (
            cached[0] == float("inf") or (state == sw.RUNNING and now - cached[0] < self.check_interval)
        )
        if cached is None or not fresh:
            try:
                history = await asyncio.to_thread(_history, self.mlflow_uri, view.mlflow_run_id, spec.objective.metric)
            except Exception as err:  # the tracker being down delays readings; it never fails the sweep
                logger.warning("sweep trial %s: MLflow not read: %s", view.name, err)
                return record
            stamp = float("inf") if state != sw.RUNNING else now
            cached = (stamp, history[-1][1] if history else None, history)
            self._readings[view.uid] = cached
        return replace(record, value=cached[1], history=cached[2])

    async def _create_trial(self, manifest: dict[str, Any], uid: str) -> str | None:
        """Create the trial, or accept it when it exists and this sweep controls it; else why not."""
        meta = manifest["metadata"]
        try:
            await self.kube.create(manifest, decode=False)
            return None
        except ApiError as err:
            if err.status != 409:
                if err.status in (400, 403, 422):
                    return f"trial {meta['name']} refused by the API server: {err.message}"
                raise
        existing = await self.kube.get(c.KIND, meta["namespace"], meta["name"])
        owner: Mapping[str, Any] = next(
            (o for o in existing["metadata"].get("ownerReferences") or [] if o.get("controller")), {}
        )
        if owner.get("uid") != uid:
            return (
                f"TrainingRun {meta['namespace']}/{meta['name']} already exists and is not this sweep's trial; "
                "Runyard never takes over objects it did not create: rename the sweep or remove that run"
            )
        return None

    async def _parent_run(self, sweep: TrainingRunSweep, uid: str) -> str | None:
        if not self.mlflow_uri:
            return None
        from runyard.tracking import mlflow_ops

        tracking = sweep.spec.trial.tracking
        name = sweep.metadata.name or "sweep"
        experiment = (tracking.experiment if tracking else None) or sweep.metadata.namespace or name
        try:
            ref = await asyncio.to_thread(
                lambda: mlflow_ops.ensure_run(
                    mlflow_ops.client_for(self.mlflow_uri or ""),
                    experiment=experiment,
                    uid=uid,
                    run_name=name,
                    tags={"runyard.sweep": name},
                    params={},
                )
            )
        except Exception as err:
            logger.warning("sweep %s: parent MLflow run not created: %s", name, err)
            return None
        return ref.run_id

    async def _finish_parent(self, parent: str | None, spec: TrainingRunSweepSpec, best: sw.TrialRecord | None) -> None:
        if not parent or not self.mlflow_uri:
            return

        def finish() -> None:
            from runyard.tracking import mlflow_ops

            client = mlflow_ops.client_for(self.mlflow_uri or "")
            if best is not None:
                client.log_param(parent, "best_trial", best.name)
                for k, v in best.params.items():
                    client.log_param(parent, f"best.{k}", str(v))
                if best.value is not None:
                    client.log_metric(parent, f"best_{spec.objective.metric}", float(best.value))
            mlflow_ops.terminate(client, parent, "FINISHED" if best is not None else "FAILED")

        try:
            await asyncio.to_thread(finish)
        except Exception as err:
            logger.warning("sweep: parent MLflow run %s not finished: %s", parent, err)

    async def _write(
        self, key: SweepKey, body: dict[str, Any], previous: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        patch = status_patch(previous, status)
        if not patch:
            return
        result = await self.kube.patch(c.SWEEP_KIND, key[0], key[1], {"status": patch}, sub="status")
        if result:
            self.sweeps[key] = dict(result)


def _history(uri: str, run_id: str, metric: str) -> tuple[tuple[int, float], ...]:
    from runyard.tracking import mlflow_ops

    points = mlflow_ops.client_for(uri).get_metric_history(run_id, metric)
    return tuple(sorted((int(m.step), float(m.value)) for m in points))


def _trial_status(record: sw.TrialRecord, views: list[TrialView]) -> dict[str, Any]:
    view = next((v for v in views if v.name == record.name), None)
    phase = "Pruned" if record.state == sw.PRUNED else (view.phase if view and view.phase else "Pending")
    out: dict[str, Any] = {"name": record.name, "index": record.index, "params": dict(record.params), "phase": phase}
    if record.value is not None:
        out["value"] = record.value
    if record.gpu_hours:
        out["gpuHours"] = round(record.gpu_hours, 6)
    return out
