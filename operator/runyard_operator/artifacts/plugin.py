"""ArtifactsPlugin: store defaults for pods, manifests into status.artifacts, resume on restart, MLflow, clean-up.

It hands the operator's defaults to the builders as env entries, reads the sidecars' manifests when a run
finishes and before each gang restart (so the new pods get RUNYARD_RESUME_FROM), and deletes a run's files on
deletion only when `spec.artifacts.deleteOnRunDeletion` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runyard import constants as c
from runyard.artifacts.store import StoreURI
from runyard_operator.artifacts import store as st
from runyard_operator.artifacts.config import ArtifactsConfig, parse_artifacts_config
from runyard_operator.plugins import PluginContext, Prepared, RunPlugin

if TYPE_CHECKING:
    from runyard.api import TrainingRun
    from runyard_operator.config import OperatorConfig
    from runyard_operator.k8s import Kube

logger = logging.getLogger(__name__)

TERMINAL_POD_PHASES = frozenset({"Succeeded", "Failed"})
MLFLOW_TAG_URI = "runyard.artifacts.uri"
MLFLOW_TAG_CHECKPOINT = "runyard.artifacts.newest_checkpoint"
MLFLOW_MANIFEST_PATH = "runyard/manifest.json"


class ArtifactsPlugin(RunPlugin):
    """See the module docstring; every store access runs in a thread and never fails a reconcile."""

    name = "artifacts"

    def __init__(
        self, config: ArtifactsConfig, mlflow_uri: str | None = None, settle_poll_seconds: float = 2.0
    ) -> None:
        self.config = config
        self.mlflow_uri = mlflow_uri
        self.settle_poll_seconds = settle_poll_seconds
        self.kube: Kube | None = None
        self.ctx: PluginContext | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(cls, config: OperatorConfig) -> ArtifactsPlugin | None:
        cfg = parse_artifacts_config(config.artifacts)
        if not cfg.enabled:
            return None
        mlflow = config.tracking.mlflow
        return cls(cfg, mlflow.tracking_uri if mlflow and cfg.log_to_tracker else None)

    async def start(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        self.kube = ctx.kube

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
        if int(status.get("restarts") or 0) > 0 and store.scheme == "s3":
            # A gang restart: resume from what the previous attempt stored (the first attempt resumes nothing,
            # even if a deleted run of the same name left files behind).
            found = await self._summarise(run, write=False)
            if found is not None:
                artifacts = {k: v for k, v in artifacts.items() if k != "newestCheckpoint"} | found
        return Prepared(env=self.defaults_env(run), status={"artifacts": artifacts})

    async def finished(self, run: TrainingRun, status: Mapping[str, Any]) -> dict[str, Any]:
        store = self.store_of(run)
        if store is None:
            return {}
        artifacts: dict[str, Any] = dict(status.get("artifacts") or {})
        artifacts["storeUri"] = store.run(run.name).uri()
        if store.scheme == "s3":
            found = await self._summarise(run, write=True, tracking=status.get("tracking"))
            if found is not None:
                artifacts |= found
            if self._pods_still_running(run):
                # Sidecars of ranks still being stopped do their final pass after this: summarise again then.
                self._spawn(self._settle(run, status.get("tracking")))
        return {"artifacts": artifacts}

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
        self, run: TrainingRun, *, write: bool, tracking: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        try:
            store = await self.run_store(run)
            if store is None:
                return None
            return await asyncio.to_thread(self._summarise_blocking, store, run, write, tracking)
        except Exception as err:  # a store or Secret problem must not fail the run's reconcile
            logger.warning("artifacts of %s/%s: %s", run.metadata.namespace, run.name, err)
            return None

    def _summarise_blocking(
        self, store: st.RunStore, run: TrainingRun, write: bool, tracking: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        doc = st.read_manifest(store, run.name)
        manifest_uri = st.write_manifest(store, doc) if write else None
        result = st.summary(store, doc, manifest_uri)
        if write:
            self._log_to_mlflow(run, tracking, result, doc)
        return result

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

    def _pods_still_running(self, run: TrainingRun) -> bool:
        if self.ctx is None or not run.metadata.uid:
            return False
        return any(p.phase not in TERMINAL_POD_PHASES for p in self.ctx.pods_of(run.metadata.uid))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, run: TrainingRun, tracking: Mapping[str, Any] | None) -> None:
        """Wait until the run's pods stopped (at most their grace period), then rewrite status.artifacts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + c.DEFAULT_ARTIFACT_SYNC_GRACE_SECONDS + 10
        while self._pods_still_running(run) and loop.time() < deadline:
            await asyncio.sleep(self.settle_poll_seconds)
        found = await self._summarise(run, write=True, tracking=tracking)
        if found is None or self.kube is None:
            return
        try:
            await self.kube.patch(
                c.KIND, run.metadata.namespace or "", run.name, {"status": {"artifacts": found}}, sub="status"
            )
        except Exception as err:
            logger.warning("updating status.artifacts of %s/%s failed: %s", run.metadata.namespace, run.name, err)
