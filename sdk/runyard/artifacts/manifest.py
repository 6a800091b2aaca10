"""Artifact manifests: per-rank file lists with size and sha256, merged into one `manifest.json` per run.

A rank manifest (`<run prefix>/_manifests/<rank>.json`, written by the sync sidecar) and the run manifest
(`<run prefix>/manifest.json`, written by the operator or `runyard.artifacts.local.finalize`) share one format:

    {"version": 1, "run": "...", "storeUri": "...", "updated": "<RFC 3339>",
     "files": [{"path": "node-0/checkpoints/step-000100.pt", "size": 123, "sha256": "...",
                "rank": "node-0", "time": "<RFC 3339 mtime>"}, ...],
     "totalBytes": 123, "newestCheckpoint": "node-0/checkpoints/step-000100.pt"}

Paths are relative to the run's prefix and use `/`. Only the standard library is used: the sidecar imports this.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runyard.artifacts import checkpoints
from runyard.artifacts.store import MANIFEST_FILE, MANIFESTS_DIR, is_rank_name

VERSION = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One stored file."""

    path: str
    size: int
    sha256: str
    rank: str
    time: str

    @property
    def mtime(self) -> float:
        return parse_time(self.time)


def now() -> str:
    """The current time in RFC 3339 (UTC, seconds)."""
    return format_time(datetime.now(UTC).timestamp())


def format_time(ts: float) -> str:
    """A POSIX timestamp as RFC 3339 with microseconds, so mtimes survive the round trip for incremental sync."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> float:
    """An RFC 3339 time written by `format_time` (or with an offset) as a POSIX timestamp; 0 when unparsable."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def walk_files(root: str | Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file under `root` as (relative POSIX path, stat), skipping symlinks and vanished files."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            try:
                st = full.lstat()
            except OSError:
                continue  # removed between listing and stat (a writer rotating checkpoints)
            if not stat.S_ISREG(st.st_mode):
                continue
            yield full.relative_to(root).as_posix(), st


def manifest_document(
    entries: Iterable[Entry], *, run: str | None = None, store_uri: str | None = None, rank: str | None = None
) -> dict[str, Any]:
    """The manifest JSON object for `entries` (sorted by path), with totals and the newest checkpoint."""
    files = sorted(entries, key=lambda e: e.path)
    newest = checkpoints.newest_from_paths((e.path, e.mtime) for e in files)
    doc: dict[str, Any] = {"version": VERSION}
    if run is not None:
        doc["run"] = run
    if rank is not None:
        doc["rank"] = rank
    if store_uri is not None:
        doc["storeUri"] = store_uri
    doc["updated"] = now()
    doc["files"] = [asdict(e) for e in files]
    doc["totalBytes"] = sum(e.size for e in files)
    doc["newestCheckpoint"] = newest.path if newest else None
    return doc


def entries_of(doc: dict[str, Any]) -> list[Entry]:
    """The entries of a manifest document; malformed entries are skipped rather than failing a whole run."""
    out: list[Entry] = []
    for item in doc.get("files") or ():
        try:
            out.append(
                Entry(
                    path=str(item["path"]),
                    size=int(item["size"]),
                    sha256=str(item["sha256"]),
                    rank=str(item.get("rank") or ""),
                    time=str(item.get("time") or ""),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out


def prefixed(entries: Iterable[Entry], rank: str) -> list[Entry]:
    """Rank-relative entries (as the sidecar records them) made relative to the run prefix (`<rank>/...`)."""
    return [
        Entry(f"{rank}/{e.path}" if not e.path.startswith(f"{rank}/") else e.path, e.size, e.sha256, rank, e.time)
        for e in entries
    ]


def merge(
    rank_docs: Iterable[dict[str, Any]], *, run: str | None = None, store_uri: str | None = None
) -> dict[str, Any]:
    """Merge rank manifests into the run manifest; entries become relative to the run prefix.

    Later documents win on equal paths, so pass them oldest first.
    """
    by_path: dict[str, Entry] = {}
    for doc in rank_docs:
        rank = str(doc.get("rank") or "")
        entries = entries_of(doc)
        for e in prefixed(entries, rank) if rank else entries:
            by_path[e.path] = e
    return manifest_document(by_path.values(), run=run, store_uri=store_uri)


def scan(root: str | Path, rank: str | None = None) -> list[Entry]:
    """Entries for every file under a local directory, hashed.

    With `rank=None` a first path component that looks like a rank directory (`node-0/...`) is the entry's rank.
    Manifests Runyard itself wrote (`manifest.json`, `_manifests/`) are left out.
    """
    out: list[Entry] = []
    for rel, st in walk_files(root):
        if rel == MANIFEST_FILE or rel.startswith(f"{MANIFESTS_DIR}/"):
            continue
        first = rel.split("/", 1)[0]
        entry_rank = rank if rank is not None else (first if is_rank_name(first) and "/" in rel else "")
        out.append(Entry(rel, st.st_size, sha256_file(Path(root) / rel), entry_rank, format_time(st.st_mtime)))
    return out


def dumps(doc: dict[str, Any]) -> str:
    """Stable, readable JSON for a manifest."""
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def verify(root: str | Path, doc: dict[str, Any]) -> list[str]:
    """Problems found checking a manifest against a local directory (missing files, size or sha256 mismatch)."""
    problems: list[str] = []
    for e in entries_of(doc):
        path = Path(root) / e.path
        if not path.is_file():
            problems.append(f"{e.path}: missing")
        elif path.stat().st_size != e.size:
            problems.append(f"{e.path}: size {path.stat().st_size} != {e.size}")
        elif sha256_file(path) != e.sha256:
            problems.append(f"{e.path}: sha256 mismatch")
    return problems


def checkpoint_record(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest's newest complete checkpoint as `status.lastCheckpoint` describes it, or None.

    `path` is relative to the run prefix; `step` comes from its name (None when the name has no number); `time` is
    its newest file's mtime. A file checkpoint's `sha256` is the file's own; a directory checkpoint's is the sha256
    of its `sha256sum`-style listing (`<sha256>  <path relative to the checkpoint>` lines, sorted by path), so one
    value names exactly that set of files.
    """
    entries = entries_of(doc)
    newest = checkpoints.newest_from_paths((e.path, e.mtime) for e in entries)
    if newest is None:
        return None
    if newest.is_dir:
        inside = sorted((e for e in entries if e.path.startswith(f"{newest.path}/")), key=lambda e: e.path)
        listing = "".join(f"{e.sha256}  {e.path.removeprefix(newest.path + '/')}\n" for e in inside)
        digest = hashlib.sha256(listing.encode()).hexdigest()
    else:
        inside = [e for e in entries if e.path == newest.path]
        digest = inside[0].sha256 if inside else ""
    return {
        "path": newest.path,
        "step": newest.step if newest.step >= 0 else None,
        "time": format_time(max((e.mtime for e in inside), default=newest.mtime)),
        "sha256": digest,
        "bytes": sum(e.size for e in inside),
    }
