"""Measure how long `runyard --help` (and `runyard list --help`) take to start: median wall time over N runs.

Usage: .venv/bin/python bench/cli_startup.py [--runs 10]. Not asserted in tests: start-up time depends on the machine.
Also reports which heavy modules `import runyard.cli` pulls in (there should be none).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("kubernetes", "pydantic", "yaml", "rich", "torch", "mlflow", "runyard.api", "runyard.client")


def time_command(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    exe = str(Path(sys.executable).parent / "runyard")
    cases = {
        "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
        "runyard --help": [exe, "--help"],
        "runyard list --help": [exe, "list", "--help"],
    }
    for label, argv in cases.items():
        times = time_command(argv, args.runs)
        print(f"{label:<36} median {statistics.median(times) * 1e3:7.1f} ms   min {min(times) * 1e3:7.1f} ms")
    probe = f"import sys, runyard.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    print(f"heavy modules imported by `import runyard.cli`: {loaded}")


if __name__ == "__main__":
    main()
