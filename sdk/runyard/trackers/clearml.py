"""ClearML: ranks join the task the run names in its annotation, one node each (multi-node single-task mode)."""

from __future__ import annotations

from typing import ClassVar

from runyard import constants as c
from runyard.trackers.base import INDEX_REF, Rank, TrackerProfile, TrackingPlan


def task_id(plan: TrackingPlan) -> str | None:
    """The ClearML task of the run: annotation `runyard.dev/clearml-task-id` (the ClearML server creates tasks)."""
    return plan.annotations.get(c.ANNOTATION_CLEARML_TASK_ID) or None


class ClearML(TrackerProfile):
    """Without an operator-named task there is nothing for the ranks to join (offline mode and a task id cannot be
    combined), so ClearML then keeps its default of one task per process and nothing is rendered."""

    name = "clearml"
    id_env = c.ENV_CLEARML_TASK_ID
    credential_env: ClassVar[tuple[str, ...]] = (c.ENV_CLEARML_API_ACCESS_KEY, c.ENV_CLEARML_API_SECRET_KEY)
    reserved_env: ClassVar[tuple[str, ...]] = (c.ENV_CLEARML_TASK_ID, c.ENV_CLEARML_NODE_ID)

    def status_id(self, plan: TrackingPlan) -> str | None:
        return task_id(plan)

    def common_env(self, plan: TrackingPlan) -> dict[str, str]:
        task = task_id(plan)
        if task is None:
            return {}
        return {c.ENV_CLEARML_TASK_ID: task, c.ENV_CLEARML_MULTI_NODE_SINGLE_TASK: "1"}

    def rank_env(self, plan: TrackingPlan, rank: Rank | None) -> dict[str, str]:
        if task_id(plan) is None:
            return {}
        return {c.ENV_CLEARML_NODE_ID: str(rank.global_rank) if rank else INDEX_REF}
