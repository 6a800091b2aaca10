"""TensorFlow: TF_CONFIG (cluster, task, environment) for MultiWorkerMirroredStrategy and parameter-server training."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from runyard import constants as c
from runyard.api.rules import Rule, fail_if
from runyard.frameworks.base import INDEX_REF, EnvList, FrameworkProfile, var

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRun
    from runyard.builders.addressing import Addressing

_TF_INDEX_SENTINEL = "__RUNYARD_TF_INDEX__"


def build_tf_config(run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> str:
    """TF_CONFIG as TensorFlow's TFConfigClusterResolver reads it: cluster, task, environment; compact JSON.

    With `index=None` the task index is the literal `$(RUNYARD_REPLICA_INDEX)`, which the kubelet expands.
    """
    spec = run.spec
    port = TensorFlow().port(spec)
    cluster = {
        r: [f"{addressing.host(r, i)}:{addressing.port(r, i, port)}" for i in range(spec.replicas[r].replicas)]
        for r in sorted(spec.replicas)
    }
    config = {
        "cluster": cluster,
        "task": {"type": role, "index": _TF_INDEX_SENTINEL if index is None else index},
        "environment": "cloud",
    }
    text = json.dumps(config, separators=(",", ":"))
    return text.replace(f'"{_TF_INDEX_SENTINEL}"', INDEX_REF)


class TensorFlow(FrameworkProfile):
    """tf.distribute: `chief` (at most 1), `worker`, `ps`, `evaluator`; the chief (else the workers) decides success."""

    name = "tensorflow"
    summary = "TensorFlow tf.distribute (TF_CONFIG)"
    roles = (c.ROLE_CHIEF, c.ROLE_WORKER, c.ROLE_PS, c.ROLE_EVALUATOR)
    default_port = c.DEFAULT_TF_PORT
    env_names = (c.ENV_TF_CONFIG,)
    rules = (
        Rule(
            cel="self.framework != 'tensorflow' || !('chief' in self.replicas) || self.replicas['chief'].replicas == 1",
            message="framework tensorflow allows at most 1 chief replica (spec.replicas.chief.replicas)",
            field_path=".replicas",
            check=lambda s: fail_if(
                s.framework == "tensorflow" and c.ROLE_CHIEF in s.replicas and s.replicas[c.ROLE_CHIEF].replicas != 1,
                "spec.replicas.chief.replicas",
            ),
        ),
        Rule(
            cel="self.framework != 'tensorflow' || 'chief' in self.replicas || 'worker' in self.replicas",
            message="framework tensorflow needs a chief or a worker role in spec.replicas",
            field_path=".replicas",
            check=lambda s: fail_if(
                s.framework == "tensorflow" and c.ROLE_CHIEF not in s.replicas and c.ROLE_WORKER not in s.replicas,
                "spec.replicas",
            ),
        ),
    )

    def env(self, run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> EnvList:
        return [var(c.ENV_TF_CONFIG, build_tf_config(run, role, index, addressing))]
