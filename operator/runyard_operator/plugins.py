"""Run plugins: optional behaviour around the core lifecycle (tracking, artifacts, GPU metrics), built from config.

A plugin never blocks the event loop (blocking clients go through `asyncio.to_thread`) and never raises out of a
hook for a reason the run cannot fix: it records the problem in the run's status or logs it instead.

A plugin never writes the status itself: the controller is its only writer. A plugin contributes status fields,
conditions and Events (`PluginContext.contribute`, or what a hook returns); the controller merges them into the
status it computed and writes both in one patch, then posts the Events.
"""

from __future__ import annotations

import importlib
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runyard_operator.policies import conditions as cond

if TYPE_CHECKING:
    from runyard.api import TrainingRun
    from runyard_operator.config import OperatorConfig
    from runyard_operator.k8s import Kube
    from runyard_operator.observe import PodView
    from runyard_operator.policies.stop import Stopping

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What a plugin adds before a run's children are created."""

    env: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    # BuildContext fields this plugin sets for the children (e.g. progress_url); names are BuildContext's own.
    build: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contribution:
    """Status changes plugins asked for and the controller has not written yet, for one run.

    `fields` replace top-level status fields; `conditions` are merged by type (the CRD's map list); `events` are posted
    after the write that records them. Each entry carries the sequence number it was contributed with, so a write
    only acknowledges what it included.
    """

    fields: Mapping[str, tuple[int, Any]] = field(default_factory=dict)
    conditions: Mapping[str, tuple[int, Mapping[str, Any]]] = field(default_factory=dict)
    events: Sequence[tuple[int, tuple[str, str, str]]] = ()

    def apply(self, status: Mapping[str, Any]) -> dict[str, Any]:
        """`status` with these fields and conditions merged in (a new dict; `status` is left alone)."""
        out = dict(status) | {name: value for name, (_, value) in self.fields.items()}
        if self.conditions:
            updates = [c for _, c in self.conditions.values()]
            out["conditions"] = cond.merge(out.get("conditions") or [], updates)
        return out

    def event_list(self) -> list[tuple[str, str, str]]:
        return [event for _, event in self.events]


class StatusContributions:
    """The plugins' pending status changes, per run UID, in memory: what the controller merges into its next write.

    Nothing here is a source of truth: once written, a field lives in the run's status (a restarted operator's
    plugins rebuild their state from there), and the entry is dropped.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Contribution] = {}
        self._seq = itertools.count(1)

    def contribute(
        self,
        uid: str,
        *,
        fields: Mapping[str, Any] | None = None,
        conditions: Iterable[Mapping[str, Any]] = (),
        events: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """Ask for status fields, conditions (built with `policies.conditions.condition`) and Events for a run."""
        seq = next(self._seq)
        current = self._pending.get(uid) or Contribution()
        self._pending[uid] = Contribution(
            fields={**current.fields, **{name: (seq, value) for name, value in (fields or {}).items()}},
            conditions={**current.conditions, **{str(c["type"]): (seq, dict(c)) for c in conditions}},
            events=[*current.events, *((seq, e) for e in events)],
        )

    def pending(self, uid: str) -> Contribution | None:
        return self._pending.get(uid)

    def written(self, uid: str, done: Contribution) -> None:
        """Drop what `done` held and was written; anything contributed since stays for the next write."""
        current = self._pending.get(uid)
        if current is None:
            return
        rest = Contribution(
            fields={k: v for k, v in current.fields.items() if done.fields.get(k, (0,))[0] != v[0]},
            conditions={k: v for k, v in current.conditions.items() if done.conditions.get(k, (0,))[0] != v[0]},
            events=[e for e in current.events if e not in done.events],
        )
        if rest.fields or rest.conditions or rest.events:
            self._pending[uid] = rest
        else:
            del self._pending[uid]

    def forget(self, uid: str) -> None:
        self._pending.pop(uid, None)

    def __len__(self) -> int:
        return len(self._pending)


@dataclass
class PluginContext:
    """The operator services a plugin may use: the API door, read-only cache views, a way to wake a reconcile, and
    the contributions store through which it changes a run's status (never by patching it)."""

    kube: Kube
    runs: Callable[[], Iterable[tuple[tuple[str, str], Mapping[str, Any]]]]
    pods_of: Callable[[str], list[PodView]]
    reconcile: Callable[[tuple[str, str]], None]
    status: StatusContributions = field(default_factory=StatusContributions)
    # A pod (by UID) of a Job the run controls, with the run's key: the only pods a run may be spoken for by.
    owned_pod: Callable[[str], tuple[tuple[str, str], PodView] | None] = lambda _uid: None
    # The run's cached body by key (decoded on each call: read what is needed and keep that).
    run: Callable[[tuple[str, str]], Mapping[str, Any] | None] = lambda _key: None

    def contribute(
        self,
        key: tuple[str, str],
        uid: str,
        *,
        fields: Mapping[str, Any] | None = None,
        conditions: Iterable[Mapping[str, Any]] = (),
        events: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """Record a status contribution for the run and wake its reconcile, which writes it (promptly: it is urgent)."""
        self.status.contribute(uid, fields=fields, conditions=conditions, events=events)
        self.reconcile(key)


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

    async def retiring(
        self, run: TrainingRun, status: Mapping[str, Any], attempt: int, pods: Sequence[PodView]
    ) -> dict[str, Any]:
        """An attempt ends (a gang restart, or the run's end) and its Jobs may be deleted right after: `pods` are its
        pods, still there. Returns status fields the controller writes with that change. The reconcile waits for
        this hook, so it must bound its own time."""
        return {}

    def stopping(self, run: TrainingRun, status: Mapping[str, Any], stop: Stopping) -> None:
        """A suspension or a Kueue preemption is stopping the attempt's replicas (`stop.pods`, still there); the
        attempt goes on when the run resumes. Called on every reconcile while they stop, so it must be idempotent;
        it must not block: what it learns goes into the status through `PluginContext.contribute`."""

    def pod_changed(self, run_uid: str, pod: PodView) -> None:
        """A pod of the run (by its label: ownership is not yet proven here) was added or changed in the cache. Called
        from the watch for every such event, so it must be cheap and must not block."""

    async def finished(self, run: TrainingRun, status: Mapping[str, Any]) -> dict[str, Any]:
        """Once, when the run reaches Succeeded or Failed; returns status fields the controller writes with the end."""
        return {}

    async def deleted(self, run: TrainingRun, status: Mapping[str, Any]) -> None:
        """The run is being deleted (only called when `needs_finalizer` was true for it)."""


# name -> "module:Class"; modules are imported only when configured, keeping the operator's startup lean.
_REGISTRY: dict[str, str] = {
    "tracking": "runyard_operator.tracking.plugin:TrackingPlugin",
    "gpu": "runyard_operator.gpu.plugin:GPUPlugin",
    "artifacts": "runyard_operator.artifacts.plugin:ArtifactsPlugin",
    "progress": "runyard_operator.progress.plugin:ProgressPlugin",
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
