"""XGBoost: the DMLC tracker contract (as Kubeflow Trainer's XGBoost runtime injects it) for collective training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from runyard import constants as c
from runyard.frameworks.base import EnvList, FrameworkProfile, index_value, var

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRun
    from runyard.builders.addressing import Addressing

ENV_DMLC_TRACKER_URI: Final = "DMLC_TRACKER_URI"
ENV_DMLC_TRACKER_PORT: Final = "DMLC_TRACKER_PORT"
ENV_DMLC_NUM_WORKER: Final = "DMLC_NUM_WORKER"
ENV_DMLC_TASK_ID: Final = "DMLC_TASK_ID"
DEFAULT_TRACKER_PORT: Final = 29500


class XGBoost(FrameworkProfile):
    """`node` replicas, one XGBoost worker each; replica 0 also runs the Rabit tracker the workers connect to.

    XGBoost reads none of these variables itself: `xgboost.collective` takes them as arguments, and the tracker is
    started by the training code on replica 0 (see examples/xgboost/train.py). The names are Kubeflow Trainer's, so a
    script written for its XGBoost runtime runs unchanged.
    """

    name = "xgboost"
    summary = "XGBoost collective (Rabit tracker on replica 0: DMLC_TRACKER_URI/PORT, DMLC_NUM_WORKER, DMLC_TASK_ID)"
    roles = (c.ROLE_NODE,)
    default_port = DEFAULT_TRACKER_PORT
    env_names = (ENV_DMLC_TRACKER_URI, ENV_DMLC_TRACKER_PORT, ENV_DMLC_NUM_WORKER, ENV_DMLC_TASK_ID)

    def env(self, run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> EnvList:
        return [
            var(ENV_DMLC_TRACKER_URI, addressing.host(c.ROLE_NODE, 0)),
            var(ENV_DMLC_TRACKER_PORT, addressing.port(c.ROLE_NODE, 0, self.port(run.spec))),
            var(ENV_DMLC_NUM_WORKER, run.spec.replicas[c.ROLE_NODE].replicas),
            var(ENV_DMLC_TASK_ID, index_value(index)),
        ]
