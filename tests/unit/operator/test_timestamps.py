"""The one timestamp helper: RFC 3339 in UTC, whole seconds for status, ms for GPU intervals, us for MicroTime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from runyard_operator.timestamps import format_time, parse_epoch, parse_time

MOMENT = datetime(2026, 11, 26, 12, 0, 5, 123456, tzinfo=UTC)


def test_formats() -> None:
    assert format_time(MOMENT) == "2026-11-26T12:00:05Z"
    assert format_time(MOMENT, "ms") == "2026-11-26T12:00:05.123Z"
    assert format_time(MOMENT, "us") == "2026-11-26T12:00:05.123456Z"
    assert format_time(MOMENT.timestamp(), "ms") == "2026-11-26T12:00:05.123Z"
    assert format_time(MOMENT.astimezone(timezone(timedelta(hours=2)))) == "2026-11-26T12:00:05Z"


@pytest.mark.parametrize("precision", ["s", "ms", "us"])
def test_round_trip(precision: str) -> None:
    parsed = parse_time(format_time(MOMENT, precision))  # type: ignore[arg-type]
    assert parsed is not None and parsed.tzinfo is not None
    assert abs((parsed - MOMENT).total_seconds()) < 1


def test_parse_accepts_offsets_and_rejects_garbage() -> None:
    assert parse_time("2026-11-26T14:00:05+02:00") == datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)
    assert parse_time("2026-11-26T12:00:05") == datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)  # naive means UTC
    for bad in (None, "", "yesterday", 0):
        assert parse_time(bad) is None
    assert parse_epoch("1970-01-01T00:00:01.500Z") == 1.5
