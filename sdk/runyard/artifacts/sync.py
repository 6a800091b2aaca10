"""Artifact sync sidecar: copies a rank's artifact directory to an S3 store periodically and once more on SIGTERM.

Run as `python -m runyard.artifacts.sync --src DIR --dest s3://BUCKET/PREFIX/RUN/RANK --interval N`. Each pass
uploads the files whose size or modification time changed since they were last uploaded (sha256 recorded as
object metadata), completion markers of directory checkpoints after every other file, and then rewrites the
rank's manifest `s3://BUCKET/PREFIX/RUN/_manifests/RANK.json`. Passes start every `--interval` seconds, so a rank
killed without warning loses at most what it wrote in the last interval; SIGTERM (the kubelet stopping the
sidecar after the trainer exits, or the pod being deleted) triggers one final pass before exiting.

Files removed locally stay in the store: a restarted pod starts with an empty directory, and mirroring that
would delete the checkpoint it is about to resume from. Imports only the standard library and boto3.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any

from runyard.artifacts import checkpoints, manifest
from runyard.artifacts.store import StoreURI, manifest_key

logger = logging.getLogger("runyard.artifacts.sync")


def _s3() -> Any:
    # Imported after the signal handlers are installed: importing boto3 takes long enough for an early SIGTERM
    # (a pod deleted right after it started) to find no handler and skip the final pass.
    from runyard.artifacts import s3

    return s3


class Syncer:
    """Incremental one-way sync of a local directory to `<run prefix>/<rank>/` in a bucket."""

    def __init__(self, src: str | Path, dest: str, client: Any, rank: str | None = None) -> None:
        target = StoreURI.parse(dest)
        if target.scheme != "s3":
            raise ValueError(f"--dest must be an s3:// URI, got {dest!r}")
        self.src = Path(src)
        self.client = client
        self.bucket = target.location
        path = PurePosixPath(target.prefix)
        self.rank = rank or path.name
        if not self.rank or not target.prefix:
            raise ValueError(f"--dest {dest!r} must end in the rank's directory, e.g. s3://bucket/run/node-0")
        self.rank_prefix = target.prefix
        self.run_prefix = str(path.parent) if str(path.parent) != "." else ""
        self.manifest_key = manifest_key(self.run_prefix, self.rank)
        self.run_uri = f"s3://{self.bucket}/{self.run_prefix}".rstrip("/")
        # rel path -> (size, mtime as written in the manifest): what the store already holds.
        self._uploaded: dict[str, tuple[int, str]] = {}
        self._entries: dict[str, manifest.Entry] = {}
        self._manifest_written = False

    def load_remote_manifest(self) -> None:
        """Seed the state from the rank's manifest, so a restarted sidecar does not upload everything again."""
        try:
            doc = _s3().get_json(self.client, self.bucket, self.manifest_key)
        except _s3().STORE_ERRORS as err:
            logger.warning("cannot read %s: %s; uploading everything", self.manifest_key, err)
            return
        for entry in manifest.entries_of(doc or {}):
            rel = entry.path.removeprefix(f"{self.rank}/")
            self._entries[rel] = entry
            self._uploaded[rel] = (entry.size, entry.time)

    def sync_once(self) -> bool:
        """One pass; True when every changed file reached the store. Never raises for store or file errors."""
        if not self.src.is_dir():
            return True
        changed: list[tuple[str, int, str]] = []
        for rel, st in manifest.walk_files(self.src):
            state = (st.st_size, manifest.format_time(st.st_mtime))
            if self._uploaded.get(rel) != state:
                changed.append((rel, *state))
        # Markers last: a directory checkpoint must never look complete in the store before its files are there.
        changed.sort(key=lambda item: (checkpoints.is_marker(item[0]), item[0]))
        failed_dirs: set[str] = set()
        ok = True
        uploaded = 0
        for rel, size, mtime in changed:
            parent = str(PurePosixPath(rel).parent)
            if checkpoints.is_marker(rel) and parent in failed_dirs:
                ok = False
                continue
            if self._upload(rel, size, mtime):
                uploaded += 1
            else:
                ok = False
                failed_dirs.add(parent)
        if uploaded or not self._manifest_written:
            ok = self._write_manifest() and ok
        if uploaded:
            logger.info("synced %d file(s) to s3://%s/%s", uploaded, self.bucket, self.rank_prefix)
        return ok

    def _upload(self, rel: str, size: int, mtime: str) -> bool:
        path = self.src / rel
        try:
            digest = manifest.sha256_file(path)
            _s3().upload_file(self.client, path, self.bucket, f"{self.rank_prefix}/{rel}", digest)
            st = path.stat()
        except FileNotFoundError:
            return True  # removed since the scan (checkpoint rotation): nothing to keep
        except _s3().STORE_ERRORS as err:
            logger.warning("upload of %s failed: %s; retrying next pass", rel, err)
            return False
        if (st.st_size, manifest.format_time(st.st_mtime)) != (size, mtime):
            # Still being written: what was uploaded may be a torn copy, so do not record it as stored.
            return True
        self._uploaded[rel] = (size, mtime)
        self._entries[rel] = manifest.Entry(f"{self.rank}/{rel}", size, digest, self.rank, mtime)
        return True

    def _write_manifest(self) -> bool:
        doc = manifest.manifest_document(self._entries.values(), store_uri=self.run_uri, rank=self.rank)
        try:
            _s3().put_json(self.client, self.bucket, self.manifest_key, doc)
        except _s3().STORE_ERRORS as err:
            logger.warning("writing %s failed: %s; retrying next pass", self.manifest_key, err)
            return False
        self._manifest_written = True
        return True


class _Stop:
    """Set by SIGTERM/SIGINT; the main loop polls it (an Event set from a signal handler can deadlock)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: final sync", signum)
        self.requested = True

    def sleep_until(self, deadline: float) -> None:
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m runyard.artifacts.sync", description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, help="Local artifact directory (read only).")
    p.add_argument("--dest", required=True, help="s3://BUCKET/PREFIX/RUN/RANK: where this rank's files go.")
    p.add_argument("--interval", type=float, default=30.0, help="Seconds between the starts of two passes.")
    p.add_argument("--rank", default=None, help="Rank name recorded in the manifest (default: last part of --dest).")
    p.add_argument("--endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL).")
    p.add_argument("--region", default=None, help="Region (default: $AWS_REGION).")
    p.add_argument("--once", action="store_true", help="One pass, then exit (local runs, debugging).")
    args = p.parse_args(argv)
    if args.interval <= 0:
        p.error("--interval must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 when the final pass stored everything, 1 otherwise."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s artifact-sync: %(message)s")
    args = parse_args(argv)
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    syncer = Syncer(args.src, args.dest, _s3().client(args.endpoint, args.region), rank=args.rank)
    syncer.load_remote_manifest()
    logger.info("syncing %s to %s every %gs", args.src, args.dest, args.interval)
    next_at = time.monotonic()
    while not args.once and not stop.requested:
        syncer.sync_once()
        # Fixed cadence from pass starts (not sleep-after-pass), so the loss bound stays one interval.
        next_at = max(next_at + args.interval, time.monotonic())
        stop.sleep_until(next_at)
    ok = syncer.sync_once()
    logger.info("final sync %s", "complete" if ok else "incomplete")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
