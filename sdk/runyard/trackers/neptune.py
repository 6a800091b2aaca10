"""Neptune 1.x (legacy, self-hosted only): ranks share a custom run id, each with its own monitoring namespace."""

from __future__ import annotations

from typing import ClassVar

from runyard import constants as c
from runyard.trackers.base import TEMPLATE_RANK_LABEL, Rank, TrackerProfile, TrackingPlan


def custom_run_id(uid: str) -> str:
    """Neptune 1.x custom run id: the UID itself (36 characters, Neptune's maximum)."""
    return uid


class Neptune(TrackerProfile):
    """The project comes from configuration (`NEPTUNE_PROJECT`); the server URL is inside the API token."""

    name = "neptune"
    id_env = c.ENV_NEPTUNE_CUSTOM_RUN_ID
    credential_env: ClassVar[tuple[str, ...]] = (c.ENV_NEPTUNE_API_TOKEN,)
    reserved_env: ClassVar[tuple[str, ...]] = (c.ENV_NEPTUNE_CUSTOM_RUN_ID, c.ENV_NEPTUNE_MONITORING_NAMESPACE)

    def status_id(self, plan: TrackingPlan) -> str | None:
        return custom_run_id(plan.run_uid)

    def common_env(self, plan: TrackingPlan) -> dict[str, str]:
        return {c.ENV_NEPTUNE_CUSTOM_RUN_ID: custom_run_id(plan.run_uid)}

    def rank_env(self, plan: TrackingPlan, rank: Rank | None) -> dict[str, str]:
        label = rank.label if rank else TEMPLATE_RANK_LABEL
        # Hardware series of every rank would otherwise share one namespace in the one run.
        return {c.ENV_NEPTUNE_MONITORING_NAMESPACE: f"monitoring/{label}"}
