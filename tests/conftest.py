"""Shared pytest fixtures: the local control plane (reused or started), per-test namespaces and API clients."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_localcluster() -> ModuleType:
    spec = importlib.util.spec_from_file_location("localcluster", ROOT / "hack" / "localcluster.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["localcluster"] = module
    spec.loader.exec_module(module)
    return module


localcluster = _load_localcluster()

# Registered once here, so session fixtures such as `operator` exist exactly once per test session.
pytest_plugins = ["tests.operator_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/cluster, tests/e2e, tests/realnode, tests/chaos talks to the cluster: mark it so `-m "not cluster"` is fast.
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in {"cluster", "e2e", "realnode", "chaos"}:
            item.add_marker(pytest.mark.cluster)


def want_real_node() -> int:
    """REAL_NODES, else 1 where this host can run the real node (root, containerd, runc, CNI plugins)."""
    value = os.environ.get("REAL_NODES")
    if value:
        return int(value)
    return 1 if localcluster.realnode.supported()[0] else 0


class Cluster:
    """Handle on the running local cluster."""

    def __init__(self, kubeconfig: Path, info: dict[str, Any]) -> None:
        self.kubeconfig = kubeconfig
        self.info = info
        self.server: str = info["server"]
        self.kubectl_bin = localcluster.kubectl_path()
        self.real_node: bool = bool(info.get("real_node"))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    paths = localcluster.Paths(localcluster.STATE_DIR)
    started = False
    real = want_real_node()
    if not localcluster.running(paths) or (real and not localcluster.has_real_node(paths)):
        localcluster.up(int(os.environ.get("NODES", "4")), real)
        started = True
    info = localcluster.load_info(paths)
    assert info, "cluster state missing after start"
    yield Cluster(paths.kubeconfig, info)
    if started and os.environ.get("RUNYARD_KEEP_CLUSTER", "1") == "0":
        localcluster.down()


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[Any]:
    client = cluster.api_client()
    yield client
    client.close()


@pytest.fixture
def namespace(cluster: Cluster, api: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (its objects with it)."""
    from kubernetes import client

    base = request.node.name.lower().replace("_", "-")
    name = "".join(c for c in base if c.isalnum() or c == "-")[:40].strip("-")
    name = f"{name}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"runyard.dev/test": "true"}))
    )
    yield name
    core.delete_namespace(name, propagation_policy="Background")
