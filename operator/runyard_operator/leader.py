"""Lease-based leader election (coordination.k8s.io/v1), so several operator replicas can run with one active."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from runyard_operator.k8s import ApiError, Kube
from runyard_operator.timestamps import format_time, parse_time

logger = logging.getLogger(__name__)


def lease_is_free(spec: dict[str, Any], me: str, now: datetime) -> bool:
    """Whether `me` may take the lease: it is ours, unheld, or its holder stopped renewing it."""
    holder = spec.get("holderIdentity")
    if not holder or holder == me:
        return True
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or 0)
    return renewed is None or now > renewed + timedelta(seconds=duration)


class LeaderElector:
    """Acquires and renews one Lease; `lead()` returns once leadership is held, `lost` is set when it is gone."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew_every: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.duration, self.renew_every, self.clock = duration, renew_every, clock
        self.lost = asyncio.Event()
        self.is_leader = False
        self._task: asyncio.Task[None] | None = None

    async def _try(self) -> bool:
        now = self.clock()
        try:
            lease = await self.kube.get("Lease", self.namespace, self.name)
        except ApiError as err:
            if err.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": int(self.duration),
                    "acquireTime": format_time(now, "us"),
                    "renewTime": format_time(now, "us"),
                    "leaseTransitions": 0,
                },
            }
            try:
                await self.kube.create(body)
                return True
            except ApiError as create_err:
                if create_err.status == 409:
                    return False
                raise
        spec = dict(lease.get("spec") or {})
        if not lease_is_free(spec, self.identity, now):
            return False
        if spec.get("holderIdentity") != self.identity:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = format_time(now, "us")
        spec |= {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": format_time(now, "us"),
        }
        lease["spec"] = spec
        try:
            # PUT with the read resourceVersion: two candidates cannot both win (the loser gets 409).
            await self.kube.request("PUT", "Lease", self.namespace, self.name, body=lease)
            return True
        except ApiError as err:
            if err.status == 409:
                return False
            raise

    async def lead(self) -> None:
        """Wait until this replica holds the lease, then keep renewing it in the background."""
        while True:
            try:
                if await self._try():
                    break
            except ApiError as err:
                logger.warning("leader election: %s", err)
            await asyncio.sleep(self.renew_every)
        self.is_leader = True
        logger.info("became leader (lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                if await self._try():
                    last_ok = time.monotonic()
                    continue
                logger.error("lease %s/%s was taken over by another replica", self.namespace, self.name)
            except ApiError as err:
                if time.monotonic() - last_ok < self.duration - self.renew_every:
                    logger.warning("lease renewal failed, retrying: %s", err)
                    continue
                logger.error("lease renewal failed for %.0fs: %s", time.monotonic() - last_ok, err)
            # Leadership is gone: stop reconciling at once so two replicas never act together.
            self.is_leader = False
            self.lost.set()
            return

    async def release(self) -> None:
        """Give the lease up on a clean shutdown so a standby takes over without waiting for expiry."""
        if self._task:
            self._task.cancel()
        if not self.is_leader:
            return
        try:
            lease = await self.kube.get("Lease", self.namespace, self.name)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = None
                await self.kube.request("PUT", "Lease", self.namespace, self.name, body=lease)
        except ApiError as err:
            logger.warning("could not release the lease: %s", err)
