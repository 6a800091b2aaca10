"""Listening ports are picked outside the kernel's ephemeral range and are free when handed out (runyard.ports)."""

from __future__ import annotations

import random
import socket

import pytest

from runyard import ports


def test_the_ephemeral_range_is_read_from_the_sysctl_text_or_falls_back_to_linux_default() -> None:
    assert ports.ephemeral_range("32768\t60999\n") == (32768, 60999)
    assert ports.ephemeral_range("1024 65535") == (1024, 65535)
    for bad in ("", "garbage", "60999 32768", "0 100", "1 70000"):
        assert ports.ephemeral_range(bad) == ports.DEFAULT_EPHEMERAL, bad
    live = ports.ephemeral_range()
    assert 0 < live[0] <= live[1] <= 65535


def test_listen_bands_leave_out_the_ephemeral_range_and_the_well_known_ports() -> None:
    assert ports.listen_bands((32768, 60999)) == [range(10000, 32768), range(61000, 65536)]
    assert ports.listen_bands((49152, 65535)) == [range(10000, 49152)]
    assert ports.listen_bands((1024, 40000)) == [range(40001, 65536)]
    # Every port handed to outbound connections: nothing is left outside, so the whole non-privileged range is used.
    assert ports.listen_bands((1024, 65535)) == [range(10000, 65536)]


def test_free_base_never_returns_an_ephemeral_or_a_bound_port(monkeypatch: pytest.MonkeyPatch) -> None:
    low, high = ports.ephemeral_range()
    for _ in range(200):
        port = ports.free_port()
        assert not low <= port <= high and port >= ports.LOWEST
    offsets = [0, 1, 100, 201]
    base = ports.free_base(offsets)
    assert all(ports.is_free(base + o) and not low <= base + o <= high for o in offsets)
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports.free_port()))
        taken = held.getsockname()[1]
        assert not ports.is_free(taken)
        # A random source that proposes the held port first: the pick moves on to a free one.
        proposals = iter([taken, taken + 1 if ports.is_free(taken + 1) else ports.free_port()])
        rng = random.Random(7)
        monkeypatch.setattr(rng, "randrange", lambda start, stop: next(proposals))
        assert ports.free_base([0], rng=rng) != taken


def test_free_base_rejects_empty_or_negative_offsets() -> None:
    with pytest.raises(ValueError, match="offsets"):
        ports.free_base([])
    with pytest.raises(ValueError, match="offsets"):
        ports.free_base([-1, 0])
