"""Pure env rendering of a tracked run: a thin driver over the tracker registry (`runyard.trackers`).

No I/O and no tracker imports: the operator renders pod templates from it and the local runner literal per-rank env.
Two forms exist for per-rank values. The pod-template form (`rank=None`) uses Kubernetes `$(VAR)` expansion of
`RUNYARD_ROLE` and `RUNYARD_REPLICA_INDEX`, which the builders define earlier in every container's env, because one
template (and one operator-injected env list) serves every pod of every role. The literal form takes a `Rank`.
What each tracker renders lives in its profile; here are only the variables every tracked run shares, the order
(trackers in the run's order) and the rule that configured settings win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runyard import constants as c
from runyard import trackers
from runyard.api.v1alpha1 import TrainingRun
from runyard.trackers.base import TEMPLATE_RANK_LABEL, MLflowTarget, Rank, TrackingPlan, rank_label

__all__ = [
    "DOWNWARD_ENV",
    "MLflowTarget",
    "Rank",
    "TrackingPlan",
    "common_env",
    "experiment_name",
    "normalize_trackers",
    "plan_for",
    "pod_env",
    "primary_label",
    "rank_env",
    "rank_label",
    "selected_trackers",
    "tracker_ids",
    "tracker_run_name",
]


def normalize_trackers(names: Iterable[str]) -> tuple[str, ...]:
    """Registered tracker names, deduplicated in order; unknown names dropped."""
    return trackers.known(names)


def selected_trackers(run: TrainingRun, defaults: Iterable[str] = ()) -> tuple[str, ...]:
    """The run's `spec.tracking.trackers`, or the configured defaults when it names none."""
    tracking = run.spec.tracking
    return normalize_trackers(tracking.trackers if tracking and tracking.trackers else defaults)


def experiment_name(run: TrainingRun) -> str:
    """`spec.tracking.experiment`, else the namespace, else `default` (local runs have no namespace)."""
    tracking = run.spec.tracking
    if tracking and tracking.experiment:
        return tracking.experiment
    return run.metadata.namespace or c.DEFAULT_EXPERIMENT


def tracker_run_name(run: TrainingRun) -> str:
    """`spec.tracking.runName`, else the TrainingRun's name."""
    tracking = run.spec.tracking
    return tracking.run_name if tracking and tracking.run_name else run.name


def primary_label(run: TrainingRun) -> str:
    """Label of global rank 0: replica 0 of the role that coordinates the run."""
    from runyard import frameworks

    return rank_label(frameworks.of(run.spec).primary_role(run.spec), 0)


def plan_for(
    run: TrainingRun,
    selected: Sequence[str],
    *,
    run_uid: str | None = None,
    mlflow: MLflowTarget | None = None,
    settings: Mapping[str, Mapping[str, str]] | None = None,
    output_dir: str | None = None,
) -> TrackingPlan:
    """Collect the plan of `run`; `run_uid` defaults to the run's UID, `output_dir` to `spec.artifacts.path`."""
    uid = run_uid or run.metadata.uid
    if not uid:
        raise ValueError(f"run {run.name} has no UID; pass run_uid")
    tracking = run.spec.tracking
    return TrackingPlan(
        trackers=normalize_trackers(selected),
        run_uid=uid,
        run_name=run.name,
        experiment=experiment_name(run),
        tracker_run_name=tracker_run_name(run),
        output_dir=(output_dir or run.spec.artifacts.path).rstrip("/") or "/",
        primary_label=primary_label(run),
        mlflow=mlflow,
        tags=dict(tracking.tags or {}) if tracking else {},
        annotations=dict(run.metadata.annotations or {}),
        settings={k: dict(v) for k, v in (settings or {}).items()},
    )


def tracker_ids(plan: TrackingPlan) -> dict[str, str]:
    """Ids of the run in the selected trackers (for `status.tracking.ids`; MLflow's has its own status field)."""
    ids: dict[str, str] = {}
    for name in plan.trackers:
        value = trackers.get(name).status_id(plan)
        if value:
            ids[name] = value
    return ids


def common_env(plan: TrackingPlan) -> dict[str, str]:
    """Env identical for every rank of the run, in a stable order (configured settings override defaults)."""
    env: dict[str, str] = {c.ENV_TRACKERS: ",".join(plan.trackers)}
    for name in plan.trackers:
        env.update(trackers.get(name).common_env(plan))
        env.update(plan.settings_of(name))
    return env


def rank_env(plan: TrackingPlan, rank: Rank | None = None) -> dict[str, str]:
    """Per-rank env: literal for a `rank`, `$(RUNYARD_ROLE)-$(RUNYARD_REPLICA_INDEX)` expansions when None.

    Configured settings win here too: a setting naming a per-rank variable (e.g. WANDB_DIR) replaces it.
    """
    label = rank.label if rank else TEMPLATE_RANK_LABEL
    env: dict[str, str] = {c.ENV_RANK_LABEL: label, c.ENV_OUTPUT_DIR: f"{plan.output_dir}/outputs/{label}"}
    if rank is not None:
        env[c.ENV_GLOBAL_RANK] = str(rank.global_rank)
    # Valohai-style tools read their outputs directory from here; Sacred/Guild users point observers at it.
    env[c.ENV_VH_OUTPUTS_DIR] = env[c.ENV_OUTPUT_DIR]
    settings: dict[str, str] = {}
    for name in plan.trackers:
        settings.update(plan.settings_of(name))
        env.update(trackers.get(name).rank_env(plan, rank))
    for name in list(env):
        if name in settings:
            env[name] = settings[name]
    return env


def _var(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


# Pod metadata the builders do not inject already (they set pod name, node name and namespace).
DOWNWARD_ENV: tuple[dict[str, Any], ...] = (
    _field(c.ENV_POD_UID, "metadata.uid"),
    _field(c.ENV_POD_IP, "status.podIP"),
)


def pod_env(plan: TrackingPlan) -> list[dict[str, Any]]:
    """The Kubernetes EnvVar list for every pod of the run (the operator adds secretKeyRef entries after it)."""
    env = [dict(e) for e in DOWNWARD_ENV]
    env += [_var(k, v) for k, v in common_env(plan).items()]
    env += [_var(k, v) for k, v in rank_env(plan, None).items()]
    return env
