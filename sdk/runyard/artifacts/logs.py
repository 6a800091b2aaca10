"""Archived rank logs: their place in the store, the bounded head-and-tail buffer, the attempt index, and reading back.

Layout inside a run's directory `P/R` (docs/artifacts.md):

    P/R/logs/attempt-0/index.json   which ranks were archived, their sizes, and why a rank's log could not be read
    P/R/logs/attempt-0/node-0.log   the trainer container's log of rank node-0 in attempt 0
    P/R/logs/attempt-1/...
    P/R/logs/attempt-0/stopped-20261205T231500Z/node-0.log
                                    what rank node-0 printed before a suspension or a Kueue preemption stopped it;
                                    the attempt goes on when the run resumes, so these come before attempt-0/node-0.log

The operator writes them when an attempt ends (runyard_operator.artifacts.logs); `runyard.Client.logs` reads them
once the pods are gone. Only the standard library is imported at module level: boto3 only when an s3:// archive is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runyard.artifacts.store import LOGS_DIR, StoreURI

INDEX_FILE = "index.json"
INDEX_VERSION = 1
_ATTEMPT_DIR = re.compile(r"^attempt-(\d+)$")
STOPPED_PREFIX = "stopped-"
# The tail matters most (how the rank ended); the head shows how it started.
HEAD_SHARE = 0.25
# The tail buffer is trimmed once it exceeds its limit by this much, so trimming costs one copy per slack, not per chunk.
_TAIL_SLACK = 256 * 1024


def attempt_dir(attempt: int, segment: str = "") -> str:
    """Directory of one attempt's logs inside the run's directory: `logs/attempt-<n>` (or a stopped segment in it)."""
    return f"{LOGS_DIR}/attempt-{attempt}" + (f"/{segment}" if segment else "")


def log_path(attempt: int, rank: str, segment: str = "") -> str:
    """Path of one rank's archived log inside the run's directory: `logs/attempt-<n>/[<segment>/]<role>-<index>.log`."""
    return f"{attempt_dir(attempt, segment)}/{rank}.log"


def index_path(attempt: int, segment: str = "") -> str:
    """Path of one attempt's index inside the run's directory: `logs/attempt-<n>/[<segment>/]index.json`."""
    return f"{attempt_dir(attempt, segment)}/{INDEX_FILE}"


def stopped_segment(since: str) -> str:
    """The segment holding the logs of replicas a suspension stopped, named by when it began (RFC 3339, UTC).

    Deterministic, so an operator that restarts while the replicas stop writes the same segment again.
    """
    return STOPPED_PREFIX + re.sub(r"[^0-9TZ]", "", since.replace("+00:00", "Z"))


def parse_attempt_dir(name: str) -> int | None:
    """The attempt number of an `attempt-<n>` directory name, else None."""
    found = _ATTEMPT_DIR.match(name)
    return int(found.group(1)) if found else None


def truncation_marker(omitted: int, limit: int) -> bytes:
    """The line put where a log's middle was left out."""
    return (
        f"\n[runyard: {omitted} bytes of this log were not archived (limit {limit} bytes per rank): "
        "its beginning and its end are kept]\n"
    ).encode()


class HeadTail:
    """A log fed in chunks of which at most about `max_bytes` are kept: its beginning and its end, whole lines.

    Memory stays bounded whatever the log's size, so a rank that printed gigabytes cannot exhaust the operator.
    """

    def __init__(self, max_bytes: int, head_share: float = HEAD_SHARE) -> None:
        self.max_bytes = max(int(max_bytes), 2)
        self._head_max = int(self.max_bytes * head_share)
        self._tail_max = self.max_bytes - self._head_max
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_max - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > self._tail_max + _TAIL_SLACK:
                del self._tail[: len(self._tail) - self._tail_max]

    @property
    def truncated(self) -> bool:
        return self.total > self.max_bytes

    def value(self) -> bytes:
        """What is kept: the whole log, or its head and tail cut at line ends around a marker saying what is missing."""
        if not self.truncated:
            return bytes(self._head + self._tail)
        head = bytes(self._head)
        tail = bytes(self._tail[-self._tail_max :])
        if b"\n" in head:
            head = head[: head.rfind(b"\n") + 1]
        first_end = tail.find(b"\n")
        if 0 <= first_end < len(tail) - 1:
            tail = tail[first_end + 1 :]
        omitted = self.total - len(head) - len(tail)
        return head + truncation_marker(omitted, self.max_bytes).lstrip(b"\n") + tail


@dataclass(frozen=True)
class RankLog:
    """One rank's entry in an attempt's index: where its log came from, how much was kept, or why none was."""

    rank: str
    pod: str = ""
    node: str = ""
    size: int = 0  # bytes read from the API server
    stored: int = 0  # bytes archived (less than `size` when truncated)
    truncated: bool = False
    error: str = ""  # why the log could not be read or stored (in full or in part)
    started: bool = True  # False: the container never ran (an image that never pulled), so there is no log to miss

    @property
    def archived(self) -> bool:
        return self.stored > 0 or (not self.error and self.size == 0)

    def to_dict(self, path: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"rank": self.rank, "pod": self.pod, "node": self.node, "bytes": self.size}
        out |= {"storedBytes": self.stored, "truncated": self.truncated, "path": path}
        if self.error:
            out["error"] = self.error
        if not self.started:
            out["started"] = False
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RankLog:
        return cls(
            rank=str(data.get("rank") or ""),
            pod=str(data.get("pod") or ""),
            node=str(data.get("node") or ""),
            size=int(data.get("bytes") or 0),
            stored=int(data.get("storedBytes") or 0),
            truncated=bool(data.get("truncated")),
            error=str(data.get("error") or ""),
            started=data.get("started") is not False,
        )


def index_document(
    run: str, attempt: int, outcome: str, ranks: Sequence[RankLog], archived: str, segment: str = ""
) -> dict[str, Any]:
    """An attempt's `index.json`: the run, the attempt, how it ended (Restarting, Succeeded, Failed, or Suspended for
    a stopped segment) and its ranks."""
    entries = [
        r.to_dict(log_path(attempt, r.rank, segment) if r.archived else "") for r in sorted(ranks, key=lambda r: r.rank)
    ]
    doc: dict[str, Any] = {"version": INDEX_VERSION, "run": run, "attempt": attempt}
    if segment:
        doc["segment"] = segment
    return doc | {"outcome": outcome, "archived": archived, "ranks": entries}


def parse_index(doc: Mapping[str, Any]) -> list[RankLog]:
    """The rank entries of an `index.json` (unknown fields ignored)."""
    return [RankLog.from_dict(r) for r in doc.get("ranks") or () if isinstance(r, Mapping)]


# --- what a reader shows ----------------------------------------------------------------------------------


def select_attempt(requested: int | None, current: int, live_attempts: Iterable[int]) -> int:
    """The attempt whose logs to show: the one asked for, else the newest that still has pods, else the run's current."""
    if requested is not None:
        return requested
    live = list(live_attempts)
    return max(live) if live else current


def archive_ranks(
    wanted: Sequence[tuple[str, int]], live: Collection[tuple[str, int]], archived: bool
) -> list[tuple[str, int]]:
    """The ranks to read from the archive: the wanted ones whose pod is gone, when the attempt was archived at all."""
    return [r for r in wanted if r not in live] if archived else []


# --- reading an archive -----------------------------------------------------------------------------------


class LogArchiveError(Exception):
    """The archive could not be read (store unreachable, no credentials, a store this process cannot reach)."""


class LogArchive:
    """One run's log archive, read from `s3://` (boto3 with the caller's AWS environment) or `file://` (local disk).

    `pvc://` stores are never archived to (the operator cannot write a claim), so they have nothing to read.
    """

    def __init__(self, run_uri: str, *, endpoint: str | None = None, region: str | None = None) -> None:
        self.run_uri = StoreURI.parse(run_uri)
        if self.run_uri.scheme == "pvc":
            raise LogArchiveError(f"{run_uri}: pvc:// stores hold no log archive (the operator cannot write a claim)")
        self.endpoint = endpoint
        self.region = region
        self._client: Any = None

    def uri(self, path: str) -> str:
        return self.run_uri.uri(path)

    def read(self, path: str) -> bytes | None:
        """The bytes at `path` (relative to the run's directory), or None when there is nothing there."""
        if self.run_uri.scheme == "file":
            target = Path(self.run_uri.prefix) / path
            try:
                return target.read_bytes()
            except FileNotFoundError:
                return None
            except OSError as err:
                raise LogArchiveError(f"{self.uri(path)}: {err.strerror or err}") from None
        s3 = self._s3()
        try:
            data: bytes | None = s3.get_bytes(self._s3_client(), self.run_uri.location, self.run_uri.key(path))
        except s3.STORE_ERRORS as err:
            raise LogArchiveError(f"{self.uri(path)}: {_one_line(err)}") from None
        return data

    def index(self, attempt: int, segment: str = "") -> list[RankLog] | None:
        """The ranks of an archived attempt (or of one of its stopped segments), or None when it has no index."""
        path = index_path(attempt, segment)
        data = self.read(path)
        if data is None:
            return None
        try:
            doc = json.loads(data)
        except ValueError:
            raise LogArchiveError(f"{self.uri(path)}: not JSON") from None
        return parse_index(doc) if isinstance(doc, dict) else []

    def attempts(self) -> list[int]:
        """The archived attempts, by listing the store (for a run whose status is gone)."""
        found: set[int] = set()
        if self.run_uri.scheme == "file":
            root = Path(self.run_uri.prefix) / LOGS_DIR
            try:
                names = [p.name for p in root.iterdir() if (p / INDEX_FILE).is_file()]
            except FileNotFoundError:
                return []
            except OSError as err:
                raise LogArchiveError(f"{self.uri(LOGS_DIR)}: {err.strerror or err}") from None
            found = {n for n in map(parse_attempt_dir, names) if n is not None}
            return sorted(found)
        s3 = self._s3()
        prefix = self.run_uri.key(LOGS_DIR) + "/"
        try:
            for obj in s3.list_objects(self._s3_client(), self.run_uri.location, prefix):
                parts = obj.key.removeprefix(prefix).split("/")
                if len(parts) == 2 and parts[1] == INDEX_FILE and (n := parse_attempt_dir(parts[0])) is not None:
                    found.add(n)
        except s3.STORE_ERRORS as err:
            raise LogArchiveError(f"{self.uri(LOGS_DIR)}: {_one_line(err)}") from None
        return sorted(found)

    @staticmethod
    def _s3() -> Any:
        try:
            from runyard.artifacts import s3
        except ImportError as err:  # boto3 is the `artifacts` extra
            raise LogArchiveError(
                f"reading s3:// log archives needs boto3 (pip install 'runyard[artifacts]'): {err}"
            ) from None
        return s3

    def _s3_client(self) -> Any:
        if self._client is None:
            self._client = self._s3().client(self.endpoint, self.region)
        return self._client


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
