"""Listening ports picked outside the kernel's ephemeral range, so no outbound connection can take one before its bind.

A port the kernel handed out for `bind(("127.0.0.1", 0))` is an ephemeral port: once that probe socket closes, any
process's next outbound connection may be given the same number, and the server meant to listen there fails with
"address already in use". On a busy machine (two test tiers, a cluster's clients) that happens within seconds, so
listening ports come from below (or above) the range the kernel assigns to outbound connections, at random to keep
concurrent pickers apart. This module is stdlib-only: hack/localcluster.py loads it by path, without the SDK installed.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Sequence
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default; used where the file cannot be read (other kernels, containers without /proc/sys).
DEFAULT_EPHEMERAL = (32768, 60999)
# Below this are well-known and registered service ports that daemons on the host may hold.
LOWEST = 10000
HIGHEST = 65535


def ephemeral_range(text: str | None = None) -> tuple[int, int]:
    """The kernel's range for outbound connections' local ports, from `text` or the live sysctl."""
    if text is None:
        try:
            text = EPHEMERAL_RANGE_FILE.read_text()
        except OSError:
            return DEFAULT_EPHEMERAL
    parts = text.split()
    try:
        low, high = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return DEFAULT_EPHEMERAL
    return (low, high) if 0 < low <= high <= HIGHEST else DEFAULT_EPHEMERAL


def listen_bands(ephemeral: tuple[int, int]) -> list[range]:
    """The port ranges outside `ephemeral` (and above LOWEST) that listeners may use, widest first."""
    low, high = ephemeral
    bands = [range(LOWEST, min(low, HIGHEST + 1)), range(max(high + 1, LOWEST), HIGHEST + 1)]
    bands = [b for b in bands if len(b) > 0]
    # A kernel configured to hand out (nearly) every port leaves no room: fall back to the whole non-privileged range.
    return sorted(bands, key=len, reverse=True) or [range(LOWEST, HIGHEST + 1)]


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_base(offsets: Sequence[int], attempts: int = 200, rng: random.Random | None = None) -> int:
    """A base port such that `base + o` for every offset lies outside the ephemeral range and is free now."""
    if not offsets or min(offsets) < 0:
        raise ValueError(f"offsets must be non-negative and not empty, got {list(offsets)}")
    span = max(offsets) + 1
    pick = rng or random.SystemRandom()
    bands = [b for b in listen_bands(ephemeral_range()) if len(b) >= span]
    if not bands:
        raise OSError(f"no band of {span} ports lies outside the ephemeral range {ephemeral_range()}")
    for _ in range(attempts):
        band = pick.choices(bands, weights=[len(b) for b in bands])[0]
        base = pick.randrange(band.start, band.stop - span + 1)
        if all(is_free(base + o) for o in offsets):
            return base
    raise OSError(f"no free ports found outside the ephemeral range for offsets {list(offsets)} in {attempts} tries")


def free_block(size: int = 1) -> int:
    """The first of `size` consecutive ports, all outside the ephemeral range and free now."""
    return free_base(range(size))


def free_port() -> int:
    """One port outside the ephemeral range that is free now."""
    return free_block(1)
