"""Which files under `checkpoints/` are complete checkpoints, and which of them is the newest.

The rule (docs/artifacts.md):

* Checkpoints are the direct children of a `checkpoints/` directory at the top of a rank's artifact directory.
  Names starting with `.` and names ending in `.tmp`, `.partial`, `.part`, `.incomplete` or `.lock` are never
  checkpoints (half-written files under a temporary name).
* A file checkpoint (`checkpoints/step-000100.pt`) is complete once it is present: locally when it exists, in an
  object store when its manifest entry exists (the sync records a file only after uploading all of it). Write it
  under a temporary name and rename it, so a reader never sees half of it.
* A directory checkpoint (`checkpoints/step-000100/`) is complete when it directly contains one of the markers
  `COMPLETE`, `_COMPLETE`, `.complete` or `.metadata` (the file torch.distributed.checkpoint writes last). Write
  the marker last; the sync uploads markers after every other file of the directory.
* The newest checkpoint has the highest step: the last run of digits in its name (extension removed). Ties, and
  names without digits (which rank below any numbered one), are ordered by modification time, then by name.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHECKPOINTS_DIR = "checkpoints"
COMPLETE_MARKERS: frozenset[str] = frozenset({"COMPLETE", "_COMPLETE", ".complete", ".metadata"})
_INCOMPLETE_SUFFIXES = (".tmp", ".partial", ".part", ".incomplete", ".lock")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True, order=True)
class Checkpoint:
    """A complete checkpoint; orders by recency, so `max()` of a list is the newest."""

    step: int
    mtime: float
    path: str  # relative to the directory or store prefix that was searched, POSIX separators
    is_dir: bool = False


def step_of(name: str) -> int:
    """The step number in a checkpoint name (last digit run, extension removed), or -1 when there is none."""
    stem = name
    while "." in stem.lstrip("."):
        stem = stem.rsplit(".", 1)[0]
        if not stem:
            break
    digits = _DIGITS.findall(stem) or _DIGITS.findall(name)
    return int(digits[-1]) if digits else -1


def is_candidate_name(name: str) -> bool:
    """Whether a child of `checkpoints/` may be a checkpoint at all (not hidden, not a temporary name)."""
    return bool(name) and not name.startswith(".") and not name.endswith(_INCOMPLETE_SUFFIXES)


def is_marker(path: str) -> bool:
    """Whether a path is a directory checkpoint's completion marker; the sync uploads these last."""
    parts = PurePosixPath(path).parts
    return (
        len(parts) >= 3
        and parts[-1] in COMPLETE_MARKERS
        and parts[-3] == CHECKPOINTS_DIR
        and is_candidate_name(parts[-2])
    )


def from_paths(entries: Iterable[tuple[str, float]]) -> list[Checkpoint]:
    """Complete checkpoints among store paths `(relative path, mtime)`, e.g. a manifest's entries.

    A `checkpoints/` component at any depth counts, so paths may carry a rank prefix (`node-0/checkpoints/...`).
    """
    files: dict[str, float] = {}
    dirs: dict[str, float] = {}
    for path, mtime in entries:
        parts = PurePosixPath(path).parts
        if CHECKPOINTS_DIR not in parts[:-1]:
            continue
        at = len(parts) - 1 - parts[::-1].index(CHECKPOINTS_DIR)
        if at + 1 >= len(parts) or not is_candidate_name(parts[at + 1]):
            continue
        head = "/".join(parts[: at + 2])
        if at + 2 == len(parts):
            files[head] = mtime
        elif at + 3 == len(parts) and parts[-1] in COMPLETE_MARKERS:
            dirs[head] = max(mtime, dirs.get(head, mtime))
    found = [Checkpoint(step_of(PurePosixPath(p).name), m, p, False) for p, m in files.items()]
    found += [Checkpoint(step_of(PurePosixPath(p).name), m, p, True) for p, m in dirs.items()]
    return found


def newest_from_paths(entries: Iterable[tuple[str, float]]) -> Checkpoint | None:
    """The newest complete checkpoint among store paths, or None."""
    found = from_paths(entries)
    return max(found) if found else None


def _local_candidates(checkpoints_dir: Path) -> list[Checkpoint]:
    found: list[Checkpoint] = []
    try:
        children = list(checkpoints_dir.iterdir())
    except OSError:
        return found
    for child in children:
        if not is_candidate_name(child.name):
            continue
        try:
            if child.is_file():
                found.append(Checkpoint(step_of(child.name), child.stat().st_mtime, str(child), False))
            elif child.is_dir():
                markers = [child / m for m in COMPLETE_MARKERS if (child / m).is_file()]
                if markers:
                    mtime = max(m.stat().st_mtime for m in markers)
                    found.append(Checkpoint(step_of(child.name), mtime, str(child), True))
        except OSError:
            continue  # deleted while we looked: a rotating writer removed an old checkpoint
    return found


def is_complete(path: str | Path) -> bool:
    """Whether a local path is itself a complete checkpoint (a file, or a directory with a marker)."""
    p = Path(path)
    if p.is_file():
        return is_candidate_name(p.name)
    return p.is_dir() and any((p / m).is_file() for m in COMPLETE_MARKERS)


def newest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint under a local directory, or None.

    `directory` may be an artifact directory (searched in `checkpoints/`), a run directory with one artifact
    directory per rank (`node-0/checkpoints/`, ...), or a `checkpoints/` directory itself.
    """
    root = Path(directory)
    if not root.is_dir():
        return None
    dirs = [root] if root.name == CHECKPOINTS_DIR else []
    dirs.append(root / CHECKPOINTS_DIR)
    with contextlib.suppress(OSError):
        dirs += [child / CHECKPOINTS_DIR for child in root.iterdir() if child.is_dir()]
    found = [ckpt for d in dirs if d.is_dir() for ckpt in _local_candidates(d)]
    return Path(max(found).path) if found else None
