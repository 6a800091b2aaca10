"""Runs the operator with a heap census on SIGUSR1: RSS by region, live objects by type, CPython's allocator arenas.

`bench/run.py --census` starts the operator through this wrapper and signals it at each footprint measurement; the
census answers whether memory that stays after runs are gone is held by live objects (a leak) or by allocator arenas
that a few survivors pin (fragmentation). Each census goes to $RUNYARD_CENSUS_DIR/census-<pid>-<n>.txt.
"""

from __future__ import annotations

import collections
import gc
import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

_ARENAS = re.compile(r"# arenas allocated current\s*=\s*([\d,]+)")
_IN_USE = re.compile(r"# bytes in allocated blocks\s*=\s*([\d,]+)")
_count = 0


def _regions() -> collections.Counter[str]:
    """Resident kB per kind of mapping: [heap] (glibc), anonymous (pymalloc arenas, large buffers), libraries."""
    out: collections.Counter[str] = collections.Counter()
    kind = "[anon]"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        parts = line.split()
        if parts and not parts[0].endswith(":") and "-" in parts[0]:
            name = parts[5] if len(parts) > 5 else "[anon]"
            kind = name if name.startswith("[") else ("libraries" if ".so" in name else "files")
        elif parts and parts[0] == "Rss:":
            out[kind] += int(parts[1])
    return out


def _malloc_stats() -> str:
    """sys._debugmallocstats() writes to the C stderr: capture it through a temporary file."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


def census() -> str:
    gc.collect()
    status = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("Rss")
    )
    objects = gc.get_objects()
    by_type = collections.Counter(f"{getattr(type(o), '__module__', '?')}.{type(o).__qualname__}" for o in objects)
    stats = _malloc_stats()
    arenas = _ARENAS.search(stats)
    in_use = _IN_USE.search(stats)
    lines = [
        "rss: " + ", ".join(f"{k} {v.strip()}" for k, v in status.items()),
        "resident kB by mapping: " + ", ".join(f"{k} {v}" for k, v in _regions().most_common()),
        f"pymalloc: {arenas.group(1) if arenas else '?'} arenas of 1 MiB allocated, "
        f"{in_use.group(1) if in_use else '?'} bytes in live blocks",
        f"gc-tracked objects: {len(objects)}",
        *(f"  {n:8d} {name}" for name, n in by_type.most_common(25)),
    ]
    return "\n".join(lines) + "\n"


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _count
    _count += 1
    out = Path(os.environ.get("RUNYARD_CENSUS_DIR", ".")) / f"census-{os.getpid()}-{_count}.txt"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(census())
    tmp.rename(out)  # the bench waits for the file: it appears whole


def main(argv: list[str]) -> Any:
    signal.signal(signal.SIGUSR1, _on_signal)
    from runyard_operator.cli import main as operator_main

    return operator_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
