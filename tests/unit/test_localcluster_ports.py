"""The local cluster starts a component again on new ports when another process bound one between pick and bind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import localcluster


def test_etcd_whose_port_was_taken_is_started_again_on_a_new_one(tmp_path: Path) -> None:
    if not localcluster.binary("etcd").exists():
        pytest.skip(f"{localcluster.binary('etcd')} not built: run `make binaries`")
    paths = localcluster.Paths(tmp_path)
    paths.logs.mkdir(parents=True)
    with socket.socket() as squatter:
        # What CI met: another process listens on the port picked for a component before that component binds it.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", localcluster.free_port()))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picked = {key: localcluster.free_port() for key in ("etcd_peer", "apiserver", "kcm", "scheduler")}
        info: dict[str, Any] = {"ports": {**picked, "etcd": taken}, "pids": {}, "real_node": False}

        def ready() -> bool:
            return localcluster.get(f"http://127.0.0.1:{info['ports']['etcd']}/health") == 200

        try:
            localcluster.launch("etcd", ready, 60, paths, info)
            assert info["ports"]["etcd"] != taken
            assert localcluster.BIND_FAILED in (paths.logs / "etcd.log").read_text()
            assert ready()
        finally:
            pid = info["pids"].get("etcd")
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
