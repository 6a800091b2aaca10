"""Artifact store URIs (`pvc://`, `s3://`, `file://`) and the per-run, per-rank layout inside them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Scheme = Literal["pvc", "s3", "file"]
SCHEMES: tuple[Scheme, ...] = ("pvc", "s3", "file")
# Per-rank manifests live beside the rank directories, so a rank's own files can never collide with them.
MANIFESTS_DIR = "_manifests"
MANIFEST_FILE = "manifest.json"
# Archived logs of the run's ranks (`logs/attempt-<n>/<rank>.log`), beside the rank directories like the manifests.
LOGS_DIR = "logs"
_RANK = re.compile(r"^[a-z]+-[0-9]+$")


@dataclass(frozen=True)
class StoreURI:
    """A parsed store URI: `scheme://location/prefix`; `location` is the claim, the bucket or empty for file://."""

    scheme: Scheme
    location: str
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> StoreURI:
        """Parse `pvc://CLAIM[/prefix]`, `s3://BUCKET[/prefix]` or `file://PATH`; raises ValueError otherwise."""
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in SCHEMES:
            raise ValueError(f"unsupported artifact store {uri!r}: expected pvc://, s3:// or file://")
        if scheme == "file":
            # file:///abs/path and file://rel/path both name a local directory.
            return cls("file", "", rest.rstrip("/") or "/")
        location, _, prefix = rest.partition("/")
        if not location:
            raise ValueError(f"artifact store {uri!r} names no {'claim' if scheme == 'pvc' else 'bucket'}")
        return cls(scheme, location, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        """`prefix/part/...` without leading or doubled slashes (an object key or a sub-path)."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def uri(self, *parts: str) -> str:
        """The URI of `parts` below this store's prefix."""
        if self.scheme == "file":
            base = self.prefix.rstrip("/")
            tail = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
            return f"file://{base}/{tail}" if tail else f"file://{self.prefix}"
        key = self.key(*parts)
        return f"{self.scheme}://{self.location}/{key}" if key else f"{self.scheme}://{self.location}"

    def run(self, run_name: str) -> StoreURI:
        """This store narrowed to one run's directory (`<prefix>/<run>`)."""
        if self.scheme == "file":
            return StoreURI("file", "", f"{self.prefix.rstrip('/')}/{run_name}")
        return StoreURI(self.scheme, self.location, self.key(run_name))


def rank_name(role: str, index: int | str) -> str:
    """The directory of one replica inside a run's prefix: `<role>-<index>`, e.g. `node-0`."""
    return f"{role}-{index}"


def is_rank_name(name: str) -> bool:
    """Whether a path component is a rank directory (`<role>-<index>`)."""
    return bool(_RANK.match(name))


def manifest_key(run_prefix: str, rank: str) -> str:
    """Object key of one rank's manifest inside a run's prefix."""
    return "/".join(p for p in (run_prefix.strip("/"), MANIFESTS_DIR, f"{rank}.json") if p)
