"""Local runs: where a rank's artifacts go on disk, and `finalize` writing the run's manifest at the end."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runyard.artifacts import manifest
from runyard.artifacts.store import MANIFEST_FILE, StoreURI, rank_name


@dataclass(frozen=True)
class ArtifactsSummary:
    """What a run stored: the fields of `status.artifacts`."""

    store_uri: str
    files: int
    total_bytes: int
    newest_checkpoint: str | None
    manifest: str

    def to_status(self) -> dict[str, Any]:
        """As `status.artifacts` (camelCase; an absent checkpoint left out)."""
        out: dict[str, Any] = {
            "storeUri": self.store_uri,
            "files": self.files,
            "totalBytes": self.total_bytes,
            "manifest": self.manifest,
        }
        if self.newest_checkpoint:
            out["newestCheckpoint"] = self.newest_checkpoint
        return out


def local_run_dir(store: str | None, run_name: str, root: str | os.PathLike[str]) -> Path:
    """The local directory store of a run: its artifact directories are `<this>/<role>-<index>/`.

    `file://PATH` stores are used as they are (`PATH/<run>`); `pvc://CLAIM/prefix` and `s3://BUCKET/prefix` map to
    `<root>/pvc/CLAIM/prefix/<run>` and `<root>/s3/BUCKET/prefix/<run>` (local runs do not reach object stores:
    upload with `python -m runyard.artifacts.sync --once` if needed); no store means `<root>/<run>`.
    """
    base = Path(root)
    if not store:
        return base / run_name
    uri = StoreURI.parse(store)
    if uri.scheme == "file":
        return Path(uri.prefix) / run_name
    return base.joinpath(uri.scheme, uri.location, *[p for p in uri.prefix.split("/") if p], run_name)


def local_artifact_dir(store: str | None, run_name: str, role: str, index: int, root: str | os.PathLike[str]) -> Path:
    """RUNYARD_ARTIFACT_DIR of one local rank: `local_run_dir(...)/<role>-<index>`."""
    return local_run_dir(store, run_name, root) / rank_name(role, index)


def finalize(run_output_dir: str | os.PathLike[str], run: str | None = None) -> ArtifactsSummary:
    """Hash every file of a finished local run, write `<run_output_dir>/manifest.json` and summarise it.

    Files in rank directories (`node-0/...`) are attributed to that rank. Call it once the run's processes have
    exited; calling it again rewrites the manifest.
    """
    root = Path(run_output_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    entries = manifest.scan(root)
    doc = manifest.manifest_document(entries, run=run or root.name, store_uri=root.as_uri())
    path = root / MANIFEST_FILE
    tmp = path.with_name(f".{MANIFEST_FILE}.tmp")
    tmp.write_text(manifest.dumps(doc))
    os.replace(tmp, path)
    newest = doc["newestCheckpoint"]
    return ArtifactsSummary(
        store_uri=root.as_uri(),
        files=len(entries),
        total_bytes=int(doc["totalBytes"]),
        newest_checkpoint=str(root / newest) if newest else None,
        manifest=str(path),
    )
