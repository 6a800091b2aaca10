"""Run plugins: optional behaviour around the core lifecycle (tracking, artifacts, GPU metrics), built from config.

A plugin never blocks the event loop (blocking clients go through `asyncio.to_thread`) and never raises out of a
hook for a reason the run cannot fix: it records the problem in the run's status or logs it instead.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runyard.api import TrainingRun
    from runyard_operator.config import OperatorConfig
    from runyard_operator.k8s import Kube
    from runyard_operator.observe import PodView

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What a plugin adds before a run's children are created."""

    env: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


@dataclass
class PluginContext:
    """The operator services a plugin may use: the API door, read-only cache views and a way to wake a reconcile."""

    kube: Kube
    runs: Callable[[], Iterable[tuple[tuple[str, str], Mapping[str, Any]]]]
    pods_of: Callable[[str], list[PodView]]
    reconcile: Callable[[tuple[str, str]], None]


class RunPlugin:
    """Base class with no-op hooks; subclasses override what they need."""

    name = "plugin"

    def needs_finalizer(self, run: TrainingRun) -> bool:
        return False

    async def start(self, ctx: PluginContext) -> None:
        """Called once when the operator starts (spawn operator-wide loops here, never per-object timers)."""

    async def stop(self) -> None:
        """Called once when the operator stops."""

    async def prepare(self, run: TrainingRun, status: Mapping[str, Any]) -> Prepared:
        """Before the run's children are created (also before each gang restart)."""
        return Prepared()

    async def finished(self, run: TrainingRun, status: Mapping[str, Any]) -> dict[str, Any]:
        """Once, when the run reaches Succeeded or Failed; returns status fields to merge."""
        return {}

    async def deleted(self, run: TrainingRun, status: Mapping[str, Any]) -> None:
        """The run is being deleted (only called when `needs_finalizer` was true for it)."""


# name -> "module:Class"; modules are imported only when configured, keeping the operator's startup lean.
_REGISTRY: dict[str, str] = {
    "tracking": "runyard_operator.tracking.plugin:TrackingPlugin",
    "gpu": "runyard_operator.gpu.plugin:GPUPlugin",
    "artifacts": "runyard_operator.artifacts.plugin:ArtifactsPlugin",
}


def build_plugins(config: OperatorConfig) -> list[RunPlugin]:
    """Instantiate every plugin whose module exists; each decides from `config` whether it has work to do."""
    plugins: list[RunPlugin] = []
    for name, target in _REGISTRY.items():
        module_name, cls_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue  # plugin not part of this build
            raise
        plugin = getattr(module, cls_name).from_config(config)
        if plugin is not None:
            plugins.append(plugin)
            logger.info("plugin %s enabled", name)
    return plugins
