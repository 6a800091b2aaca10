"""MPI allreduce with mpi4py: every rank contributes a vector, all ranks check the global sum.

Run by `mpirun -n 2 python examples/mpi/allreduce.py` (the MPI example's launcher, locally or in the cluster).
Exits non-zero when the reduced value is wrong, so a broken network or MPI setup fails the run.

In the cluster the ranks run on the workers, started by mpirun over SSH: they still see the run's env contract
(RUNYARD_RUN_NAME, MLFLOW_RUN_ID...), so every rank logs `rank_<r>/allreduce_ms` into the one tracked run and
writes `rank-<r>.json` into RUNYARD_ARTIFACT_DIR.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

import runyard


def say(text: str) -> None:
    # One write per line: mpirun forwards every rank's stdout through one pipe, and print()'s separate write of
    # the newline lets another rank's output land in the middle of a line.
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main() -> int:
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    n = int(os.environ.get("RUNYARD_EXAMPLE_ELEMENTS", "1000000"))
    local = np.full(n, rank + 1, dtype=np.float64)
    total = np.empty_like(local)
    start = time.perf_counter()
    comm.Allreduce(local, total, op=MPI.SUM)
    elapsed = time.perf_counter() - start
    expected = size * (size + 1) / 2
    ok = bool(np.all(total == expected))
    run = os.environ.get("RUNYARD_RUN_NAME", "-")
    say(
        f"rank {rank}/{size} of run {run} on {socket.gethostname()}: allreduce of {n} doubles = {total[0]:g} "
        f"(expected {expected:g}) in {elapsed * 1e3:.1f} ms: {'ok' if ok else 'WRONG'}"
    )
    runyard.log_metrics({f"rank_{rank}/allreduce_ms": elapsed * 1e3, f"rank_{rank}/ok": float(ok)}, step=0)
    out = Path(os.environ.get("RUNYARD_ARTIFACT_DIR", ".")) / f"rank-{rank}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rank": rank, "size": size, "ms": elapsed * 1e3, "ok": ok, "run": run}))
    # Rank 0 gathers every rank's verdict so one line says whether the whole world agreed.
    verdicts = comm.gather(ok, root=0)
    if rank == 0:
        say(f"allreduce over {size} ranks: {'ok' if verdicts and all(verdicts) else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
