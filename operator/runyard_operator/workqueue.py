"""A de-duplicating reconcile queue with one operator-wide timer heap (no per-object timers)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    """Keys wait here until a worker reconciles them; a key is never reconciled by two workers at once.

    A key added while it is being processed is marked dirty and processed once more afterwards, so the last
    event always wins (level-based reconcile needs nothing else).
    """

    def __init__(self, reconcile: Callable[[Key], Awaitable[None]], workers: int = 16) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._timer_seq = 0
        self._timer_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_at(self, key: Key, when: float) -> None:
        """Reconcile `key` again at monotonic time `when` (used for deadlines, backoff and TTLs)."""
        due = self._due.get(key)
        if due is not None and due <= when:
            return  # an earlier wake-up is already due; that reconcile re-arms any later one
        self._due[key] = when
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, key))
        self._timer_wakeup.set()

    def __len__(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"reconcile-{i}") for i in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="reconcile-timers"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            try:
                await self._reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The reconcile itself records errors and schedules retries; this only keeps the worker alive.
                logger.exception("reconcile of %s crashed", key)
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)

    async def _timer_loop(self) -> None:
        while True:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                when, _, key = heapq.heappop(self._timers)
                if self._due.get(key) == when:
                    del self._due[key]
                    self.add(key)
            timeout = (self._timers[0][0] - now) if self._timers else None
            self._timer_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout=timeout)
