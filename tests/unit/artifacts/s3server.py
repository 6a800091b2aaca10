"""A real S3-compatible server (versitygw, posix backend) on 127.0.0.1 for tests; built by hack/build-s3-server.sh."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runyard.ports import free_port

VERSITYGW_VERSION = os.environ.get("VERSITYGW_VERSION", "v1.8.0")
ACCESS_KEY = "runyard-test-access"
SECRET_KEY = "runyard-test-secret-key"


def binary() -> Path:
    cache = Path(os.environ.get("RUNYARD_CACHE", Path.home() / ".cache" / "runyard"))
    return cache / "bin" / f"versitygw-{VERSITYGW_VERSION}" / "versitygw"


def require_binary() -> Path:
    """The versitygw binary, or fail the test with how to build it (CI builds it: a missing one is a broken setup)."""
    path = binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"S3 server binary {path} missing: run `make s3-server` (hack/build-s3-server.sh)")
    return path


@dataclass
class S3Server:
    """A running server: its endpoint and the credentials it accepts."""

    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def client(self) -> Any:
        from runyard.artifacts import s3

        return s3.client(self.endpoint, "us-east-1", self.access_key, self.secret_key)

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """Env for a process that talks to this server the way a pod does."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


@contextmanager
def run_server(data_dir: Path, log: Path, host: str = "127.0.0.1") -> Iterator[S3Server]:
    """versitygw on `host` (the real node's pods reach the host at its bridge gateway, not at 127.0.0.1)."""
    exe = require_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(exe),
                "--access",
                ACCESS_KEY,
                "--secret",
                SECRET_KEY,
                "--port",
                f"{host}:{port}",
                "posix",
                str(data_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"versitygw exited with {proc.returncode}: {log.read_text(errors='replace')}")
            try:
                socket.create_connection((host, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"versitygw did not listen on {port}") from None
                time.sleep(0.1)
        yield S3Server(f"http://{host}:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
