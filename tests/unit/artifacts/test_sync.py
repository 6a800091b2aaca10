"""The sync sidecar as a real process against a real S3 server: periodic passes, SIGTERM, SIGKILL, incrementality."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runyard.artifacts import s3
from runyard.artifacts.sync import Syncer
from tests.unit.artifacts.s3server import S3Server

pytestmark = pytest.mark.slow


def start_sync(
    server: S3Server, src: Path, dest: str, interval: float, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runyard.artifacts.sync",
                "--src",
                str(src),
                "--dest",
                dest,
                "--interval",
                str(interval),
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **server.env()},
        )


def stored(server: S3Server, bucket: str, prefix: str) -> dict[str, int]:
    return {o.key.removeprefix(prefix): o.size for o in s3.list_objects(server.client(), bucket, prefix)}


def wait_for(check: Any, timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rank_manifest(server: S3Server, bucket: str) -> dict[str, Any]:
    doc = s3.get_json(server.client(), bucket, "runs/r1/_manifests/node-0.json")
    assert doc is not None
    return doc


def test_sigterm_runs_a_final_sync_with_checksums(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "art"
    (src / "checkpoints").mkdir(parents=True)
    (src / "checkpoints" / "step-000001.pt").write_bytes(os.urandom(2048))
    log = tmp_path / "sync.log"
    # A long interval: only the first pass and the final one can upload anything.
    proc = start_sync(s3_server, src, f"s3://{bucket}/runs/r1/node-0", 3600, log)
    try:
        wait_for(
            lambda: "checkpoints/step-000001.pt" in stored(s3_server, bucket, "runs/r1/node-0/"), what="first pass"
        )
        late = os.urandom(5000)
        (src / "checkpoints" / "step-000002.pt").write_bytes(late)
        (src / "metrics.json").write_text('{"loss": 0.1}')
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        proc.kill()
    files = stored(s3_server, bucket, "runs/r1/node-0/")
    assert files == {"checkpoints/step-000001.pt": 2048, "checkpoints/step-000002.pt": 5000, "metrics.json": 13}
    doc = rank_manifest(s3_server, bucket)
    assert doc["rank"] == "node-0" and doc["storeUri"] == f"s3://{bucket}/runs/r1"
    by_path = {f["path"]: f for f in doc["files"]}
    assert by_path["node-0/checkpoints/step-000002.pt"]["sha256"] == hashlib.sha256(late).hexdigest()
    assert doc["newestCheckpoint"] == "node-0/checkpoints/step-000002.pt"
    for path, entry in by_path.items():
        key = f"runs/r1/{path}"
        assert s3.head_sha256(s3_server.client(), bucket, key) == entry["sha256"]
        local = src / path.removeprefix("node-0/")
        assert hashlib.sha256(local.read_bytes()).hexdigest() == entry["sha256"]


def test_killed_mid_run_loses_at_most_one_interval(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "art"
    src.mkdir()
    interval = 1.0
    proc = start_sync(s3_server, src, f"s3://{bucket}/runs/r1/node-0", interval, tmp_path / "sync.log")
    written: list[tuple[str, float]] = []
    try:
        for i in range(25):
            name = f"checkpoints/step-{i:06d}.pt"
            (src / name).parent.mkdir(exist_ok=True)
            (src / name).write_bytes(os.urandom(1024))
            written.append((name, time.monotonic()))
            time.sleep(0.2)
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)  # no handler runs: no final pass
        proc.wait(timeout=10)
    finally:
        proc.kill()
    files = stored(s3_server, bucket, "runs/r1/node-0/")
    # One interval, plus a margin for the pass that was under way (uploads take a few ms each here).
    lost = [name for name, at in written if name not in files]
    assert all(at > killed_at - interval - 0.5 for name, at in written if name in lost), (lost, files)
    assert len(lost) <= int((interval + 0.5) / 0.2) + 1
    assert len(files) >= len(written) - len(lost)
    # What the manifest lists is really there.
    doc = rank_manifest(s3_server, bucket)
    assert {f["path"].removeprefix("node-0/") for f in doc["files"]} <= set(files)


def test_incremental_passes_and_restart_seed_from_manifest(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "art"
    (src / "a").mkdir(parents=True)
    (src / "a" / "one.bin").write_bytes(b"1" * 100)
    (src / "two.bin").write_bytes(b"2" * 200)
    calls: list[str] = []

    class Recording:
        def __init__(self, real: Any) -> None:
            self.real = real

        def upload_file(self, path: str, bucket_: str, key: str, **kw: Any) -> None:
            calls.append(key)
            self.real.upload_file(path, bucket_, key, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    dest = f"s3://{bucket}/runs/r1/node-0"
    first = Syncer(src, dest, Recording(s3_server.client()))
    first.load_remote_manifest()
    assert first.sync_once()
    assert sorted(calls) == ["runs/r1/node-0/a/one.bin", "runs/r1/node-0/two.bin"]
    calls.clear()
    assert first.sync_once() and calls == []  # nothing changed
    (src / "two.bin").write_bytes(b"3" * 300)
    assert first.sync_once() and calls == ["runs/r1/node-0/two.bin"]
    calls.clear()
    # A restarted sidecar (same pod, same files) learns from the stored manifest and uploads nothing.
    second = Syncer(src, dest, Recording(s3_server.client()))
    second.load_remote_manifest()
    assert second.sync_once() and calls == []
    assert {f["path"]: f["size"] for f in rank_manifest(s3_server, bucket)["files"]} == {
        "node-0/a/one.bin": 100,
        "node-0/two.bin": 300,
    }


def test_directory_checkpoint_marker_is_uploaded_last(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "art"
    ckpt = src / "checkpoints" / "step-000010"
    ckpt.mkdir(parents=True)
    (ckpt / "_COMPLETE").write_text("")
    (ckpt / "z-shard.bin").write_bytes(b"z")
    (ckpt / "a-shard.bin").write_bytes(b"a")
    order: list[str] = []
    real = s3_server.client()

    class Recording:
        def upload_file(self, path: str, bucket_: str, key: str, **kw: Any) -> None:
            order.append(key.rsplit("/", 1)[1])
            real.upload_file(path, bucket_, key, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    assert Syncer(src, f"s3://{bucket}/runs/r1/node-0", Recording()).sync_once()
    assert order == ["a-shard.bin", "z-shard.bin", "_COMPLETE"]
    assert rank_manifest(s3_server, bucket)["newestCheckpoint"] == "node-0/checkpoints/step-000010"


def test_store_outage_is_retried_not_fatal(tmp_path: Path) -> None:
    src = tmp_path / "art"
    src.mkdir()
    (src / "f.bin").write_bytes(b"x")
    dead = s3.client("http://127.0.0.1:9", "us-east-1", "k", "s")  # nothing listens on the discard port
    syncer = Syncer(src, "s3://bucket/runs/r1/node-0", dead)
    assert syncer.sync_once() is False


def test_once_exit_code_and_bad_dest(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "art"
    src.mkdir()
    (src / "f.bin").write_bytes(b"x")
    proc = start_sync(s3_server, src, f"s3://{bucket}/runs/r1/node-0", 1, tmp_path / "once.log", "--once")
    assert proc.wait(timeout=30) == 0
    assert stored(s3_server, bucket, "runs/r1/node-0/") == {"f.bin": 1}
    with pytest.raises(ValueError):
        Syncer(src, "pvc://claim/x", s3_server.client())
