"""`resolve_resume`: turn RUNYARD_RESUME_FROM (a store URI or a local path) into a local checkpoint path."""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any

from runyard.artifacts import checkpoints
from runyard.artifacts.store import StoreURI

logger = logging.getLogger(__name__)


def resolve_resume(
    uri_or_path: str | os.PathLike[str] | None,
    dest_dir: str | os.PathLike[str],
    *,
    endpoint: str | None = None,
    region: str | None = None,
) -> Path | None:
    """The local path of the checkpoint to resume from, or None when there is nothing to resume.

    `uri_or_path` is what the operator or the user put in RUNYARD_RESUME_FROM:

    * a local path (a PVC mount, a local run's directory, `file://...`): returned as is when it is a complete
      checkpoint, else searched for its newest complete checkpoint (a run or artifact directory); no copy is made;
    * `s3://bucket/key`: an object (a file checkpoint), a directory checkpoint (objects under `key/` with a
      completion marker) or a prefix to search; the checkpoint is downloaded into `dest_dir` (keeping its name),
      and each file's sha256 checked against the one the sync recorded.

    The S3 endpoint and region default to AWS_ENDPOINT_URL and AWS_REGION, credentials to boto3's chain (the
    pod's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). Keep `dest_dir` outside RUNYARD_ARTIFACT_DIR, or the
    sidecar uploads the downloaded copy again.
    """
    if uri_or_path is None or not str(uri_or_path).strip():
        return None
    value = str(uri_or_path).strip()
    if value.startswith("s3://"):
        return _resolve_s3(StoreURI.parse(value), Path(dest_dir), endpoint, region)
    if value.startswith("file://"):
        value = StoreURI.parse(value).prefix
    path = Path(value)
    if not path.exists():
        return None
    if checkpoints.is_complete(path):
        return path
    return checkpoints.newest_checkpoint(path)


def _resolve_s3(uri: StoreURI, dest_dir: Path, endpoint: str | None, region: str | None) -> Path | None:
    from runyard.artifacts import s3  # boto3 only when an object store is actually used

    client = s3.client(endpoint, region)
    bucket, key = uri.location, uri.prefix
    objects = {o.key: o for o in s3.list_objects(client, bucket, key)}
    if key and key in objects:
        return _download(client, bucket, [key], key.rsplit("/", 1)[0] if "/" in key else "", dest_dir)
    inside = {k: o for k, o in objects.items() if k.startswith(f"{key}/" if key else "")}
    name = PurePosixPath(key).name
    markers = [k for k in inside if PurePosixPath(k).parent == PurePosixPath(key) and _is_marker_name(k)]
    if markers:
        # A directory checkpoint named directly.
        return _download(client, bucket, sorted(inside), str(PurePosixPath(key).parent), dest_dir, name)
    base = f"{key}/" if key else ""
    newest = checkpoints.newest_from_paths((k.removeprefix(base), o.mtime) for k, o in inside.items())
    if newest is None:
        return None
    ckpt_key = f"{base}{newest.path}"
    keys = sorted(k for k in inside if k.startswith(f"{ckpt_key}/")) if newest.is_dir else [ckpt_key]
    parent = ckpt_key.rsplit("/", 1)[0]
    return _download(client, bucket, keys, parent, dest_dir, PurePosixPath(ckpt_key).name)


def _is_marker_name(key: str) -> bool:
    return PurePosixPath(key).name in checkpoints.COMPLETE_MARKERS


def _download(client: Any, bucket: str, keys: list[str], parent: str, dest_dir: Path, name: str | None = None) -> Path:
    from runyard.artifacts import manifest, s3

    dest_dir.mkdir(parents=True, exist_ok=True)
    base = f"{parent}/" if parent else ""
    for key in keys:
        target = dest_dir / key.removeprefix(base)
        s3.download_file(client, bucket, key, target)
        expected = s3.head_sha256(client, bucket, key)
        if expected and manifest.sha256_file(target) != expected:
            raise OSError(f"checksum mismatch downloading s3://{bucket}/{key}")
    result = dest_dir / (name or PurePosixPath(keys[0]).name)
    logger.info("resuming from s3://%s/%s%s (downloaded to %s)", bucket, base, result.name, result)
    return result
