"""Weights & Biases: every rank writes one run in W&B's shared mode, one labelled writer per rank.

Without shared mode, ranks that share WANDB_RUN_ID each resume the run as if they were its only writer and their
histories collide. In shared mode (`mode="shared"`, settings `x_primary`, `x_label`, `x_update_finish_state`, all
env-settable: `WANDB_X_PRIMARY` -> `x_primary`) the primary uploads config and files and sets the finish state,
the others only add their own history and system metrics, which W&B keeps apart by label.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, ClassVar

from runyard import constants as c
from runyard.trackers.base import ROLE_REF, TEMPLATE_RANK_LABEL, Rank, TrackerProfile, TrackingPlan

if TYPE_CHECKING:
    from runyard.context import RunContext

SHARED = "shared"


def run_id(uid: str) -> str:
    """W&B run id: the UID without dashes (32 lowercase hex characters; W&B forbids only `/\\#?%:`)."""
    return uid.replace("-", "").lower()


def mode(plan: TrackingPlan) -> str:
    """Configured WANDB_MODE (e.g. `offline` for air-gapped runs), else shared: the one mode that joins ranks."""
    return plan.settings_of(WandB.name).get(c.ENV_WANDB_MODE, SHARED)


class WandB(TrackerProfile):
    """One run per TrainingRun (id from the UID), grouped by the TrainingRun's name, one label per rank."""

    name = "wandb"
    id_env = c.ENV_WANDB_RUN_ID
    credential_env: ClassVar[tuple[str, ...]] = (c.ENV_WANDB_API_KEY,)
    reserved_env: ClassVar[tuple[str, ...]] = (
        c.ENV_WANDB_RUN_ID,
        c.ENV_WANDB_X_LABEL,
        c.ENV_WANDB_X_PRIMARY,
        c.ENV_WANDB_X_UPDATE_FINISH_STATE,
        c.ENV_WANDB_PRIMARY_LABEL,
    )

    def status_id(self, plan: TrackingPlan) -> str | None:
        return run_id(plan.run_uid)

    def common_env(self, plan: TrackingPlan) -> dict[str, str]:
        env = {
            c.ENV_WANDB_RUN_ID: run_id(plan.run_uid),
            c.ENV_WANDB_RUN_GROUP: plan.run_name,
            c.ENV_WANDB_PROJECT: plan.experiment,
            c.ENV_WANDB_NAME: plan.tracker_run_name,
        }
        if plan.tags:
            env[c.ENV_WANDB_TAGS] = ",".join(f"{k}={v}" for k, v in sorted(plan.tags.items()))
        env[c.ENV_WANDB_MODE] = mode(plan)
        if mode(plan) == SHARED:
            env[c.ENV_WANDB_PRIMARY_LABEL] = plan.primary_label
        return env

    def rank_env(self, plan: TrackingPlan, rank: Rank | None) -> dict[str, str]:
        env = {
            c.ENV_WANDB_DIR: f"{plan.output_dir}/wandb/{rank.label if rank else TEMPLATE_RANK_LABEL}",
            c.ENV_WANDB_X_LABEL: rank.label if rank else TEMPLATE_RANK_LABEL,
            c.ENV_WANDB_JOB_TYPE: rank.role if rank else ROLE_REF,
        }
        if mode(plan) == SHARED:
            # A pod template cannot express "index == 0": pods start as secondaries and runyard.context()
            # promotes the rank whose label is RUNYARD_WANDB_PRIMARY_LABEL (global rank 0).
            primary = "true" if rank is not None and rank.global_rank == 0 else "false"
            env[c.ENV_WANDB_X_PRIMARY] = primary
            env[c.ENV_WANDB_X_UPDATE_FINISH_STATE] = primary
        return env

    def process_env(self, ctx: RunContext, env: MutableMapping[str, str]) -> None:
        primary_label = env.get(c.ENV_WANDB_PRIMARY_LABEL)
        if primary_label and ctx.rank == 0 and ctx.rank_label == primary_label:
            env[c.ENV_WANDB_X_PRIMARY] = "true"
            env[c.ENV_WANDB_X_UPDATE_FINISH_STATE] = "true"
        if primary_label and ctx.local_world_size > 1 and ctx.rank_label:
            # torchrun starts several writers per pod: each needs its own label, or their system metrics and
            # history merge into one stream.
            env[c.ENV_WANDB_X_LABEL] = f"{ctx.rank_label}-local-{ctx.local_rank}"
