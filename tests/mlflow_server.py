"""A real `mlflow server` (SQLite backend) for tests, on loopback or on the address the real node's pods reach."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.operator_fixtures import free_port, wait_until


@contextmanager
def run_mlflow_server(root: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Start the server under `root`, yield its URI once /health answers, stop it afterwards."""
    port = free_port()
    exe = Path(sys.executable).parent / "mlflow"
    with open(root / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [
                str(exe), "server",
                "--backend-store-uri", f"sqlite:///{root / 'db'}",
                "--default-artifact-root", str(root / "art"),
                "--host", host, "--port", str(port), "--workers", "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    uri = f"http://{host}:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    try:
        wait_until(healthy, timeout=180, interval=0.5, what="mlflow server /health")
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
