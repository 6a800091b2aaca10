"""Tracking plugin: every selected tracker's env in every pod (from the tracker registry), and MLflow's run lifecycle.

The plugin is glue: which trackers a run gets (`spec.tracking.trackers`, else the configured defaults), the env
each renders (`runyard.tracking.env` over `runyard.trackers`), credentials as Secret references, and the MLflow run
that must exist before any rank starts (`MLflowLifecycle`, when `tracking.mlflow` is configured). Adding a tracker
changes nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runyard import trackers as registry
from runyard.trackers import MLflowTarget
from runyard.trackers.mlflow import MLflow
from runyard.tracking import env as tenv
from runyard_operator.plugins import PluginContext, Prepared, RunPlugin
from runyard_operator.tracking.mlflow_lifecycle import MLflowLifecycle, secret_env

if TYPE_CHECKING:
    from runyard.api import TrainingRun
    from runyard.tracking import mlflow_ops
    from runyard_operator.config import OperatorConfig, TrackingConfig


def config_problems(config: TrackingConfig) -> list[str]:
    """What is wrong with the tracking configuration, judged by the tracker registry (empty when nothing is)."""
    known = registry.names()
    credentials = registry.credential_env_names()
    reserved = registry.reserved_env_names()
    problems: list[str] = []
    for where, names in (
        ("defaultTrackers", list(config.default_trackers)),
        ("extraEnv", list(config.extra_env)),
        ("secretEnv", list(config.secret_env)),
    ):
        problems += [
            f"tracking.{where}: unknown tracker {n!r} (one of {', '.join(known)})" for n in names if n not in known
        ]
    for tracker, env in config.extra_env.items():
        for name in env:
            if name in credentials:
                # A plain value would sit in every pod spec and in the operator's ConfigMap.
                problems.append(f"tracking.extraEnv.{tracker}.{name}: a credential; use tracking.secretEnv")
    for where, table in (("extraEnv", config.extra_env), ("secretEnv", config.secret_env)):
        for tracker, env_names in ((t, list(e)) for t, e in table.items()):
            problems += [
                f"tracking.{where}.{tracker}.{name}: Runyard sets it per run or rank"
                for name in env_names
                if name in reserved
            ]
    return problems


class TrackingPlugin(RunPlugin):
    """Renders tracker env into every pod and manages the run's MLflow run (when `tracking.mlflow` is configured)."""

    name = "tracking"

    def __init__(self, config: TrackingConfig) -> None:
        problems = config_problems(config)
        if problems:
            raise ValueError("invalid tracking configuration: " + "; ".join(problems))
        self.config = config
        self.defaults = config.effective_defaults()
        self.mlflow: MLflowLifecycle | None = None
        if config.mlflow is not None:
            self.mlflow = MLflowLifecycle(
                config.mlflow,
                sweep_interval_seconds=config.sweep_interval_seconds,
                sweep_batch=config.sweep_batch,
            )

    @classmethod
    def from_config(cls, config: OperatorConfig) -> TrackingPlugin | None:
        # Always on: runs may ask for env-only trackers (W&B, TensorBoard...) even when no server is configured.
        return cls(config.tracking)

    # --- helpers -------------------------------------------------------------------------------------

    def trackers(self, run: TrainingRun) -> tuple[str, ...]:
        return tenv.selected_trackers(run, self.defaults)

    def _mlflow_on(self, run: TrainingRun) -> bool:
        return self.mlflow is not None and MLflow.name in self.trackers(run)

    def _secret_refs(self, selected: tuple[str, ...]) -> list[dict[str, Any]]:
        env: list[dict[str, Any]] = []
        if self.mlflow is not None and MLflow.name in selected:
            env += self.mlflow.pod_secret_env()
        for tracker in selected:
            env += [secret_env(name, ref) for name, ref in sorted(self.config.secret_env.get(tracker, {}).items())]
        return env

    # --- hooks ---------------------------------------------------------------------------------------

    def needs_finalizer(self, run: TrainingRun) -> bool:
        return self._mlflow_on(run)

    async def start(self, ctx: PluginContext) -> None:
        if self.mlflow is not None:
            await self.mlflow.start(ctx)

    async def stop(self) -> None:
        if self.mlflow is not None:
            await self.mlflow.stop()

    async def prepare(self, run: TrainingRun, status: Mapping[str, Any]) -> Prepared:
        selected = self.trackers(run)
        if not selected:
            return Prepared()
        tracking: dict[str, Any] = dict(status.get("tracking") or {})
        tracking.pop("message", None)
        target: MLflowTarget | None = None
        if self.mlflow is not None and self._mlflow_on(run):
            target = await self.mlflow.ensure(run, tracking)
        # Without its run MLflow has nothing to join: the run trains untracked there (status says why).
        plan = tenv.plan_for(
            run,
            [t for t in selected if t != MLflow.name or target is not None],
            mlflow=target,
            settings=self.config.extra_env,
        )
        ids = tenv.tracker_ids(plan)
        if ids:
            tracking["ids"] = ids
        env = tenv.pod_env(plan) + self._secret_refs(plan.trackers)
        return Prepared(env=env, status={"tracking": tracking} if tracking else {})

    async def finished(self, run: TrainingRun, status: Mapping[str, Any]) -> dict[str, Any]:
        if self.mlflow is not None:
            await self.mlflow.finished(run, status)
        return {}

    async def deleted(self, run: TrainingRun, status: Mapping[str, Any]) -> None:
        if self.mlflow is not None:
            await self.mlflow.deleted(run, status)

    # --- sweep (MLflow terminal statuses) ------------------------------------------------------------

    async def sweep(self) -> int:
        """One pass of the MLflow sweep; returns how many MLflow runs got their status changed."""
        return await self.mlflow.sweep() if self.mlflow is not None else 0

    def _due(self) -> list[tuple[str, str, mlflow_ops.TerminalStatus]]:
        return self.mlflow.due() if self.mlflow is not None else []
