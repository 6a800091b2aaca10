"""Store URIs, the checkpoint rule, manifests and local finalize (no server needed)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from runyard.artifacts import checkpoints, finalize, local_artifact_dir, local_run_dir, manifest, newest_checkpoint
from runyard.artifacts.store import StoreURI, manifest_key


def write(path: Path, data: bytes = b"x", mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.mark.parametrize(
    ("uri", "scheme", "location", "prefix", "run_uri"),
    [
        ("s3://bucket/team/runs", "s3", "bucket", "team/runs", "s3://bucket/team/runs/r1"),
        ("s3://bucket", "s3", "bucket", "", "s3://bucket/r1"),
        ("pvc://claim/prefix/", "pvc", "claim", "prefix", "pvc://claim/prefix/r1"),
        ("file:///tmp/store", "file", "", "/tmp/store", "file:///tmp/store/r1"),
    ],
)
def test_store_uri(uri: str, scheme: str, location: str, prefix: str, run_uri: str) -> None:
    parsed = StoreURI.parse(uri)
    assert (parsed.scheme, parsed.location, parsed.prefix) == (scheme, location, prefix)
    assert parsed.run("r1").uri() == run_uri


@pytest.mark.parametrize("bad", ["gs://b/x", "s3://", "pvc:///x", "/plain/path"])
def test_store_uri_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        StoreURI.parse(bad)


def test_manifest_key_is_beside_rank_dirs() -> None:
    assert manifest_key("p/run", "node-0") == "p/run/_manifests/node-0.json"


@pytest.mark.parametrize(
    ("name", "step"),
    [("step-000100.pt", 100), ("step-000100", 100), ("ckpt_epoch3_step500.tar.gz", 500), ("last.pt", -1), ("7", 7)],
)
def test_step_of(name: str, step: int) -> None:
    assert checkpoints.step_of(name) == step


def test_rule_on_store_paths() -> None:
    entries = [
        ("node-0/checkpoints/step-000100.pt", 10.0),
        ("node-0/checkpoints/step-000300.pt.tmp", 30.0),  # temporary name: never a checkpoint
        ("node-0/checkpoints/step-000200/model.bin", 20.0),  # directory without its marker: incomplete
        ("node-1/checkpoints/step-000150/shard.bin", 15.0),
        ("node-1/checkpoints/step-000150/_COMPLETE", 16.0),
        ("node-0/checkpoints/.hidden.pt", 99.0),
        ("node-0/logs/step-000900.txt", 99.0),  # not under checkpoints/
    ]
    found = {c.path: c for c in checkpoints.from_paths(entries)}
    assert set(found) == {"node-0/checkpoints/step-000100.pt", "node-1/checkpoints/step-000150"}
    assert found["node-1/checkpoints/step-000150"].is_dir
    newest = checkpoints.newest_from_paths(entries)
    assert newest is not None and newest.path == "node-1/checkpoints/step-000150"
    # The marker completes the directory: step 200 becomes the newest.
    newest = checkpoints.newest_from_paths([*entries, ("node-0/checkpoints/step-000200/.metadata", 21.0)])
    assert newest is not None and newest.path == "node-0/checkpoints/step-000200"


def test_markers_are_recognised_only_inside_checkpoint_dirs() -> None:
    assert checkpoints.is_marker("checkpoints/step-1/COMPLETE")
    assert checkpoints.is_marker("node-0/checkpoints/step-1/.complete")
    assert not checkpoints.is_marker("checkpoints/COMPLETE")
    assert not checkpoints.is_marker("other/step-1/COMPLETE")


def test_newest_checkpoint_local(tmp_path: Path) -> None:
    art = tmp_path / "art"
    assert newest_checkpoint(art) is None
    write(art / "checkpoints" / "step-000001.pt", mtime=100)
    write(art / "checkpoints" / "step-000003" / "weights.bin", mtime=300)  # no marker yet
    write(art / "checkpoints" / "step-000002.pt.partial", mtime=200)
    assert newest_checkpoint(art) == art / "checkpoints" / "step-000001.pt"
    write(art / "checkpoints" / "step-000003" / "COMPLETE", mtime=301)
    assert newest_checkpoint(art) == art / "checkpoints" / "step-000003"
    # Unnumbered names rank below numbered ones; ties between numbered ones go by modification time.
    write(art / "checkpoints" / "latest.pt", mtime=time.time())
    assert newest_checkpoint(art) == art / "checkpoints" / "step-000003"
    assert newest_checkpoint(art / "checkpoints") == art / "checkpoints" / "step-000003"
    assert checkpoints.is_complete(art / "checkpoints" / "step-000003")
    assert not checkpoints.is_complete(art / "checkpoints")


def test_newest_checkpoint_across_rank_dirs(tmp_path: Path) -> None:
    write(tmp_path / "node-0" / "checkpoints" / "step-10.pt")
    write(tmp_path / "node-1" / "checkpoints" / "step-12.pt")
    assert newest_checkpoint(tmp_path) == tmp_path / "node-1" / "checkpoints" / "step-12.pt"


def test_merge_prefixes_ranks_and_sums() -> None:
    a = manifest.manifest_document(
        [manifest.Entry("node-0/checkpoints/step-1.pt", 3, "aa", "node-0", manifest.format_time(1))], rank="node-0"
    )
    b = {
        "rank": "node-1",
        "files": [{"path": "metrics.json", "size": 5, "sha256": "bb", "time": manifest.format_time(2)}],
    }
    merged = manifest.merge([a, b, {"files": [{"path": "broken"}]}], run="r1", store_uri="s3://b/r1")
    assert [f["path"] for f in merged["files"]] == ["node-0/checkpoints/step-1.pt", "node-1/metrics.json"]
    assert [f["rank"] for f in merged["files"]] == ["node-0", "node-1"]
    assert merged["totalBytes"] == 8
    assert merged["newestCheckpoint"] == "node-0/checkpoints/step-1.pt"
    assert merged["run"] == "r1" and merged["storeUri"] == "s3://b/r1"


def test_time_round_trip_keeps_microseconds() -> None:
    ts = 1_700_000_000.123456
    assert abs(manifest.parse_time(manifest.format_time(ts)) - ts) < 1e-6


def test_finalize_writes_verified_manifest(tmp_path: Path) -> None:
    run_dir = tmp_path / "digits"
    payload = os.urandom(4096)
    write(run_dir / "node-0" / "checkpoints" / "step-000002.pt", payload)
    write(run_dir / "node-0" / "checkpoints" / "step-000001.pt", b"old", mtime=1)
    write(run_dir / "node-1" / "metrics.json", b"{}")
    write(run_dir / "summary.txt", b"done")
    summary = finalize(run_dir)
    doc = json.loads((run_dir / "manifest.json").read_text())
    assert summary.files == 4 == len(doc["files"])
    assert summary.total_bytes == 4096 + 3 + 2 + 4 == doc["totalBytes"]
    assert summary.newest_checkpoint == str(run_dir.resolve() / "node-0" / "checkpoints" / "step-000002.pt")
    assert summary.manifest == str(run_dir.resolve() / "manifest.json")
    assert summary.store_uri == run_dir.resolve().as_uri()
    by_path = {f["path"]: f for f in doc["files"]}
    assert by_path["node-0/checkpoints/step-000002.pt"]["sha256"] == hashlib.sha256(payload).hexdigest()
    assert by_path["node-1/metrics.json"]["rank"] == "node-1" and by_path["summary.txt"]["rank"] == ""
    assert manifest.verify(run_dir, doc) == []
    # The manifest catches corruption, and a second finalize does not list the manifest itself.
    write(run_dir / "node-1" / "metrics.json", b"[]")
    assert manifest.verify(run_dir, doc) == ["node-1/metrics.json: sha256 mismatch"]
    assert finalize(run_dir).files == 4
    assert summary.to_status()["newestCheckpoint"].endswith("step-000002.pt")


def test_pvc_store_in_local_mode(tmp_path: Path) -> None:
    """A pvc:// store maps to a local directory with the same per-run, per-rank layout as on the claim."""
    root = tmp_path / "stores"
    rank_dir = local_artifact_dir("pvc://checkpoints/team", "r1", "node", 1, root)
    assert rank_dir == root / "pvc" / "checkpoints" / "team" / "r1" / "node-1"
    write(rank_dir / "checkpoints" / "step-5" / "w.bin", b"weights")
    write(rank_dir / "checkpoints" / "step-5" / "_COMPLETE", b"")
    summary = finalize(local_run_dir("pvc://checkpoints/team", "r1", root))
    assert summary.files == 2 and summary.total_bytes == 7
    assert summary.newest_checkpoint is not None and summary.newest_checkpoint.endswith("node-1/checkpoints/step-5")
    doc = json.loads(Path(summary.manifest).read_text())
    assert manifest.verify(Path(summary.manifest).parent, doc) == []
    assert local_run_dir("file:///data/store", "r1", root) == Path("/data/store/r1")
    assert local_run_dir(None, "r1", root) == root / "r1"


def test_checkpoint_record_names_the_newest_checkpoint_with_its_digest() -> None:
    t = manifest.format_time

    def entry(path: str, sha: str, at: float, size: int = 10) -> manifest.Entry:
        return manifest.Entry(path, size, sha, path.split("/", 1)[0], t(at))

    assert manifest.checkpoint_record(manifest.manifest_document([entry("node-0/model.pt", "a" * 64, 1.0)])) is None
    files = [entry("node-0/checkpoints/step-000100.pt", "b" * 64, 10.0), entry("node-0/logs.txt", "c" * 64, 50.0)]
    record = manifest.checkpoint_record(manifest.manifest_document(files))
    assert record == {"path": "node-0/checkpoints/step-000100.pt", "step": 100, "time": t(10.0), "sha256": "b" * 64,
                      "bytes": 10}  # fmt: skip
    # A directory checkpoint: the digest of its sha256sum-style listing, so it names exactly that set of files.
    shards = [
        entry("node-1/checkpoints/step-000150/b.bin", "2" * 64, 15.0, 5),
        entry("node-1/checkpoints/step-000150/a.bin", "1" * 64, 14.0, 7),
        entry("node-1/checkpoints/step-000150/_COMPLETE", "3" * 64, 16.0, 0),
    ]
    record = manifest.checkpoint_record(manifest.manifest_document(files + shards))
    listing = f"{'3' * 64}  _COMPLETE\n{'1' * 64}  a.bin\n{'2' * 64}  b.bin\n"
    assert record is not None and record["path"] == "node-1/checkpoints/step-000150" and record["step"] == 150
    assert record["sha256"] == hashlib.sha256(listing.encode()).hexdigest() and record["bytes"] == 12
    assert record["time"] == t(16.0)
    unnumbered = [entry("node-0/checkpoints/last.pt", "d" * 64, 99.0)]
    assert manifest.checkpoint_record(manifest.manifest_document(unnumbered))["step"] is None  # type: ignore[index]
