"""TensorBoard: no server and no run id; one event directory per rank under the run's shared root."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, ClassVar

from runyard import constants as c
from runyard.trackers.base import TEMPLATE_RANK_LABEL, Rank, TrackerProfile, TrackingPlan

if TYPE_CHECKING:
    from runyard.context import RunContext

# Sub-directory of the artifacts path (or of a local run's output directory) that holds every rank's events.
ROOT = "tensorboard"


class TensorBoard(TrackerProfile):
    """Never two writers in one directory (tensorflow/tensorboard#1011), so `tensorboard --logdir <root>` shows
    every rank side by side."""

    name = "tensorboard"
    reserved_env: ClassVar[tuple[str, ...]] = (c.ENV_TENSORBOARD_DIR,)

    def rank_env(self, plan: TrackingPlan, rank: Rank | None) -> dict[str, str]:
        label = rank.label if rank else TEMPLATE_RANK_LABEL
        return {c.ENV_TENSORBOARD_DIR: f"{plan.output_dir}/{ROOT}/{label}"}

    def base_env(self, artifacts_path: str) -> dict[str, str]:
        # The shared root, for runs without the tracking plugin; its per-rank entry comes later and wins.
        return {c.ENV_TENSORBOARD_DIR: f"{artifacts_path.rstrip('/')}/{ROOT}"}

    def process_env(self, ctx: RunContext, env: MutableMapping[str, str]) -> None:
        # Several processes share a pod's env: runyard.context() gave each local rank its own sub-directory.
        if ctx.tensorboard_dir is not None:
            env[c.ENV_TENSORBOARD_DIR] = str(ctx.tensorboard_dir)
