"""JAX: the coordinator address, process count and id that `jax.distributed.initialize` reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runyard import constants as c
from runyard.frameworks.base import EnvList, FrameworkProfile, index_value, var

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRun
    from runyard.builders.addressing import Addressing


class JAX(FrameworkProfile):
    """jax.distributed: one process per `node` replica; replica 0 hosts the coordinator."""

    name = "jax"
    summary = "JAX multi-process (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)"
    roles = (c.ROLE_NODE,)
    default_port = c.DEFAULT_JAX_PORT
    env_names = (
        c.ENV_JAX_COORDINATOR_ADDRESS,
        c.ENV_JAX_NUM_PROCESSES,
        c.ENV_JAX_PROCESS_ID,
        c.ENV_COORDINATOR_ADDRESS,
        c.ENV_COORDINATOR_PORT,
        c.ENV_NUM_PROCESSES,
        c.ENV_PROCESS_ID,
    )

    def env(self, run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> EnvList:
        nodes = run.spec.replicas[c.ROLE_NODE].replicas
        host = addressing.host(c.ROLE_NODE, 0)
        port = addressing.port(c.ROLE_NODE, 0, self.port(run.spec))
        process_id = index_value(index)
        return [
            var(c.ENV_JAX_COORDINATOR_ADDRESS, f"{host}:{port}"),
            var(c.ENV_JAX_NUM_PROCESSES, nodes),
            var(c.ENV_JAX_PROCESS_ID, process_id),
            # Kubeflow JAXJob v1 names: address without the port, port separately.
            var(c.ENV_COORDINATOR_ADDRESS, host),
            var(c.ENV_COORDINATOR_PORT, port),
            var(c.ENV_NUM_PROCESSES, nodes),
            var(c.ENV_PROCESS_ID, process_id),
        ]
