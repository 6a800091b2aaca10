"""The log archive: every rank's log of an attempt, stored in the run's S3 prefix before the attempt's pods go.

Bounded three ways: each rank keeps at most `max_bytes` (its head and tail, runyard.artifacts.logs.HeadTail), at most
LOG_ARCHIVE_CONCURRENCY ranks are read at once, and one attempt takes at most `timeout` seconds (reads stop at three
quarters of it so what was read can still be stored). Logs stream from the API server (Kube.stream_pod_log); the
blocking S3 client runs in threads. Nothing here raises: every problem is recorded in the result, rank by rank.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from runyard import constants as c
from runyard.artifacts import logs as lg
from runyard.artifacts.store import rank_name
from runyard_operator.artifacts.store import RunStore
from runyard_operator.k8s import ApiError

if TYPE_CHECKING:
    from runyard_operator.observe import PodView

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Share of the time budget spent reading logs; the rest is for storing them and the index.
READ_SHARE = 0.75


class LogSource(Protocol):
    """The one Kube method the archive needs (a fake in tests)."""

    async def stream_pod_log(
        self,
        namespace: str,
        name: str,
        container: str,
        sink: Callable[[bytes], object],
        *,
        timeout: float,
        follow: bool = False,
    ) -> int: ...


@dataclass(frozen=True)
class ArchiveResult:
    """What one attempt's archive did: each rank's entry, and whether its index (so the attempt) was stored."""

    attempt: int
    ranks: tuple[lg.RankLog, ...]
    stored: bool
    error: str = ""  # why nothing of the attempt could be stored

    def problems(self) -> list[str]:
        """One line per rank whose log is missing or incomplete, and one for the attempt as a whole.

        A container that never started has no log to lose: the run's failure already says why it did not start.
        """
        lines = [f"{r.rank}: {r.error}" for r in self.ranks if r.error and r.started]
        return lines + ([self.error] if self.error else [])


def never_started(pod: PodView) -> bool:
    """The pod's containers never ran (still Pending, nothing terminated): the API server has no log for it."""
    return pod.phase == "Pending" and pod.termination is None


def pods_by_rank(pods: Sequence[PodView]) -> dict[str, PodView]:
    """One pod per rank (`<role>-<index>`): the newest, whose log is the rank's latest (an attempt rarely has two)."""
    chosen: dict[str, PodView] = {}
    for pod in sorted(pods, key=lambda p: (p.created, p.name)):
        if pod.role and pod.index >= 0:
            chosen[rank_name(pod.role, pod.index)] = pod
    return dict(sorted(chosen.items()))


async def archive_attempt(
    kube: LogSource,
    store: RunStore,
    namespace: str,
    run_name: str,
    attempt: int,
    outcome: str,
    pods: Sequence[PodView],
    *,
    expected: Sequence[str] = (),
    archived_at: str,
    max_bytes: int = c.DEFAULT_LOG_ARCHIVE_MAX_BYTES,
    timeout: float = c.DEFAULT_LOG_ARCHIVE_TIMEOUT_SECONDS,
    concurrency: int = c.LOG_ARCHIVE_CONCURRENCY,
    segment: str = "",
    follow: bool = False,
) -> ArchiveResult:
    """Store every rank's log of `attempt` at `<run>/logs/attempt-<n>/<rank>.log`, then the attempt's index.

    `expected` names the ranks the run has (`node-0`, ...): one without a pod left is recorded as missing. A
    `segment` (stopped replicas) goes to `<run>/logs/attempt-<n>/<segment>/`, read with `follow` so that what the
    replicas print while they stop (their last checkpoint) is kept too.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    read_by = loop.time() + timeout * READ_SHARE
    try:
        client = await _bounded(asyncio.to_thread(store.client), deadline)
    except Exception as err:  # no boto3, a bad endpoint: nothing can be stored
        return ArchiveResult(attempt, (), False, f"store {store.run_uri.uri()}: {_one_line(err)}")
    gate = asyncio.Semaphore(max(concurrency, 1))

    async def one(rank: str, pod: PodView) -> lg.RankLog:
        if never_started(pod):
            why = f" ({pod.waiting_reason})" if pod.waiting_reason else ""
            return lg.RankLog(
                rank, pod.name, pod.node, error=f"no log: the container never started{why}", started=False
            )
        async with gate:
            if loop.time() >= read_by:
                return lg.RankLog(rank, pod.name, pod.node, error="not read: the archive's time budget was spent")
            buffer = lg.HeadTail(max_bytes)
            error = ""
            try:
                await kube.stream_pod_log(
                    namespace, pod.name, c.CONTAINER_NAME, buffer.feed, timeout=read_by - loop.time(), follow=follow
                )
            except ApiError as err:
                what = f"read stopped after {buffer.total} bytes" if buffer.total else "not read"
                code = f"{err.status} " if err.status else ""
                error = f"{what}: {code}{err.reason}: {err.message}"[:512]
            except Exception as err:  # never lose the other ranks to one rank's surprise
                error = f"not read: {_one_line(err)}"[:512]
            if error and not buffer.total:
                return lg.RankLog(rank, pod.name, pod.node, error=error)
            size, truncated, data = buffer.total, buffer.truncated, buffer.value()
            del buffer  # only the kept bytes stay in memory while they upload
            key = store.run_uri.key(lg.log_path(attempt, rank, segment))
            try:
                await _bounded(asyncio.to_thread(_s3().put_bytes, client, store.bucket, key, data), deadline)
            except Exception as err:
                stored_error = f"not stored: {_one_line(err)}"[:512]
                return lg.RankLog(rank, pod.name, pod.node, size, 0, truncated, stored_error)
            return lg.RankLog(rank, pod.name, pod.node, size, len(data), truncated, error)

    ranks = pods_by_rank(pods)
    gone = [
        lg.RankLog(rank, error="not read: no pod of this attempt was left") for rank in expected if rank not in ranks
    ]
    results = (*await asyncio.gather(*(one(rank, pod) for rank, pod in ranks.items())), *gone)
    doc = lg.index_document(run_name, attempt, outcome, results, archived_at, segment)
    try:
        key = store.run_uri.key(lg.index_path(attempt, segment))
        await _bounded(asyncio.to_thread(_s3().put_json, client, store.bucket, key, doc), deadline)
    except Exception as err:
        return ArchiveResult(attempt, results, False, f"index not stored: {_one_line(err)}")
    return ArchiveResult(attempt, results, True)


async def _bounded(work: Coroutine[Any, Any, T], deadline: float) -> T:
    """Await `work` until `deadline` (a to_thread call keeps running in its thread, bounded by boto3's own timeouts)."""
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        work.close()
        raise TimeoutError("the archive's time budget was spent")
    try:
        return await asyncio.wait_for(work, remaining)
    except TimeoutError:
        raise TimeoutError("the archive's time budget was spent") from None


def _s3() -> Any:
    from runyard.artifacts import s3

    return s3


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
