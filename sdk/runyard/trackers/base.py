"""The interface every tracker profile implements, and the run facts (plan, rank) its env is rendered from.

Pure and light: no tracker client, no pydantic, no I/O. `runyard.context()` loads the profiles inside training
processes, and `import runyard` must stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from runyard import constants as c

if TYPE_CHECKING:
    from runyard.context import RunContext

# Expanded by the kubelet; both are defined by the builders before any operator-injected entry, because one pod
# template (and one operator-injected env list) serves every pod of every role.
ROLE_REF = f"$({c.ENV_ROLE})"
INDEX_REF = f"$({c.ENV_REPLICA_INDEX})"
TEMPLATE_RANK_LABEL = f"{ROLE_REF}-{INDEX_REF}"


def rank_label(role: str, index: int | str) -> str:
    """`<role>-<index>`: unique per pod, stable across gang restarts, readable in every tracker's UI."""
    return f"{role}-{index}"


@dataclass(frozen=True)
class Rank:
    """One replica of a run as a local process sees it: its role, its index in the role and its global rank."""

    role: str
    index: int
    global_rank: int

    @property
    def label(self) -> str:
        return rank_label(self.role, self.index)


@dataclass(frozen=True)
class MLflowTarget:
    """An MLflow run that already exists; every rank joins it through MLFLOW_RUN_ID."""

    tracking_uri: str
    experiment_id: str
    run_id: str
    system_metrics: bool = True
    system_metrics_interval: int | None = None


@dataclass(frozen=True)
class TrackingPlan:
    """Everything the env of one tracked run depends on (`runyard.tracking.env.plan_for` derives it from a run)."""

    trackers: tuple[str, ...]
    run_uid: str
    run_name: str
    experiment: str
    tracker_run_name: str
    output_dir: str
    primary_label: str
    # The run's MLflow run, created by a lifecycle (operator plugin, local runner) before any rank starts.
    mlflow: MLflowTarget | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    # The TrainingRun's annotations: how a run names objects made outside Runyard (e.g. a ClearML task).
    annotations: Mapping[str, str] = field(default_factory=dict)
    # Plain env per tracker from configuration (server URLs, modes); wins over the rendered defaults.
    settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def settings_of(self, tracker: str) -> Mapping[str, str]:
        """The configured env of `tracker` (empty when none)."""
        return self.settings.get(tracker, {})


class TrackerProfile:
    """Everything Runyard knows about one tracker; one subclass per module in `runyard.trackers`.

    Class attributes describe the tracker without a run (the SDK context, the operator's configuration checks);
    methods render its env from a `TrackingPlan`. Every method is pure and returns only this tracker's variables:
    `runyard.tracking.env` adds the shared ones and applies configured settings on top.
    """

    name: ClassVar[str]
    # Variable holding the run's id in this tracker: `runyard.context().tracker_ids[name]` reads it.
    id_env: ClassVar[str | None] = None
    # Variables carrying secrets: configuration passes them only as Secret references (`secretEnv`), never as
    # plain values that would sit in every pod spec.
    credential_env: ClassVar[tuple[str, ...]] = ()
    # Variables Runyard derives per run or per rank (ids, rank labels): a cluster-wide setting would merge runs or
    # ranks, so configuration may not set them.
    reserved_env: ClassVar[tuple[str, ...]] = ()

    def status_id(self, plan: TrackingPlan) -> str | None:
        """The run's id in this tracker for `status.tracking.ids` (None: no id, or it is reported elsewhere)."""
        return None

    def common_env(self, plan: TrackingPlan) -> dict[str, str]:
        """Env identical for every rank of the run, in a stable order."""
        return {}

    def rank_env(self, plan: TrackingPlan, rank: Rank | None) -> dict[str, str]:
        """Per-rank env: literal for `rank`, the pod-template form with `$(VAR)` references when None."""
        return {}

    def base_env(self, artifacts_path: str) -> dict[str, str]:
        """Env every replica gets from the builders when the spec names this tracker, tracked or not."""
        return {}

    def process_env(self, ctx: RunContext, env: MutableMapping[str, str]) -> None:
        """Per-process adjustments a pod template cannot express, made by `runyard.context()` (mutates `env`)."""
