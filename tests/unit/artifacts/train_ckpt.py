"""A tiny training loop for the resume tests: one checkpoint per step under $RUNYARD_ARTIFACT_DIR/checkpoints/."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from runyard.artifacts import resolve_resume


def main() -> int:
    steps, delay = int(sys.argv[1]), float(sys.argv[2])
    artifacts = Path(os.environ["RUNYARD_ARTIFACT_DIR"])
    state = {"step": 0, "weight": 0.0}
    # Downloads go outside the artifact directory, or the sync sidecar would upload them again.
    resume = resolve_resume(os.environ.get("RUNYARD_RESUME_FROM"), Path(tempfile.mkdtemp(prefix="resume-")))
    if resume is not None:
        state = json.loads(resume.read_text())
        print(f"resumed from step {state['step']}", flush=True)
    else:
        print("starting from scratch", flush=True)
    checkpoints = artifacts / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    while state["step"] < steps:
        state = {"step": state["step"] + 1, "weight": state["weight"] + 0.5}
        # Write under a temporary name and rename: a reader never sees half a checkpoint.
        tmp = checkpoints / f".step-{state['step']:06d}.pt.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, checkpoints / f"step-{state['step']:06d}.pt")
        print(f"saved step {state['step']}", flush=True)
        time.sleep(delay)
    print(f"done at step {state['step']} weight {state['weight']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
