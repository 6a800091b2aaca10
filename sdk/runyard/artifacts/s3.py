"""Thin boto3 helpers for S3-compatible artifact stores (AWS, MinIO, versitygw); blocking, call off the event loop."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

# Errors a store operation may raise that mean "the store is unhappy", not "the code is wrong".
STORE_ERRORS: tuple[type[BaseException], ...] = (BotoCoreError, ClientError, OSError)
SHA256_METADATA = "sha256"


@dataclass(frozen=True)
class S3Object:
    """One listed object."""

    key: str
    size: int
    mtime: float


def client(
    endpoint: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> Any:
    """An S3 client; unset arguments fall back to the AWS_* environment and boto3's credential chain."""
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(
        # Self-hosted stores answer on one host name: virtual-host addressing would need wildcard DNS.
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        # Only send checksums S3 requires: many S3-compatible servers reject the newer default trailers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


def list_objects(s3: Any, bucket: str, prefix: str) -> Iterator[S3Object]:
    """Every object whose key starts with `prefix` (pass a trailing `/` to stay inside a directory)."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents") or ():
            yield S3Object(str(item["Key"]), int(item.get("Size") or 0), _ts(item.get("LastModified")))


def get_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """A JSON object stored at `key`, or None when there is none (or it is not a JSON object)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def put_json(s3: Any, bucket: str, key: str, doc: dict[str, Any]) -> None:
    """Store a JSON object at `key`."""
    body = (json.dumps(doc, indent=1) + "\n").encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def put_bytes(s3: Any, bucket: str, key: str, data: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
    """Store `data` at `key` in one request (callers bound its size)."""
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def get_bytes(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object at `key`, or None when there is none."""
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def upload_file(s3: Any, path: str | Path, bucket: str, key: str, sha256: str) -> None:
    """Upload a file (multipart when large), recording its sha256 as object metadata for later verification."""
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {SHA256_METADATA: sha256}})


def download_file(s3: Any, bucket: str, key: str, dest: Path) -> None:
    """Download one object to `dest` (via a temporary name, so a crash never leaves half a file there)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.download")
    s3.download_file(bucket, key, str(tmp))
    os.replace(tmp, dest)


def head_sha256(s3: Any, bucket: str, key: str) -> str | None:
    """The sha256 the sync recorded for an object, if any."""
    meta = s3.head_object(Bucket=bucket, Key=key).get("Metadata") or {}
    value = meta.get(SHA256_METADATA)
    return str(value) if value else None


def delete_prefix(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object under `prefix` (which must end in `/`); returns how many were deleted."""
    if not prefix.endswith("/"):
        raise ValueError(f"refusing to delete a prefix without a trailing slash: {prefix!r}")
    keys = [obj.key for obj in list_objects(s3, bucket, prefix)]
    # One request per object: DeleteObjects needs a Content-MD5 that some S3-compatible servers reject.
    for key in keys:
        s3.delete_object(Bucket=bucket, Key=key)
    return len(keys)
