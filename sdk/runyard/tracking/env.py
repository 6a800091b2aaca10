"""Pure env rendering per tracker: the variables that make every rank of a TrainingRun log into one run or group.

No I/O and no tracker imports: the operator renders pod templates from it and the local runner literal per-rank env.
Two forms exist for per-rank values. The pod-template form (`rank=None`) uses Kubernetes `$(VAR)` expansion of
`RUNYARD_ROLE` and `RUNYARD_REPLICA_INDEX`, which the builders define earlier in every container's env, because one
template (and one operator-injected env list) serves every pod of every role. The literal form takes a `Rank`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runyard import constants as c
from runyard.api.v1alpha1 import Tracker, TrainingRun

# Expanded by the kubelet; both are defined by builders.build_env before any operator-injected entry.
ROLE_REF = f"$({c.ENV_ROLE})"
INDEX_REF = f"$({c.ENV_REPLICA_INDEX})"
TEMPLATE_RANK_LABEL = f"{ROLE_REF}-{INDEX_REF}"
# Polyaxon CE has a single organisation called "default".
POLYAXON_OWNER = "default"


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
    """Everything the env of one tracked run depends on (derive it with `plan_for`)."""

    trackers: tuple[Tracker, ...]
    run_uid: str
    run_name: str
    experiment: str
    tracker_run_name: str
    output_dir: str
    primary_label: str
    mlflow: MLflowTarget | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    clearml_task_id: str | None = None
    # Plain env per tracker from configuration (server URLs, modes); wins over the rendered defaults.
    settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def rank_label(role: str, index: int | str) -> str:
    """`<role>-<index>`: unique per pod, stable across gang restarts, readable in every tracker's UI."""
    return f"{role}-{index}"


def normalize_trackers(names: Iterable[str]) -> tuple[Tracker, ...]:
    """Tracker names as enum members, deduplicated in order; unknown names dropped."""
    known = {t.value for t in Tracker}
    out: list[Tracker] = []
    for name in names:
        value = str(getattr(name, "value", name))
        if value in known and Tracker(value) not in out:
            out.append(Tracker(value))
    return tuple(out)


def selected_trackers(run: TrainingRun, defaults: Iterable[str] = ()) -> tuple[Tracker, ...]:
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
    from runyard.builders.env import primary_role

    return rank_label(primary_role(run.spec), 0)


def plan_for(
    run: TrainingRun,
    trackers: Sequence[Tracker],
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
    annotations = run.metadata.annotations or {}
    tracking = run.spec.tracking
    return TrackingPlan(
        trackers=tuple(trackers),
        run_uid=uid,
        run_name=run.name,
        experiment=experiment_name(run),
        tracker_run_name=tracker_run_name(run),
        output_dir=(output_dir or run.spec.artifacts.path).rstrip("/") or "/",
        primary_label=primary_label(run),
        mlflow=mlflow,
        tags=dict(tracking.tags or {}) if tracking else {},
        clearml_task_id=annotations.get(c.ANNOTATION_CLEARML_TASK_ID),
        settings={k: dict(v) for k, v in (settings or {}).items()},
    )


# --- ids ------------------------------------------------------------------------------------------------


def wandb_run_id(uid: str) -> str:
    """W&B run id: the UID without dashes (32 lowercase hex characters; W&B forbids only `/\\#?%:`)."""
    return uid.replace("-", "").lower()


def comet_experiment_key(uid: str) -> str:
    """Comet experiment key: sha1 of the UID (40 hex; Comet wants 32-50 alphanumerics), as comet-examples does."""
    return hashlib.sha1(uid.encode()).hexdigest()


def neptune_custom_run_id(uid: str) -> str:
    """Neptune 1.x custom run id: the UID itself (36 characters, Neptune's maximum)."""
    return uid


def polyaxon_run_instance(project: str, uid: str) -> str:
    """`<owner>.<project>.runs.<uuid>` as Polyaxon reads POLYAXON_RUN_INSTANCE."""
    return f"{POLYAXON_OWNER}.{project}.runs.{uid.replace('-', '').lower()}"


def tracker_ids(plan: TrackingPlan) -> dict[str, str]:
    """Ids of the run in every non-MLflow tracker (for `status.tracking.ids` and `runyard.context()`)."""
    ids: dict[str, str] = {}
    for tracker in plan.trackers:
        if tracker is Tracker.WANDB:
            ids["wandb"] = wandb_run_id(plan.run_uid)
        elif tracker is Tracker.COMET:
            ids["comet"] = comet_experiment_key(plan.run_uid)
        elif tracker is Tracker.NEPTUNE:
            ids["neptune"] = neptune_custom_run_id(plan.run_uid)
        elif tracker is Tracker.POLYAXON:
            ids["polyaxon"] = polyaxon_run_instance(plan.experiment, plan.run_uid)
        elif tracker is Tracker.CLEARML and plan.clearml_task_id:
            ids["clearml"] = plan.clearml_task_id
    return ids


# --- env ------------------------------------------------------------------------------------------------


def _wandb_mode(plan: TrackingPlan) -> str | None:
    settings = plan.settings.get(Tracker.WANDB.value, {})
    if c.ENV_WANDB_MODE in settings:
        return settings[c.ENV_WANDB_MODE]
    # Shared mode (all ranks write one run) needs a W&B server; without one W&B's own default mode applies.
    return "shared" if c.ENV_WANDB_BASE_URL in settings else None


def common_env(plan: TrackingPlan) -> dict[str, str]:
    """Env identical for every rank of the run, in a stable order (configured settings override defaults)."""
    env: dict[str, str] = {c.ENV_TRACKERS: ",".join(t.value for t in plan.trackers)}
    for tracker in plan.trackers:
        if tracker is Tracker.MLFLOW and plan.mlflow:
            m = plan.mlflow
            env[c.ENV_MLFLOW_TRACKING_URI] = m.tracking_uri
            env[c.ENV_MLFLOW_EXPERIMENT_ID] = m.experiment_id
            env[c.ENV_MLFLOW_RUN_ID] = m.run_id
            env[c.ENV_MLFLOW_SYSTEM_METRICS] = "true" if m.system_metrics else "false"
            if m.system_metrics and m.system_metrics_interval:
                env[c.ENV_MLFLOW_SYSTEM_METRICS_INTERVAL] = str(m.system_metrics_interval)
        elif tracker is Tracker.WANDB:
            env[c.ENV_WANDB_RUN_ID] = wandb_run_id(plan.run_uid)
            env[c.ENV_WANDB_RUN_GROUP] = plan.run_name
            env[c.ENV_WANDB_PROJECT] = plan.experiment
            env[c.ENV_WANDB_NAME] = plan.tracker_run_name
            if plan.tags:
                env[c.ENV_WANDB_TAGS] = ",".join(f"{k}={v}" for k, v in sorted(plan.tags.items()))
            mode = _wandb_mode(plan)
            if mode:
                env[c.ENV_WANDB_MODE] = mode
            if mode == "shared":
                env[c.ENV_WANDB_PRIMARY_LABEL] = plan.primary_label
        elif tracker is Tracker.COMET:
            env[c.ENV_COMET_EXPERIMENT_KEY] = comet_experiment_key(plan.run_uid)
            env[c.ENV_COMET_START_MODE] = "get_or_create"
            env[c.ENV_COMET_PROJECT_NAME] = plan.experiment
            env[c.ENV_COMET_EXPERIMENT_NAME] = plan.tracker_run_name
        elif tracker is Tracker.CLEARML and plan.clearml_task_id:
            # Without an operator-created task there is nothing for the ranks to join (offline mode and a task id
            # cannot be combined), so ClearML keeps its default of one task per process.
            env[c.ENV_CLEARML_TASK_ID] = plan.clearml_task_id
            env[c.ENV_CLEARML_MULTI_NODE_SINGLE_TASK] = "1"
        elif tracker is Tracker.POLYAXON:
            env[c.ENV_POLYAXON_RUN_INSTANCE] = polyaxon_run_instance(plan.experiment, plan.run_uid)
            env[c.ENV_POLYAXON_COLLECT_RESOURCES] = "true"
        elif tracker is Tracker.NEPTUNE:
            env[c.ENV_NEPTUNE_CUSTOM_RUN_ID] = neptune_custom_run_id(plan.run_uid)
        env.update(plan.settings.get(tracker.value, {}))
    return env


def rank_env(plan: TrackingPlan, rank: Rank | None = None) -> dict[str, str]:
    """Per-rank env: literal for a `rank`, `$(RUNYARD_ROLE)-$(RUNYARD_REPLICA_INDEX)` expansions when None.

    Configured settings win here too: a setting naming a per-rank variable (e.g. WANDB_DIR) replaces it.
    """
    label = rank.label if rank else TEMPLATE_RANK_LABEL
    out = plan.output_dir
    env: dict[str, str] = {c.ENV_RANK_LABEL: label, c.ENV_OUTPUT_DIR: f"{out}/outputs/{label}"}
    if rank is not None:
        env[c.ENV_GLOBAL_RANK] = str(rank.global_rank)
    # Valohai-style tools read their outputs directory from here; Sacred/Guild users point observers at it.
    env[c.ENV_VH_OUTPUTS_DIR] = env[c.ENV_OUTPUT_DIR]
    settings: dict[str, str] = {}
    shared_wandb = Tracker.WANDB in plan.trackers and _wandb_mode(plan) == "shared"
    for tracker in plan.trackers:
        settings.update(plan.settings.get(tracker.value, {}))
        if tracker is Tracker.MLFLOW and plan.mlflow and plan.mlflow.system_metrics:
            env[c.ENV_MLFLOW_SYSTEM_METRICS_NODE_ID] = label
        elif tracker is Tracker.WANDB:
            env[c.ENV_WANDB_DIR] = f"{out}/wandb/{label}"
            env[c.ENV_WANDB_X_LABEL] = label
            env[c.ENV_WANDB_JOB_TYPE] = rank.role if rank else ROLE_REF
            if shared_wandb:
                # A pod template cannot express "index == 0": pods start as secondaries and runyard.context()
                # promotes the rank whose label is RUNYARD_WANDB_PRIMARY_LABEL (global rank 0).
                primary = rank is not None and rank.global_rank == 0
                env[c.ENV_WANDB_X_PRIMARY] = "true" if primary else "false"
                env[c.ENV_WANDB_X_UPDATE_FINISH_STATE] = "true" if primary else "false"
        elif tracker is Tracker.COMET:
            env[c.ENV_COMET_NODE_IDENTIFIER] = label
            # Comet creates only the last path component (os.mkdir), so the directory sits directly under the root.
            env[c.ENV_COMET_OFFLINE_DIRECTORY] = f"{out}/comet-{label}"
        elif tracker is Tracker.CLEARML and plan.clearml_task_id:
            env[c.ENV_CLEARML_NODE_ID] = str(rank.global_rank) if rank else INDEX_REF
        elif tracker is Tracker.NEPTUNE:
            env[c.ENV_NEPTUNE_MONITORING_NAMESPACE] = f"monitoring/{label}"
        elif tracker is Tracker.TENSORBOARD:
            # Never two writers in one directory (tensorflow/tensorboard#1011): one sub-directory per rank under
            # the run's shared `<artifacts>/tensorboard` root, so `tensorboard --logdir <root>` shows every rank.
            env[c.ENV_TENSORBOARD_DIR] = f"{out}/tensorboard/{label}"
        if tracker is Tracker.POLYAXON and rank is None:
            # Reuse the downward-API values the builders already inject instead of a second fieldRef each.
            env[c.ENV_POLYAXON_K8S_NODE_NAME] = f"$({c.ENV_NODE_NAME})"
            env[c.ENV_POLYAXON_K8S_NAMESPACE] = f"$({c.ENV_NAMESPACE})"
            env[c.ENV_POLYAXON_K8S_POD_ID] = f"$({c.ENV_POD_NAME})"
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
