"""Polyaxon: every rank reports into one run instance; pods name their node, namespace and pod like Polyaxon's own."""

from __future__ import annotations

from typing import ClassVar

from runyard import constants as c
from runyard.trackers.base import Rank, TrackerProfile, TrackingPlan

# Polyaxon CE has a single organisation called "default".
OWNER = "default"


def run_instance(project: str, uid: str) -> str:
    """`<owner>.<project>.runs.<uuid>` as Polyaxon reads POLYAXON_RUN_INSTANCE."""
    return f"{OWNER}.{project}.runs.{uid.replace('-', '').lower()}"


class Polyaxon(TrackerProfile):
    """One run instance per TrainingRun (project = experiment), resources collected per pod."""

    name = "polyaxon"
    id_env = c.ENV_POLYAXON_RUN_INSTANCE
    credential_env: ClassVar[tuple[str, ...]] = (c.ENV_POLYAXON_AUTH_TOKEN,)
    reserved_env: ClassVar[tuple[str, ...]] = (
        c.ENV_POLYAXON_RUN_INSTANCE,
        c.ENV_POLYAXON_K8S_NODE_NAME,
        c.ENV_POLYAXON_K8S_NAMESPACE,
        c.ENV_POLYAXON_K8S_POD_ID,
    )

    def status_id(self, plan: TrackingPlan) -> str | None:
        return run_instance(plan.experiment, plan.run_uid)

    def common_env(self, plan: TrackingPlan) -> dict[str, str]:
        return {
            c.ENV_POLYAXON_RUN_INSTANCE: run_instance(plan.experiment, plan.run_uid),
            c.ENV_POLYAXON_COLLECT_RESOURCES: "true",
        }

    def rank_env(self, plan: TrackingPlan, rank: Rank | None) -> dict[str, str]:
        if rank is not None:
            return {}  # local processes have no pod, node or namespace
        # Reuse the downward-API values the builders already inject instead of a second fieldRef each.
        return {
            c.ENV_POLYAXON_K8S_NODE_NAME: f"$({c.ENV_NODE_NAME})",
            c.ENV_POLYAXON_K8S_NAMESPACE: f"$({c.ENV_NAMESPACE})",
            c.ENV_POLYAXON_K8S_POD_ID: f"$({c.ENV_POD_NAME})",
        }
