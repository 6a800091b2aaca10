"""The generic example: any program gets RUNYARD_* (its index, the replica count, the run's name) and one tracked run.

Each replica prints a line, logs `replica_<i>/hello` to the run's tracker through `runyard.log_metrics` (a no-op
without a tracker) and writes `hello-<i>.txt` into RUNYARD_ARTIFACT_DIR, which the sync sidecar stores.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import runyard


def main() -> int:
    index = int(os.environ["RUNYARD_REPLICA_INDEX"])
    total = int(os.environ["RUNYARD_NUM_REPLICAS"])
    run = os.environ.get("RUNYARD_RUN_NAME", "?")
    print(f"replica {index} of {total} of run {run} on {socket.gethostname()}", flush=True)
    greeting = os.environ.get("RUNYARD_EXAMPLE_GREETING")
    if greeting:  # set by examples/templates/local-real-node.yaml
        print(f"replica {index}: {greeting}", flush=True)
    runyard.log_metrics({f"replica_{index}/hello": float(index + 1)}, step=0)
    out = Path(os.environ.get("RUNYARD_ARTIFACT_DIR", ".")) / f"hello-{index}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"hello from replica {index} of {total}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
