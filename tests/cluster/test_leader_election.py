"""Two operator replicas with --leader-elect: one reconciles, the other takes over when the leader dies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from runyard_operator.leader import lease_is_free
from tests.cluster.conftest import OperatorProcess, Runs, training_run, wait_until
from tests.conftest import Cluster


@pytest.fixture
def replicas(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    crd: None,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[OperatorProcess]]:
    plain: OperatorProcess = request.getfixturevalue("operator")
    plain.stop()  # only the elected replicas may reconcile here
    lease = f"ha-{uuid.uuid4().hex[:6]}"
    args = ["--leader-elect", "--lease-name", lease, "--lease-namespace", namespace]
    procs = [OperatorProcess(cluster.kubeconfig, tmp_path_factory.mktemp(f"ha{i}"), extra_args=args) for i in (0, 1)]
    for proc in procs:
        proc.start()
    yield procs
    for proc in procs:
        proc.stop()
    plain.start()


def leader_of(proc: OperatorProcess) -> bool:
    return "runyard_leader 1.0" in proc.metrics()


def test_one_leader_reconciles_and_a_standby_takes_over(
    replicas: list[OperatorProcess], api: Any, namespace: str
) -> None:
    runs = Runs(api, namespace)
    leader = wait_until(lambda: next((p for p in replicas if leader_of(p)), None), timeout=30, what="a leader")
    standby = next(p for p in replicas if p is not leader)
    assert not leader_of(standby)
    runs.create(training_run("before", replicas={"node": 1}))
    runs.wait_phase("before", "Succeeded")
    # The standby only polls the Lease: it never wrote a child.
    assert 'runyard_api_requests_total{resource="jobs",verb="post"}' not in standby.metrics()

    leader.kill()  # SIGKILL: no release, the standby waits for the lease to expire (15 s)
    wait_until(lambda: leader_of(standby), timeout=45, what="the standby to take over")
    runs.create(training_run("after", replicas={"node": 1}))
    runs.wait_phase("after", "Succeeded")
    lease = client.CoordinationV1Api(api).list_namespaced_lease(namespace).items[0]
    assert lease.spec.lease_transitions == 1


def test_lease_is_free_rules() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 11, 26, tzinfo=UTC)
    held = {"holderIdentity": "a", "renewTime": (now - timedelta(seconds=5)).isoformat(), "leaseDurationSeconds": 15}
    assert not lease_is_free(held, "b", now)
    assert lease_is_free(held, "a", now)
    assert lease_is_free({**held, "renewTime": (now - timedelta(seconds=16)).isoformat()}, "b", now)
    assert lease_is_free({"holderIdentity": None}, "b", now)
