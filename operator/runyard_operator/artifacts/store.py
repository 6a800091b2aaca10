"""Blocking reads and writes of a run's S3 prefix for the operator: manifests in, summary and clean-up out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from runyard.artifacts import manifest
from runyard.artifacts.store import LOGS_DIR, MANIFEST_FILE, MANIFESTS_DIR, StoreURI, is_rank_name


def _s3() -> ModuleType:
    """boto3 costs ~35 MB and 0.1 s to import: load it only when a run actually uses an S3 store."""
    from runyard.artifacts import s3

    return s3


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStore:
    """Where one run's artifacts are and how the operator reaches them."""

    run_uri: StoreURI  # the run's own prefix (`<store prefix>/<run>`)
    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None

    def client(self) -> Any:
        return _s3().client(self.endpoint, self.region, self.access_key, self.secret_key)

    @property
    def bucket(self) -> str:
        return self.run_uri.location

    @property
    def prefix(self) -> str:
        return self.run_uri.prefix


def read_manifest(store: RunStore, run_name: str) -> dict[str, Any]:
    """The run manifest merged from the rank manifests the sidecars wrote.

    A run whose sidecars wrote no manifest (files put there by other means) is summarised from a listing, with
    the sha256 the objects carry as metadata when they have one.
    """
    client = store.client()
    base = f"{store.prefix}/" if store.prefix else ""
    docs = []
    for obj in sorted(_s3().list_objects(client, store.bucket, f"{base}{MANIFESTS_DIR}/"), key=lambda o: o.key):
        if obj.key.endswith(".json"):
            doc = _s3().get_json(client, store.bucket, obj.key)
            if doc is not None:
                docs.append(doc)
    if docs:
        return manifest.merge(docs, run=run_name, store_uri=store.run_uri.uri())
    entries = []
    for obj in _s3().list_objects(client, store.bucket, base):
        rel = obj.key.removeprefix(base)
        if rel == MANIFEST_FILE or rel.startswith((f"{MANIFESTS_DIR}/", f"{LOGS_DIR}/")):
            continue  # Runyard's own records (the log archive included), not the run's files
        first = rel.split("/", 1)[0]
        rank = first if is_rank_name(first) and "/" in rel else ""
        digest = _s3().head_sha256(client, store.bucket, obj.key) or ""
        entries.append(manifest.Entry(rel, obj.size, digest, rank, manifest.format_time(obj.mtime)))
    return manifest.manifest_document(entries, run=run_name, store_uri=store.run_uri.uri())


def write_manifest(store: RunStore, doc: dict[str, Any]) -> str:
    """Store the run manifest as `<run prefix>/manifest.json`; returns its URI."""
    _s3().put_json(store.client(), store.bucket, store.run_uri.key(MANIFEST_FILE), doc)
    return store.run_uri.uri(MANIFEST_FILE)


def summary(store: RunStore, doc: dict[str, Any], manifest_uri: str | None) -> dict[str, Any]:
    """`status.artifacts` for a manifest: counts, bytes, and the newest checkpoint as a store URI."""
    out: dict[str, Any] = {
        "storeUri": store.run_uri.uri(),
        "files": len(doc.get("files") or ()),
        "totalBytes": int(doc.get("totalBytes") or 0),
    }
    newest = doc.get("newestCheckpoint")
    if newest:
        out["newestCheckpoint"] = store.run_uri.uri(str(newest))
    if manifest_uri:
        out["manifest"] = manifest_uri
    return out


def last_checkpoint(store: RunStore, doc: dict[str, Any], attempt: int) -> dict[str, Any] | None:
    """`status.lastCheckpoint` for a manifest: its newest complete checkpoint as a store URI, or None."""
    record = manifest.checkpoint_record(doc)
    if record is None:
        return None
    out = {"uri": store.run_uri.uri(record["path"]), "attempt": attempt}
    return out | {k: record[k] for k in ("step", "time", "sha256", "bytes") if record.get(k) is not None}


def delete_run(store: RunStore) -> int:
    """Delete everything under the run's prefix (the trailing `/` keeps `run-1` from matching `run-10`)."""
    return int(_s3().delete_prefix(store.client(), store.bucket, f"{store.prefix}/"))
