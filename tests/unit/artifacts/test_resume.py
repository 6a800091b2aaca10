"""Resume: a run killed after a checkpoint restarts from it, locally and through an S3 store; resolve_resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from runyard.artifacts import finalize, manifest, newest_checkpoint, resolve_resume, s3
from runyard.artifacts.sync import Syncer
from tests.unit.artifacts.s3server import S3Server
from tests.unit.artifacts.test_sync import wait_for

SCRIPT = Path(__file__).with_name("train_ckpt.py")


def trainer(artifact_dir: Path, steps: int, delay: float, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(steps), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RUNYARD_ARTIFACT_DIR": str(artifact_dir), **(env or {})},
    )


def read_until(stream: IO[str] | None, needle: str, limit: int = 200) -> list[str]:
    assert stream is not None
    lines: list[str] = []
    for _ in range(limit):
        line = stream.readline()
        if not line:
            break
        lines.append(line.strip())
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not printed; got {lines}")


def kill_after_checkpoints(artifact_dir: Path, n: int) -> int:
    """Start the trainer, SIGKILL it once it saved `n` checkpoints; returns the step it had saved last."""
    proc = trainer(artifact_dir, steps=1000, delay=0.2)
    try:
        read_until(proc.stdout, "starting from scratch")
        read_until(proc.stdout, f"saved step {n}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        if proc.stdout:
            proc.stdout.close()
    newest = newest_checkpoint(artifact_dir)
    assert newest is not None
    return int(json.loads(newest.read_text())["step"])


def finish(artifact_dir: Path, steps: int, resume_from: str, env: dict[str, str] | None = None) -> list[str]:
    proc = trainer(artifact_dir, steps=steps, delay=0, env={"RUNYARD_RESUME_FROM": resume_from, **(env or {})})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out.splitlines()


def test_local_run_killed_after_first_checkpoint_resumes_from_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    rank_dir = run_dir / "node-0"
    saved = kill_after_checkpoints(rank_dir, 1)
    assert saved >= 1
    # The local runner passes the run's directory (or `runyard run --local --resume-from PATH`).
    lines = finish(rank_dir, saved + 2, str(run_dir))
    assert f"resumed from step {saved}" in lines
    assert lines[-1] == f"done at step {saved + 2} weight {(saved + 2) * 0.5}"
    summary = finalize(run_dir)
    assert summary.files == saved + 2
    assert summary.newest_checkpoint == str(rank_dir.resolve() / "checkpoints" / f"step-{saved + 2:06d}.pt")
    assert manifest.verify(run_dir, json.loads(Path(summary.manifest).read_text())) == []
    # Resuming from the exact checkpoint file works too, and nothing is copied for local paths.
    lines = finish(tmp_path / "other", saved + 3, summary.newest_checkpoint)
    assert f"resumed from step {saved + 2}" in lines


def test_killed_rank_resumes_from_s3_in_a_fresh_pod(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    """A pod (trainer + sync sidecar) is killed; its replacement starts empty and resumes from the store."""
    first_pod = tmp_path / "pod-1" / "artifacts"
    first_pod.mkdir(parents=True)
    log = tmp_path / "sidecar.log"
    with log.open("wb") as out:  # the child keeps its own copy
        sidecar = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runyard.artifacts.sync",
                "--src",
                str(first_pod),
                "--dest",
                f"s3://{bucket}/runs/r1/node-0",
                "--interval",
                "0.5",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **s3_server.env()},
        )
    try:
        wait_for(lambda: "syncing" in log.read_text(), what="the sidecar to start")
        saved = kill_after_checkpoints(first_pod, 2)
        sidecar.send_signal(signal.SIGTERM)  # the kubelet stops the sidecar: final pass
        assert sidecar.wait(timeout=30) == 0
    finally:
        sidecar.kill()
    second_pod = tmp_path / "pod-2" / "artifacts"
    # RUNYARD_RESUME_FROM as the builders set it when the operator could not name the checkpoint: the run's URI.
    lines = finish(second_pod, saved + 1, f"s3://{bucket}/runs/r1", s3_server.env())
    assert f"resumed from step {saved}" in lines
    assert lines[-1].startswith(f"done at step {saved + 1}")
    assert not (second_pod / "checkpoints" / f"step-{saved:06d}.pt").exists()  # downloaded elsewhere


def test_resolve_resume_s3_forms(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "art"
    (src / "checkpoints" / "step-000005").mkdir(parents=True)
    (src / "checkpoints" / "step-000005" / "model.bin").write_bytes(b"five")
    (src / "checkpoints" / "step-000005" / "COMPLETE").write_text("")
    (src / "checkpoints" / "step-000004.pt").write_bytes(b"four")
    (src / "checkpoints" / "step-000006").mkdir()
    (src / "checkpoints" / "step-000006" / "model.bin").write_bytes(b"six, no marker yet")
    assert Syncer(src, f"s3://{bucket}/p/r1/node-0", s3_server.client()).sync_once()
    env = s3_server.env()
    kw = {"endpoint": env["AWS_ENDPOINT_URL"], "region": "us-east-1"}
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_ACCESS") or k.startswith("AWS_SECRET")})
    try:
        # A prefix: the newest complete checkpoint below it (the incomplete step 6 is skipped).
        got = resolve_resume(f"s3://{bucket}/p/r1", tmp_path / "d1", **kw)
        assert got == tmp_path / "d1" / "step-000005" and (got / "model.bin").read_bytes() == b"five"
        # A directory checkpoint named directly, and a file checkpoint.
        got = resolve_resume(f"s3://{bucket}/p/r1/node-0/checkpoints/step-000005", tmp_path / "d2", **kw)
        assert got == tmp_path / "d2" / "step-000005" and (got / "COMPLETE").exists()
        got = resolve_resume(f"s3://{bucket}/p/r1/node-0/checkpoints/step-000004.pt", tmp_path / "d3", **kw)
        assert got == tmp_path / "d3" / "step-000004.pt" and got.read_bytes() == b"four"
        assert resolve_resume(f"s3://{bucket}/p/other-run", tmp_path / "d4", **kw) is None
        # A corrupted object fails the checksum instead of resuming from garbage.
        client = s3_server.client()
        key = "p/r1/node-0/checkpoints/step-000004.pt"
        client.put_object(Bucket=bucket, Key=key, Body=b"evil", Metadata={"sha256": "0" * 64})
        with pytest.raises(OSError, match="checksum"):
            resolve_resume(f"s3://{bucket}/{key}", tmp_path / "d5", **kw)
    finally:
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.pop(k, None)
    assert s3.head_sha256(s3_server.client(), bucket, "p/r1/node-0/checkpoints/step-000005/model.bin")


def test_resolve_resume_local_forms(tmp_path: Path) -> None:
    assert resolve_resume(None, tmp_path) is None
    assert resolve_resume("", tmp_path) is None
    assert resolve_resume(str(tmp_path / "missing"), tmp_path) is None
    ckpt = tmp_path / "run" / "node-0" / "checkpoints" / "step-3.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"3")
    assert resolve_resume(str(ckpt), tmp_path / "dl") == ckpt
    assert resolve_resume(f"file://{tmp_path / 'run'}", tmp_path / "dl") == ckpt
    assert resolve_resume(tmp_path / "run" / "node-0", tmp_path / "dl") == ckpt
    assert not (tmp_path / "dl").exists()
