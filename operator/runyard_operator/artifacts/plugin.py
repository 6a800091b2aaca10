"""ArtifactsPlugin: store defaults for pods, manifests into status.artifacts, resume on restart, MLflow, logs, clean-up.

It hands the operator's defaults to the builders as env entries, reads the sidecars' manifests when a run
finishes and before each gang restart (so the new pods get RUNYARD_RESUME_FROM), archives every rank's log when an
attempt ends (artifacts/logs.py), and deletes a run's files on deletion only when `spec.artifacts.deleteOnRunDeletion`
is set. It never writes the status itself: hooks return `status.artifacts` and a late summary (or a Warning Event)
is contributed to the controller, which writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runyard import constants as c
from runyard.artifacts import logs as lg
from runyard.artifacts import manifest
from runyard.artifacts.store import LOGS_DIR, StoreURI, rank_name
from runyard_operator.artifacts import store as st
from runyard_operator.artifacts.config import ArtifactsConfig, parse_artifacts_config
from runyard_operator.artifacts.logs import ArchiveResult, archive_attempt
from runyard_operator.plugins import PluginContext, Prepared, RunPlugin

if TYPE_CHECKING:
    from runyard.api import TrainingRun
    from runyard_operator.config import OperatorConfig
    from runyard_operator.observe import PodView
    from runyard_operator.policies.stop import Stopping

logger = logging.getLogger(__name__)

TERMINAL_POD_PHASES = frozenset({"Succeeded", "Failed"})
MLFLOW_TAG_URI = "runyard.artifacts.uri"
MLFLOW_TAG_CHECKPOINT = "runyard.artifacts.newest_checkpoint"
MLFLOW_MANIFEST_PATH = "runyard/manifest.json"
LOG_ARCHIVE_EVENT = "LogArchiveIncomplete"
# Stopped segments kept in status.artifacts.logs.stops (the oldest go first; their files stay in the store).
MAX_STOPPED_SEGMENTS = 20
# How long a stopped segment is remembered as archived: longer than its replicas take to stop and the status to land.
STOPPING_MEMORY_SECONDS = 900.0


class ArtifactsPlugin(RunPlugin):
    """See the module docstring; every store access runs in a thread and never fails a reconcile."""

    name = "artifacts"

    def __init__(
        self, config: ArtifactsConfig, mlflow_uri: str | None = None, settle_poll_seconds: float = 2.0
    ) -> None:
        self.config = config
        self.mlflow_uri = mlflow_uri
        self.settle_poll_seconds = settle_poll_seconds
        self.ctx: PluginContext | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # (run uid, attempt, segment) -> when its stopped replicas' archive began (event-loop clock)
        self._stopping: dict[tuple[str, int, str], float] = {}

    @classmethod
    def from_config(cls, config: OperatorConfig) -> ArtifactsPlugin | None:
        cfg = parse_artifacts_config(config.artifacts)
        if not cfg.enabled:
            return None
        mlflow = config.tracking.mlflow
        return cls(cfg, mlflow.tracking_uri if mlflow and cfg.log_to_tracker else None)

    async def start(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- settings --------------------------------------------------------------------------------------

    def store_of(self, run: TrainingRun) -> StoreURI | None:
        """The run's effective store (spec, else the operator's default); None without one or when invalid."""
        value = run.spec.artifacts.store or self.config.default_store
        try:
            return StoreURI.parse(value) if value else None
        except ValueError:
            return None

    def needs_finalizer(self, run: TrainingRun) -> bool:
        store = self.store_of(run)
        return bool(run.spec.artifacts.delete_on_run_deletion and store and store.scheme == "s3")

    def defaults_env(self, run: TrainingRun) -> list[dict[str, Any]]:
        """Env entries that carry the operator's defaults to the builders (and the trainer): see builders.artifacts."""
        spec = run.spec.artifacts
        store = self.store_of(run)
        env: list[dict[str, Any]] = []
        if store is None:
            return env
        if not spec.store and self.config.default_store:
            env.append({"name": c.ENV_ARTIFACT_STORE, "value": self.config.default_store})
        if store.scheme != "s3":
            return env
        env.append({"name": c.ENV_ARTIFACT_SYNC_IMAGE, "value": self.config.sidecar_image})
        env.append({"name": c.ENV_ARTIFACT_SYNC_INTERVAL, "value": str(self.config.sync_interval_seconds)})
        s3 = spec.s3
        if not (s3 and s3.endpoint) and self.config.s3.endpoint:
            env.append({"name": c.ENV_AWS_ENDPOINT_URL, "value": self.config.s3.endpoint})
        if not (s3 and s3.region) and self.config.s3.region:
            env.append({"name": c.ENV_AWS_REGION, "value": self.config.s3.region})
        if not (s3 and s3.credentials_secret) and self.config.s3.credentials_secret:
            env += [
                {
                    "name": key,
                    "valueFrom": {"secretKeyRef": {"name": self.config.s3.credentials_secret, "key": key}},
                }
                for key in (c.ENV_AWS_ACCESS_KEY_ID, c.ENV_AWS_SECRET_ACCESS_KEY)
            ]
        return env

    async def run_store(self, run: TrainingRun) -> st.RunStore | None:
        """How the operator reaches the run's S3 prefix; None if the store is not S3.

        With the operator's own credentials (its environment, workload identity): it never reads a Secret of a
        run's namespace, so it holds no right to read any (docs/security.md).
        """
        store = self.store_of(run)
        if store is None or store.scheme != "s3":
            return None
        s3 = run.spec.artifacts.s3
        endpoint = self.config.s3.operator_endpoint or (s3.endpoint if s3 else None) or self.config.s3.endpoint
        region = (s3.region if s3 else None) or self.config.s3.region
        return st.RunStore(store.run(run.name), endpoint, region, None, None)

    # --- hooks -----------------------------------------------------------------------------------------

    async def prepare(self, run: TrainingRun, status: Mapping[str, Any]) -> Prepared:
        store = self.store_of(run)
        if store is None:
            return Prepared()
        artifacts: dict[str, Any] = dict(status.get("artifacts") or {})
        artifacts["storeUri"] = store.run(run.name).uri()
        fields: dict[str, Any] = {}
        attempt = int(status.get("restarts") or 0)
        stopped = status.get("stopped") or {}
        if (attempt > 0 or stopped.get("attempt") == attempt) and store.scheme == "s3":
            # A gang restart, or replicas replacing ones a suspension stopped: they resume from what was stored
            # (the first replicas resume nothing, even if a deleted run of the same name left files behind). The
            # stopped replicas are gone by now (foreground deletion), so their sidecars' last upload is in.
            found = await self._summarise(run, write=False, attempt=attempt)
            if found is not None:
                summary, checkpoint = found
                artifacts = {k: v for k, v in artifacts.items() if k != "newestCheckpoint"} | summary
                if checkpoint:
                    fields["lastCheckpoint"] = checkpoint
                fields["resumedFrom"] = {"attempt": attempt, "time": manifest.now()} | (
                    {"step": checkpoint.get("step"), "uri": checkpoint["uri"]} if checkpoint else {}
                )
        return Prepared(env=self.defaults_env(run), status={"artifacts": artifacts} | fields)

    async def retiring(
        self, run: TrainingRun, status: Mapping[str, Any], attempt: int, pods: Sequence[PodView]
    ) -> dict[str, Any]:
        """Archive every rank's log of the ending attempt (s3:// stores) into `status.artifacts.logs`.

        Runs without a store keep no logs (as before); pvc:// and file:// stores get a message saying why not.
        """
        store = self.store_of(run)
        if store is None or not self.config.logs.enabled:
            return {}
        artifacts: dict[str, Any] = dict(status.get("artifacts") or {})
        artifacts["storeUri"] = store.run(run.name).uri()
        logs: dict[str, Any] = dict(artifacts.get("logs") or {})
        if store.scheme != "s3":
            # The operator reaches no claim, and a file:// path of its own would be a path users choose in its
            # filesystem: it archives to object stores only.
            logs["message"] = (
                f"logs not archived: the operator archives logs to s3:// stores only, not {store.scheme}://"
            )
            return {"artifacts": artifacts | {"logs": logs}}
        result = await self._archive(run, status, attempt, pods)
        logs["uri"] = store.run(run.name).uri(LOGS_DIR)
        if result.stored:
            logs["attempts"] = sorted({*(int(a) for a in logs.get("attempts") or ()), attempt})
        problems = result.problems()
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            logs["message"] = f"attempt {attempt}: {shown}"[:1024]
            self._warn(run, f"logs of attempt {attempt} not fully archived to {logs['uri']}: {shown}"[:1024])
        else:
            logs.pop("message", None)
        return {"artifacts": artifacts | {"logs": logs}}

    async def finished(self, run: TrainingRun, status: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store_of(run)
        if store is None:
            return {}
        artifacts: dict[str, Any] = dict(status.get("artifacts") or {})
        artifacts["storeUri"] = store.run(run.name).uri()
        fields: dict[str, Any] = {}
        if store.scheme == "s3":
            attempt = int(status.get("restarts") or 0)
            found = await self._summarise(run, write=True, tracking=status.get("tracking"), attempt=attempt)
            if found is not None:
                artifacts |= found[0]
                if found[1]:
                    fields["lastCheckpoint"] = found[1]
            if self._pods_still_running(run):
                # Sidecars of ranks still being stopped do their final pass after this: summarise again then.
                self._spawn(self._settle(run, artifacts, status.get("tracking"), attempt))
        return {"artifacts": artifacts} | fields

    async def deleted(self, run: TrainingRun, status: Mapping[str, Any]) -> None:
        if not self.needs_finalizer(run):
            return
        try:
            store = await self.run_store(run)
            if store is not None:
                count = await asyncio.to_thread(st.delete_run, store)
                logger.info(
                    "deleted %d artifact(s) of %s/%s at %s",
                    count,
                    run.metadata.namespace,
                    run.name,
                    store.run_uri.uri(),
                )
        except Exception as err:  # the finalizer must not wedge deletion on a store outage
            logger.warning("deleting artifacts of %s/%s failed: %s", run.metadata.namespace, run.name, err)

    # --- internals -------------------------------------------------------------------------------------

    async def _summarise(
        self, run: TrainingRun, *, write: bool, attempt: int, tracking: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """(status.artifacts fields, status.lastCheckpoint or None) from the store's manifests; None on failure."""
        try:
            store = await self.run_store(run)
            if store is None:
                return None
            return await asyncio.to_thread(self._summarise_blocking, store, run, write, tracking, attempt)
        except Exception as err:  # a store or Secret problem must not fail the run's reconcile
            logger.warning("artifacts of %s/%s: %s", run.metadata.namespace, run.name, err)
            return None

    def _summarise_blocking(
        self, store: st.RunStore, run: TrainingRun, write: bool, tracking: Mapping[str, Any] | None, attempt: int
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        doc = st.read_manifest(store, run.name)
        manifest_uri = st.write_manifest(store, doc) if write else None
        result = st.summary(store, doc, manifest_uri)
        if write:
            self._log_to_mlflow(run, tracking, result, doc)
        return result, st.last_checkpoint(store, doc, attempt)

    def _log_to_mlflow(
        self, run: TrainingRun, tracking: Mapping[str, Any] | None, result: Mapping[str, Any], doc: dict[str, Any]
    ) -> None:
        run_id = ((tracking or {}).get("mlflow") or {}).get("runId")
        if not (self.mlflow_uri and run_id):
            return
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.mlflow_uri)
            client.set_tag(run_id, MLFLOW_TAG_URI, result["storeUri"])
            if result.get("newestCheckpoint"):
                client.set_tag(run_id, MLFLOW_TAG_CHECKPOINT, result["newestCheckpoint"])
            client.log_dict(run_id, doc, MLFLOW_MANIFEST_PATH)
        except Exception as err:  # best effort: the tracker is optional and may be down
            logger.warning("logging artifacts of %s/%s to MLflow failed: %s", run.metadata.namespace, run.name, err)

    def stopping(self, run: TrainingRun, status: Mapping[str, Any], stop: Stopping) -> None:
        """Archive what the stopping replicas print until they end, into a segment of their attempt (s3:// stores).

        Their pods are deleted by the suspension itself, and the attempt goes on when the run resumes, so neither
        the restart nor the end of the run would find these logs. The segment is contributed to
        `status.artifacts.logs.stops` once stored.
        """
        store = self.store_of(run)
        uid = str(run.metadata.uid or "")
        if store is None or store.scheme != "s3" or not self.config.logs.enabled or self.ctx is None or not uid:
            return
        segment = lg.stopped_segment(stop.since)
        known = ((status.get("artifacts") or {}).get("logs") or {}).get("stops") or []
        if any(s.get("attempt") == stop.attempt and s.get("segment") == segment for s in known):
            return
        now = asyncio.get_running_loop().time()
        for done, at in list(self._stopping.items()):
            if now - at > STOPPING_MEMORY_SECONDS:
                del self._stopping[done]
        key = (uid, stop.attempt, segment)
        if key in self._stopping:
            return  # being archived, or archived and not yet in the status the controller hands over
        self._stopping[key] = now
        self._spawn(self._archive_stopped(run, stop, segment))

    async def _archive_stopped(self, run: TrainingRun, stop: Stopping, segment: str) -> None:
        store = self.store_of(run)
        if store is None or self.ctx is None:
            return
        status = {"phase": "Suspended"}
        result = await self._archive(run, status, stop.attempt, stop.pods, segment=segment, follow=True)
        entry: dict[str, Any] = {"attempt": stop.attempt, "segment": segment, "reason": stop.reason, "time": stop.since}
        problems = result.problems()
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            entry["message"] = shown[:1024]
        key = (run.metadata.namespace or "", run.name)
        body = self.ctx.run(key)
        if body is None or body.get("metadata", {}).get("uid") != run.metadata.uid:
            return  # the run is gone, or another run took its name
        artifacts: dict[str, Any] = dict((body.get("status") or {}).get("artifacts") or {})
        artifacts["storeUri"] = store.run(run.name).uri()
        logs: dict[str, Any] = dict(artifacts.get("logs") or {})
        logs["uri"] = store.run(run.name).uri(LOGS_DIR)
        stops = [s for s in logs.get("stops") or () if (s.get("attempt"), s.get("segment")) != (stop.attempt, segment)]
        logs["stops"] = [*stops, entry][-MAX_STOPPED_SEGMENTS:]
        events = []
        if problems:
            where = store.run(run.name).uri(lg.attempt_dir(stop.attempt, segment))
            message = f"logs of the stopped replicas of attempt {stop.attempt} not fully archived to {where}: {shown}"
            logger.warning("%s/%s: %s", key[0], key[1], message)
            events.append(("Warning", LOG_ARCHIVE_EVENT, message[:1024]))
        self.ctx.contribute(key, str(run.metadata.uid), fields={"artifacts": artifacts | {"logs": logs}}, events=events)

    async def _archive(
        self,
        run: TrainingRun,
        status: Mapping[str, Any],
        attempt: int,
        pods: Sequence[PodView],
        *,
        segment: str = "",
        follow: bool = False,
    ) -> ArchiveResult:
        try:
            store = await self.run_store(run)
            if store is None or self.ctx is None:
                return ArchiveResult(attempt, (), False, "the artifacts plugin has not started")
            cfg = self.config.logs
            return await archive_attempt(
                self.ctx.kube,
                store,
                run.metadata.namespace or "",
                run.name,
                attempt,
                str(status.get("phase") or ""),
                pods,
                expected=[rank_name(role, i) for role, r in run.spec.replicas.items() for i in range(r.replicas)],
                archived_at=manifest.now(),
                max_bytes=cfg.max_bytes_per_rank,
                timeout=cfg.timeout_seconds,
                segment=segment,
                follow=follow,
            )
        except Exception as err:  # best effort: never fail the reconcile that restarts or ends the run
            logger.exception("archiving logs of %s/%s failed", run.metadata.namespace, run.name)
            return ArchiveResult(attempt, (), False, f"not archived: {err}")

    def _warn(self, run: TrainingRun, message: str) -> None:
        """A Warning Event on the run, posted with the status write this reconcile is about to make."""
        logger.warning("%s/%s: %s", run.metadata.namespace, run.name, message)
        if self.ctx is not None and run.metadata.uid:
            key = (run.metadata.namespace or "", run.name)
            self.ctx.contribute(key, str(run.metadata.uid), events=[("Warning", LOG_ARCHIVE_EVENT, message)])

    def _pods_still_running(self, run: TrainingRun) -> bool:
        if self.ctx is None or not run.metadata.uid:
            return False
        return any(p.phase not in TERMINAL_POD_PHASES for p in self.ctx.pods_of(run.metadata.uid))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(
        self, run: TrainingRun, artifacts: Mapping[str, Any], tracking: Mapping[str, Any] | None, attempt: int
    ) -> None:
        """Wait until the run's pods stopped (at most their grace period), then contribute status.artifacts again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + c.DEFAULT_ARTIFACT_SYNC_GRACE_SECONDS + 10
        while self._pods_still_running(run) and loop.time() < deadline:
            await asyncio.sleep(self.settle_poll_seconds)
        found = await self._summarise(run, write=True, tracking=tracking, attempt=attempt)
        if found is None or self.ctx is None:
            return
        key = (run.metadata.namespace or "", run.name)
        fields = {"artifacts": {**artifacts, **found[0]}} | ({"lastCheckpoint": found[1]} if found[1] else {})
        self.ctx.contribute(key, str(run.metadata.uid or ""), fields=fields)
