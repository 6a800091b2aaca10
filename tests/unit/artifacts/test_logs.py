"""The log archive: its paths, the bounded head-and-tail buffer, the attempt index, which attempt and ranks a reader
shows, the operator's archive of an attempt into a real S3 server, and reading it back as the client does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from runyard import constants as c
from runyard.artifacts import logs as lg
from runyard.artifacts import s3
from runyard_operator.artifacts.logs import archive_attempt, never_started, pods_by_rank
from runyard_operator.artifacts.store import RunStore
from runyard_operator.k8s import ApiError
from runyard_operator.observe import PodView, Termination
from tests.unit.artifacts.s3server import S3Server


def test_paths() -> None:
    assert lg.log_path(0, "node-0") == "logs/attempt-0/node-0.log"
    assert lg.index_path(3) == "logs/attempt-3/index.json"
    # Replicas a suspension stopped: a segment of their attempt, named by when the suspension began.
    segment = lg.stopped_segment("2026-12-05T23:15:00Z")
    assert segment == lg.stopped_segment("2026-12-05T23:15:00+00:00") == "stopped-20261205T231500Z"
    assert lg.log_path(0, "node-1", segment) == "logs/attempt-0/stopped-20261205T231500Z/node-1.log"
    assert lg.index_path(0, segment) == "logs/attempt-0/stopped-20261205T231500Z/index.json"
    assert [lg.parse_attempt_dir(n) for n in ("attempt-12", "attempt-", "attempt-1x", "node-0")] == [
        12,
        None,
        None,
        None,
    ]
    run = lg.StoreURI.parse("s3://bucket/team").run("r1")
    assert run.uri(lg.log_path(1, "worker-2")) == "s3://bucket/team/r1/logs/attempt-1/worker-2.log"


def test_a_short_log_is_kept_whole() -> None:
    buffer = lg.HeadTail(1024)
    for chunk in (b"line 1\n", b"line 2\n", b""):
        buffer.feed(chunk)
    assert (buffer.value(), buffer.total, buffer.truncated) == (b"line 1\nline 2\n", 14, False)


def test_a_long_log_keeps_its_head_and_tail_in_whole_lines_with_bounded_memory() -> None:
    lines = [f"line {i:07d}\n".encode() for i in range(400_000)]  # 5.2 MB
    buffer = lg.HeadTail(64 * 1024)
    blob = b"".join(lines)
    for start in range(0, len(blob), 65536):
        buffer.feed(blob[start : start + 65536])
        # Never more than the limit plus the trimming slack and one chunk, whatever the log's size.
        assert len(buffer._head) + len(buffer._tail) <= 64 * 1024 + lg._TAIL_SLACK + 65536
    kept = buffer.value()
    assert buffer.truncated and buffer.total == len(blob)
    head, _, tail = kept.partition(b"[runyard: ")
    assert head.startswith(lines[0]) and head.endswith(b"\n") and tail.endswith(lines[-1])
    # Whole lines on both sides of the marker, and the marker says exactly how much is missing.
    assert all(len(line) == 12 for line in head.splitlines())
    body = tail.split(b"\n", 1)[1]
    assert all(len(line) == 12 for line in body.splitlines())
    omitted = int(tail.split(b" ", 1)[0])
    assert omitted == len(blob) - len(head) - len(body)
    assert len(kept) <= 64 * 1024 + 200


def test_the_index_round_trips() -> None:
    ranks = [
        lg.RankLog("node-1", "p1", "n1", error="not read: 500 InternalError: no preferred addresses found"),
        lg.RankLog("node-0", "p0", "n0", 10, 10),
        lg.RankLog("node-2", "p2", "", error="no log: the container never started", started=False),
    ]
    doc = lg.index_document("r1", 2, "Restarting", ranks, "2026-01-01T00:00:00Z")
    assert [(r["rank"], r["path"]) for r in doc["ranks"]] == [
        ("node-0", "logs/attempt-2/node-0.log"),
        ("node-1", ""),
        ("node-2", ""),
    ]
    assert (doc["attempt"], doc["outcome"]) == (2, "Restarting")
    assert sorted(lg.parse_index(json.loads(json.dumps(doc))), key=lambda r: r.rank) == sorted(
        ranks, key=lambda r: r.rank
    )


@pytest.mark.parametrize(
    ("requested", "current", "live", "want"),
    [
        (None, 0, [], 0),  # nothing yet: the run's attempt
        (None, 2, [2], 2),
        (None, 2, [1], 1),  # the old attempt's pods are still going: they are what there is to read
        (None, 2, [], 2),  # pods gone: the current attempt, from its archive
        (0, 2, [2], 0),  # asked: the archive of attempt 0 even while attempt 2 runs
    ],
    ids=["new", "live", "old-pods-left", "pods-gone", "asked"],
)
def test_select_attempt(requested: int | None, current: int, live: list[int], want: int) -> None:
    assert lg.select_attempt(requested, current, live) == want


@pytest.mark.parametrize(
    ("live", "archived", "want"),
    [
        ([], True, [("node", 0), ("node", 1)]),  # every pod gone: all from the archive
        ([("node", 0)], True, [("node", 1)]),  # cleanPodPolicy Running took one: only it
        ([("node", 0), ("node", 1)], True, []),
        ([], False, []),  # no archive (no store): nothing, as before archives existed
    ],
    ids=["all-gone", "one-gone", "none-gone", "not-archived"],
)
def test_archive_ranks_fall_back_per_rank(
    live: list[tuple[str, int]], archived: bool, want: list[tuple[str, int]]
) -> None:
    assert lg.archive_ranks([("node", 0), ("node", 1)], set(live), archived) == want


# --- the operator's archive into a real S3 server ---------------------------------------------------------


def pod(index: int, *, phase: str = "Running", created: str = "2026-01-01T00:00:00Z", name: str = "") -> PodView:
    return PodView(
        name=name or f"r1-node-{index}-abcde",
        uid=f"uid-{index}-{created}",
        run_uid="run-uid",
        role="node",
        attempt=0,
        index=index,
        phase=phase,
        node=f"n{index}",
        ready=phase == "Running",
        unschedulable_message="",
        termination=None,
        gpus=0,
        deleting=False,
        start_time="" if phase == "Pending" else created,
        reason="",
        message="",
        waiting_reason="ErrImagePull" if phase == "Pending" else "",
        created=created,
    )


@dataclass
class Source:
    """pods/log as the API server answers it: a log per pod, a refusal, or a node that answers slowly."""

    logs: dict[str, bytes]
    refusals: dict[str, ApiError]
    slow: float = 0.0
    calls: int = 0

    followed: int = 0

    async def stream_pod_log(
        self,
        namespace: str,
        name: str,
        container: str,
        sink: Callable[[bytes], object],
        *,
        timeout: float,
        follow: bool = False,
    ) -> int:
        assert container == c.CONTAINER_NAME
        self.calls += 1
        self.followed += follow
        if name in self.refusals:
            raise self.refusals[name]
        data = self.logs.get(name, b"")
        half = len(data) // 2
        sink(data[:half])
        if self.slow:
            if self.slow > timeout:
                await asyncio.sleep(timeout)
                raise ApiError(0, "TimeoutError", f"timed out after {timeout:.0f}s")
            await asyncio.sleep(self.slow)
        sink(data[half:])
        return len(data)


@pytest.fixture
def run_store(s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch) -> RunStore:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return RunStore(lg.StoreURI.parse(f"s3://{bucket}/team").run("r1"), s3_server.endpoint, "us-east-1")


def archive(source: Source, store: RunStore, pods: list[PodView], **kw: object) -> object:
    return asyncio.run(
        archive_attempt(source, store, "ns", "r1", 0, "Failed", pods, archived_at="2026-01-01T00:00:00Z", **kw)  # type: ignore[arg-type]
    )


def test_every_rank_is_archived_and_problems_are_recorded_not_raised(run_store: RunStore, bucket: str) -> None:
    big = b"".join(f"step {i}\n".encode() for i in range(20_000))
    pending = pod(3, phase="Pending")
    source = Source(
        {"r1-node-0-abcde": b"rank 0 says hi\n", "r1-node-1-abcde": big},
        {"r1-node-2-abcde": ApiError(400, "BadRequest", "container trainer is terminated")},
    )
    result = archive(
        source,
        run_store,
        [pod(0), pod(1), pod(2), pending],
        expected=["node-0", "node-1", "node-2", "node-3", "node-4"],
        max_bytes=8192,
    )
    assert result.stored  # type: ignore[attr-defined]
    ranks = {r.rank: r for r in result.ranks}  # type: ignore[attr-defined]
    assert ranks["node-0"] == lg.RankLog("node-0", "r1-node-0-abcde", "n0", 15, 15)
    assert ranks["node-1"].truncated and ranks["node-1"].size == len(big) and ranks["node-1"].stored <= 8192 + 200
    assert ranks["node-2"].error == "not read: 400 BadRequest: container trainer is terminated"
    assert not ranks["node-3"].started and "never started (ErrImagePull)" in ranks["node-3"].error
    assert ranks["node-4"].error == "not read: no pod of this attempt was left"
    # A container that never ran is no archive problem; an unreadable or missing rank is.
    assert result.problems() == [  # type: ignore[attr-defined]
        "node-2: not read: 400 BadRequest: container trainer is terminated",
        "node-4: not read: no pod of this attempt was left",
    ]
    assert source.calls == 3  # the never-started pod is not asked for

    client = s3.client()
    assert s3.get_bytes(client, bucket, "team/r1/logs/attempt-0/node-0.log") == b"rank 0 says hi\n"
    kept = s3.get_bytes(client, bucket, "team/r1/logs/attempt-0/node-1.log")
    assert (
        kept is not None and kept.startswith(b"step 0\n") and kept.endswith(b"step 19999\n") and b"[runyard: " in kept
    )
    assert s3.get_bytes(client, bucket, "team/r1/logs/attempt-0/node-2.log") is None
    index = s3.get_json(client, bucket, "team/r1/logs/attempt-0/index.json")
    assert index is not None and (index["run"], index["attempt"], index["outcome"]) == ("r1", 0, "Failed")
    assert [r["rank"] for r in index["ranks"]] == ["node-0", "node-1", "node-2", "node-3", "node-4"]


def test_stopped_replicas_are_followed_into_a_segment_of_their_attempt(run_store: RunStore, bucket: str) -> None:
    source = Source({"r1-node-0-abcde": b"stop asked\ncheckpoint step 40 saved\n"}, {})
    segment = lg.stopped_segment("2026-12-05T23:15:00Z")
    result = archive(source, run_store, [pod(0)], expected=["node-0"], segment=segment, follow=True)
    assert result.stored and source.followed == 1  # type: ignore[attr-defined]
    client = s3.client()
    base = "team/r1/logs/attempt-0/stopped-20261205T231500Z"
    assert s3.get_bytes(client, bucket, f"{base}/node-0.log") == b"stop asked\ncheckpoint step 40 saved\n"
    index = s3.get_json(client, bucket, f"{base}/index.json")
    assert index is not None and (index["segment"], index["ranks"][0]["path"]) == (
        "stopped-20261205T231500Z",
        "logs/attempt-0/stopped-20261205T231500Z/node-0.log",
    )
    # The attempt itself is not archived by it: its index is written when the attempt ends.
    assert s3.get_json(client, bucket, "team/r1/logs/attempt-0/index.json") is None
    assert lg.LogArchive(run_store.run_uri.uri()).attempts() == []


def test_the_archive_is_bounded_in_time(run_store: RunStore, bucket: str) -> None:
    source = Source({f"r1-node-{i}-abcde": b"x\n" * 100 for i in range(3)}, {}, slow=30.0)
    started = time.monotonic()
    result = archive(source, run_store, [pod(0), pod(1), pod(2)], timeout=2.0, concurrency=2)
    assert time.monotonic() - started < 10  # 2 s of budget, not 3 x 30 s
    ranks = {r.rank: r for r in result.ranks}  # type: ignore[attr-defined]
    # The two ranks read at once stop at the budget, keeping (and storing) what they had read.
    for rank in ("node-0", "node-1"):
        assert ranks[rank].stored == 100 and "read stopped after 100 bytes" in ranks[rank].error, ranks[rank]
    assert ranks["node-2"].error == "not read: the archive's time budget was spent"
    assert s3.get_bytes(s3.client(), bucket, "team/r1/logs/attempt-0/node-0.log") == b"x\n" * 50


def test_a_store_that_is_down_is_recorded(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    store = RunStore(lg.StoreURI.parse("s3://no-such-bucket/team").run("r1"), s3_server.endpoint, "us-east-1")
    result = archive(Source({"r1-node-0-abcde": b"hi\n"}, {}), store, [pod(0)], timeout=20.0)
    assert not result.stored  # type: ignore[attr-defined]
    assert result.ranks[0].error.startswith("not stored: ")  # type: ignore[attr-defined]
    assert result.error.startswith("index not stored: ")  # type: ignore[attr-defined]


def test_one_pod_per_rank_the_newest() -> None:
    older = pod(0, created="2026-01-01T00:00:00Z", name="old")
    newer = pod(0, created="2026-01-01T00:05:00Z", name="new")
    unlabelled = replace(pod(1), index=-1)
    assert {r: p.name for r, p in pods_by_rank([newer, older, unlabelled]).items()} == {"node-0": "new"}


def test_a_pod_that_ran_is_read_even_while_pending_again() -> None:
    ran = replace(pod(0, phase="Pending"), termination=Termination("trainer", 1, "Error", ""))
    assert not never_started(ran) and never_started(pod(0, phase="Pending")) and not never_started(pod(0))


# --- reading it back, as the client does --------------------------------------------------------------------


def test_the_archive_reads_back_from_s3_with_the_callers_aws_environment(run_store: RunStore) -> None:
    archive(Source({"r1-node-0-abcde": b"a\nb\n"}, {}), run_store, [pod(0)])
    reader = lg.LogArchive(run_store.run_uri.uri())  # endpoint and credentials from AWS_* in the environment
    assert reader.attempts() == [0]
    assert reader.read(lg.log_path(0, "node-0")) == b"a\nb\n"
    assert reader.read(lg.log_path(0, "node-9")) is None
    index = reader.index(0)
    assert index is not None and [r.rank for r in index] == ["node-0"]
    assert reader.index(1) is None


def test_a_store_refusing_the_caller_is_a_log_archive_error(
    s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "someone-else")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    reader = lg.LogArchive(f"s3://{bucket}/team/r1", endpoint=s3_server.endpoint)
    with pytest.raises(lg.LogArchiveError, match=f"s3://{bucket}/team/r1/logs/attempt-0/index.json: "):
        reader.index(0)


def test_file_archives_read_from_disk_and_pvc_holds_none(tmp_path: Path) -> None:
    run_dir = tmp_path / "store" / "r1"
    (run_dir / "logs" / "attempt-1").mkdir(parents=True)
    (run_dir / "logs" / "attempt-1" / "node-0.log").write_bytes(b"hello\n")
    (run_dir / "logs" / "attempt-1" / "index.json").write_text(
        json.dumps(lg.index_document("r1", 1, "Succeeded", [lg.RankLog("node-0", size=6, stored=6)], "t"))
    )
    reader = lg.LogArchive(lg.StoreURI.parse(f"file://{tmp_path / 'store'}").run("r1").uri())
    assert reader.attempts() == [1]
    assert reader.read(lg.log_path(1, "node-0")) == b"hello\n" and reader.read(lg.log_path(0, "node-0")) is None
    with pytest.raises(lg.LogArchiveError, match="pvc:// stores hold no log archive"):
        lg.LogArchive("pvc://claim/team/r1")
