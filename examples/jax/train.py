"""JAX multi-process data-parallel linear regression on CPU, initialised from Runyard's coordinator env.

`jax.distributed.initialize` reads JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (set by Runyard,
locally and in pods). Each process fits its shard; gradients are averaged over processes every step with a
cross-process all-gather, so every process ends with the same weights. Without JAX_NUM_PROCESSES it runs alone.
Every process logs `process_<i>/loss` into the run's tracker (`runyard.log_metrics`) and writes its weights into
RUNYARD_ARTIFACT_DIR.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

import runyard


def main() -> int:
    num_processes = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
    if num_processes > 1:
        # Cross-process collectives on CPU go through gloo.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # type: ignore[no-untyped-call]
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=num_processes,
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    pid, count = jax.process_index(), jax.process_count()
    rng = np.random.default_rng(0)
    true_w = np.array([2.0, -3.0, 0.5], dtype=np.float32)
    x_all = rng.normal(size=(1024, 3)).astype(np.float32)
    y_all = x_all @ true_w + 0.01 * rng.normal(size=1024).astype(np.float32)
    x, y = jnp.asarray(x_all[pid::count]), jnp.asarray(y_all[pid::count])

    def loss(w: jax.Array) -> jax.Array:
        return jnp.mean((x @ w - y) ** 2)

    grad = jax.jit(jax.value_and_grad(loss))
    w = jnp.zeros(3)
    steps = int(os.environ.get("RUNYARD_EXAMPLE_STEPS", "100"))
    for step in range(steps):
        value, g = grad(w)
        # Average gradients and losses over processes: the data-parallel all-reduce.
        g = jnp.asarray(multihost_utils.process_allgather(g)).reshape(count, -1).mean(0)
        value = float(np.mean(multihost_utils.process_allgather(value)))
        w = w - 0.1 * g
        if step % 25 == 0 or step == steps - 1:
            print(f"process {pid}/{count}: step {step} loss {value:.5f}", flush=True)
            runyard.log_metrics({f"process_{pid}/loss": value}, step=step)
    error = float(jnp.max(jnp.abs(w - true_w)))
    print(f"process {pid}/{count}: w={np.round(np.asarray(w), 3).tolist()} max error {error:.4f}", flush=True)
    out = Path(os.environ.get("RUNYARD_ARTIFACT_DIR", ".")) / f"weights-{pid}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"process": pid, "w": np.asarray(w).tolist(), "max_error": error}))
    if num_processes > 1:
        jax.distributed.shutdown()  # type: ignore[no-untyped-call]
    return 0 if error < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
