"""The one way the operator writes and reads times (status, conditions, GPU intervals, Leases, Events): RFC 3339, UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

# "s" for status and condition times (what kubectl and kstatus show), "ms" where resuming from status recomputes
# intervals (GPU accounting: whole seconds would drift), "us" for the API's MicroTime fields (Lease, Event).
Precision = Literal["s", "ms", "us"]


def format_time(when: datetime | float, precision: Precision = "s") -> str:
    """`2026-01-01T00:00:00Z` (or with `.123`/`.123456` before the Z) from a datetime or a Unix timestamp."""
    moment = datetime.fromtimestamp(when, UTC) if isinstance(when, int | float) else when.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if precision == "ms":
        text += f".{moment.microsecond // 1000:03d}"
    elif precision == "us":
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from any of the forms above (or another RFC 3339 offset); None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_epoch(value: Any) -> float | None:
    """`parse_time` as a Unix timestamp (the GPU accounting's clock)."""
    moment = parse_time(value)
    return moment.timestamp() if moment is not None else None
