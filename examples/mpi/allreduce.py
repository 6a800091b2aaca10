"""MPI allreduce with mpi4py: every rank contributes a vector, all ranks check the global sum.

Run by `mpirun -n 2 python examples/mpi/allreduce.py` (the MPI example's launcher, locally or in the cluster).
Exits non-zero when the reduced value is wrong, so a broken network or MPI setup fails the run.
"""

from __future__ import annotations

import os
import socket
import sys
import time

import numpy as np
from mpi4py import MPI


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
    say(
        f"rank {rank}/{size} on {socket.gethostname()}: allreduce of {n} doubles = {total[0]:g} "
        f"(expected {expected:g}) in {elapsed * 1e3:.1f} ms: {'ok' if ok else 'WRONG'}"
    )
    # Rank 0 gathers every rank's verdict so one line says whether the whole world agreed.
    verdicts = comm.gather(ok, root=0)
    if rank == 0:
        say(f"allreduce over {size} ranks: {'ok' if verdicts and all(verdicts) else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
