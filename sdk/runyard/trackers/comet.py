"""Comet: every rank opens the same experiment (`get_or_create` on one key) and reports as its own node."""

from __future__ import annotations

import hashlib
from typing import ClassVar

from runyard import constants as c
from runyard.trackers.base import TEMPLATE_RANK_LABEL, Rank, TrackerProfile, TrackingPlan


def experiment_key(uid: str) -> str:
    """Comet experiment key: sha1 of the UID (40 hex; Comet wants 32-50 alphanumerics), as comet-examples does."""
    return hashlib.sha1(uid.encode()).hexdigest()


class Comet(TrackerProfile):
    """One experiment per TrainingRun, one node identifier per rank."""

    name = "comet"
    id_env = c.ENV_COMET_EXPERIMENT_KEY
    credential_env: ClassVar[tuple[str, ...]] = (c.ENV_COMET_API_KEY,)
    reserved_env: ClassVar[tuple[str, ...]] = (c.ENV_COMET_EXPERIMENT_KEY, c.ENV_COMET_NODE_IDENTIFIER)

    def status_id(self, plan: TrackingPlan) -> str | None:
        return experiment_key(plan.run_uid)

    def common_env(self, plan: TrackingPlan) -> dict[str, str]:
        return {
            c.ENV_COMET_EXPERIMENT_KEY: experiment_key(plan.run_uid),
            c.ENV_COMET_START_MODE: "get_or_create",
            c.ENV_COMET_PROJECT_NAME: plan.experiment,
            c.ENV_COMET_EXPERIMENT_NAME: plan.tracker_run_name,
        }

    def rank_env(self, plan: TrackingPlan, rank: Rank | None) -> dict[str, str]:
        label = rank.label if rank else TEMPLATE_RANK_LABEL
        return {
            c.ENV_COMET_NODE_IDENTIFIER: label,
            # Comet creates only the last path component (os.mkdir), so the directory sits directly under the root.
            c.ENV_COMET_OFFLINE_DIRECTORY: f"{plan.output_dir}/comet-{label}",
        }
