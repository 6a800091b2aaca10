"""The children's informer on the real API server: list then watch, selectors, deletions, and deletions it missed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from runyard import constants as c
from runyard_operator.informer import Informer
from runyard_operator.k8s import Kube
from tests.conftest import Cluster

Seen = list[tuple[str | None, str]]


def _pod(name: str, namespace: str, labelled: bool = True) -> dict[str, Any]:
    labels = {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, c.LABEL_RUN_UID: "u-1"} if labelled else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        # Left to a scheduler that does not exist, so nothing writes to the pod after it is created (a real scheduler
        # marks it Unschedulable: a MODIFIED that races the informer's list) and, never bound, it is deleted at once.
        "spec": {
            "schedulerName": "runyard-test-no-such-scheduler",
            "containers": [{"name": "c", "image": "x"}],
        },
    }


async def _eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _run(body: Callable[[Kube], Awaitable[None]]) -> None:
    async def main() -> None:
        kube = await Kube.connect()
        try:
            await body(kube)
        finally:
            await kube.close()

    asyncio.run(main())


@pytest.fixture(autouse=True)
def _kubeconfig_env(monkeypatch: pytest.MonkeyPatch, cluster: Cluster) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))


def test_lists_then_watches_only_the_selected_objects(cluster: Cluster, namespace: str) -> None:
    async def body(kube: Kube) -> None:
        await kube.create(_pod("before", namespace))
        await kube.create(_pod("foreign", namespace, labelled=False))
        seen: Seen = []
        selector = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY_VALUE}"
        informer = Informer(
            kube, "Pod", namespace, lambda t, b: seen.append((t, b["metadata"]["name"])), label_selector=selector
        )
        task = asyncio.create_task(informer.run())
        try:
            await asyncio.wait_for(informer.synced.wait(), 30)
            assert seen == [(None, "before")]  # listed, as kopf delivers a listing; the unlabelled pod never streams
            await kube.create(_pod("after", namespace))
            await _eventually(lambda: ("ADDED", "after") in seen, "the new pod's ADDED")
            await kube.delete("Pod", namespace, "before")
            await _eventually(lambda: ("DELETED", "before") in seen, "the deleted pod's DELETED")
            assert all(name != "foreign" for _, name in seen)
            listed = await kube.list_items("Pod", namespace, label_selector=selector)
            assert set(informer.known) == {p["metadata"]["uid"] for p in listed}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    _run(body)


def test_a_relist_reports_the_deletions_its_watch_missed(cluster: Cluster, namespace: str) -> None:
    async def body(kube: Kube) -> None:
        for name in ("stays", "goes"):
            await kube.create(_pod(name, namespace))
        seen: Seen = []
        informer = Informer(kube, "Pod", namespace, lambda t, b: seen.append((t, b["metadata"]["name"])))
        task = asyncio.create_task(informer.run())
        await asyncio.wait_for(informer.synced.wait(), 30)
        task.cancel()  # the watch is down (an operator stall, an apiserver restart) ...
        await asyncio.gather(task, return_exceptions=True)
        await kube.delete("Pod", namespace, "goes")  # ... while a pod goes: no watch will ever tell of it
        seen.clear()
        informer.version = ""  # as after 410 Gone: the next pass lists again
        task = asyncio.create_task(informer.run())
        try:
            await _eventually(lambda: ("DELETED", "goes") in seen, "the missed deletion")
            assert (None, "stays") in seen and ("DELETED", "stays") not in seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    _run(body)
