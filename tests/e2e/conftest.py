"""Fixtures for chart tests on the local control plane: helm releases, ServiceAccount kubeconfigs, the operator as them."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.cluster.conftest import OperatorProcess
from tests.conftest import Cluster
from tests.unit.helm.chart import CHART, helm_path

CRD_NAME = "trainingruns.runyard.dev"


def short_id() -> str:
    return uuid.uuid4().hex[:6]


class Release:
    """One helm release of a chart in one namespace, driven with the admin kubeconfig."""

    def __init__(self, cluster: Cluster, name: str, namespace: str, chart: Path = CHART) -> None:
        self.cluster = cluster
        self.name = name
        self.namespace = namespace
        self.chart = chart
        self.installed = False

    @property
    def fullname(self) -> str:
        return self.name if "runyard" in self.name else f"{self.name}-runyard"

    @property
    def service_account(self) -> str:
        return self.fullname

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(helm_path()), f"--kubeconfig={self.cluster.kubeconfig}", "--namespace", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def install(self, *flags: str, chart: Path | None = None) -> str:
        out = self.helm("install", self.name, str(chart or self.chart), *flags).stdout
        self.installed = True
        return out

    def upgrade(self, *flags: str, chart: Path | None = None) -> str:
        return self.helm("upgrade", self.name, str(chart or self.chart), *flags).stdout

    def uninstall(self) -> None:
        if self.installed:
            self.helm("uninstall", self.name, "--wait", "--timeout=120s")
            self.installed = False

    def as_sa(self) -> str:
        return f"--as=system:serviceaccount:{self.namespace}:{self.service_account}"

    def can_i(self, verb: str, resource: str, *scope: str) -> bool:
        """`kubectl auth can-i` impersonating the chart's ServiceAccount (scope: `-A` or `-n NS`)."""
        res = self.cluster.kubectl("auth", "can-i", verb, resource, *scope, self.as_sa(), check=False)
        answer = res.stdout.strip()
        assert answer in ("yes", "no"), f"can-i {verb} {resource} {scope}: {res.stdout} {res.stderr}"
        return answer == "yes"


def create_namespace(api: Any, prefix: str) -> str:
    name = f"{prefix}-{short_id()}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"runyard.dev/test": "true"}))
    )
    return name


def delete_namespace(api: Any, name: str) -> None:
    client.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")


def service_account_kubeconfig(cluster: Cluster, api: Any, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig with the cluster's server and CA and a TokenRequest token of `sa` (no admin credentials)."""
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=7200))
    token = client.CoreV1Api(api).create_namespaced_service_account_token(sa, namespace, request).status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    (entry,) = admin["clusters"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": entry["cluster"]}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "local", "user": sa, "namespace": namespace}}],
        "current-context": sa,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


# kopf's cluster-scoped discovery, which a namespaced (Roles-only) install deliberately does not grant: kopf retries
# these for about a minute, then falls back to the listed namespaces and to the CRDs found at start-up.
KOPF_SCANNING_URLS = ("/api/v1/namespaces ", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions ")


def forbidden_requests(operator: OperatorProcess, allow: tuple[str, ...] = ()) -> list[str]:
    """RBAC denials in the operator's log (its own requests and kopf's), minus requests to the `allow` URLs.

    Only authorization failures count ("is forbidden: User ... cannot ..."): other 403s, such as creating objects in a
    namespace being deleted by some other test, say nothing about the chart's RBAC.
    """
    return [
        line
        for line in operator.logs().splitlines()
        if "is forbidden: User" in line and not any(url in line for url in allow)
    ]


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    if not helm_path().exists():
        pytest.fail("helm not built: run `make binaries`")
    return helm_path()


@pytest.fixture
def release_namespace(api: Any) -> Iterator[str]:
    name = create_namespace(api, "runyard-system")
    yield name
    delete_namespace(api, name)
