"""A de-duplicating reconcile queue with one operator-wide timer heap (no per-object timers) and two lanes."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Key = TypeVar("Key", bound=Hashable)

_NOW, _LATER = 0, 1


class WorkQueue(Generic[Key]):
    """Keys wait here until a worker reconciles them; a key is never reconciled by two workers at once.

    A key added while it is being processed is marked dirty and processed once more afterwards, so the last
    event always wins (level-based reconcile needs nothing else).

    Keys come through two lanes. `add` (a watch event: something changed) goes first; keys whose timer fired
    (`add_at`: a coalesced status write, a backoff, a deadline) wait until that lane is empty, or until they have
    waited `max_defer` seconds. Under a burst of new runs, children are created first and the deferred status
    writes follow, instead of halving the creation rate; aging keeps a timer from being starved.
    """

    def __init__(self, reconcile: Callable[[Key], Awaitable[None]], workers: int = 16, max_defer: float = 30.0) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self._max_defer = max_defer
        self._lanes: tuple[deque[tuple[float, Key]], deque[tuple[float, Key]]] = (deque(), deque())
        self._queued: dict[Key, int] = {}  # key -> the lane whose entry is live (others are stale, skipped)
        self._tokens: asyncio.Queue[None] = asyncio.Queue()  # one token per queued key
        self._processing: set[Key] = set()
        self._dirty: dict[Key, int] = {}  # key -> lane to requeue it in once its reconcile ends
        self._timers: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._timer_seq = 0
        self._timer_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key) -> None:
        self._enqueue(key, _NOW)

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
        return len(self._queued)

    def _enqueue(self, key: Key, lane: int) -> None:
        if key in self._processing:
            self._dirty[key] = min(lane, self._dirty.get(key, lane))
            return
        current = self._queued.get(key)
        if current is not None and current <= lane:
            return  # already queued in this lane or a faster one
        self._queued[key] = lane
        self._lanes[lane].append((time.monotonic(), key))
        if current is None:
            self._tokens.put_nowait(None)
        # else: promoted from the later lane; its old entry goes stale and the token count stays right

    def _live_head(self, lane: int) -> tuple[float, Key] | None:
        entries = self._lanes[lane]
        while entries:
            since, key = entries[0]
            if self._queued.get(key) == lane:
                return since, key
            entries.popleft()  # stale: the key was promoted or already taken
        return None

    def _pop(self) -> Key:
        later = self._live_head(_LATER)
        if later is not None and time.monotonic() - later[0] >= self._max_defer:
            lane = _LATER
        else:
            lane = _NOW if self._live_head(_NOW) is not None else _LATER
        _, key = self._lanes[lane].popleft()
        del self._queued[key]
        return key

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"reconcile-{i}") for i in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="reconcile-timers"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            await self._tokens.get()
            key = self._pop()
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
                lane = self._dirty.pop(key, None)
                if lane is not None:
                    self._enqueue(key, lane)

    async def _timer_loop(self) -> None:
        while True:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                when, _, key = heapq.heappop(self._timers)
                if self._due.get(key) == when:
                    del self._due[key]
                    self._enqueue(key, _LATER)
            timeout = (self._timers[0][0] - now) if self._timers else None
            self._timer_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout=timeout)
