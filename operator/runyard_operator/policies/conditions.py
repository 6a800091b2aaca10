"""Every TrainingRun condition built one way: the lifecycle's kstatus-compatible set and plugins' own, merged by type."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from runyard_operator.timestamps import format_time

# Typed conditions, each True in exactly the phases listed; kstatus reads Reconciling/Stalled and observedGeneration.
RECONCILING = "Reconciling"
_TRUE_IN: dict[str, frozenset[str]] = {
    "Running": frozenset({"Running"}),
    "Suspended": frozenset({"Suspended"}),
    "Restarting": frozenset({"Restarting"}),
    "Queued": frozenset({"Queued"}),
    "Succeeded": frozenset({"Succeeded"}),
    "Failed": frozenset({"Failed"}),
    # In progress: kstatus reports InProgress while Reconciling is True.
    RECONCILING: frozenset({"Pending", "Queued", "Starting", "Restarting"}),
    # A failed run will not progress without a change to it: kstatus reports Failed.
    "Stalled": frozenset({"Failed"}),
    "Ready": frozenset({"Running", "Succeeded"}),
}
LIFECYCLE_TYPES = frozenset(_TRUE_IN)


def condition(
    ctype: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One condition; its lastTransitionTime is kept from `previous` unless its status flips."""
    same = previous is not None and previous.get("status") == status
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": previous.get("lastTransitionTime") if previous is not None and same else format_time(now),
        "observedGeneration": generation,
    }


def find(conditions: Sequence[Mapping[str, Any]], ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


def merge(conditions: Sequence[Mapping[str, Any]], updates: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The CRD's map-list semantics (keyed by type): an update replaces its type in place, a new type is appended."""
    out = [dict(c) for c in conditions]
    at = {str(c.get("type")): i for i, c in enumerate(out)}
    for update in updates:
        ctype = str(update.get("type"))
        if ctype in at:
            out[at[ctype]] = dict(update)
        else:
            at[ctype] = len(out)
            out.append(dict(update))
    return out


def compute(
    previous: Sequence[Mapping[str, Any]],
    phase: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """All lifecycle conditions for `phase`; lastTransitionTime only moves when a condition's status flips."""
    before = {str(c.get("type")): c for c in previous}
    out: list[dict[str, Any]] = []
    for ctype, phases in _TRUE_IN.items():
        status = "True" if phase in phases else "False"
        old = before.get(ctype)
        if old is None and status == "False" and ctype not in ("Succeeded", "Failed", "Ready"):
            continue  # keep the list short: absent means False for the situational conditions
        kept = old is not None and old.get("status") == status
        if status == "True":
            why, text = reason, message
        else:
            why, text = (str(old.get("reason")) if old is not None and kept else f"Not{ctype}"), ""
        out.append(condition(ctype, status, why, text, generation, now, old))
    # Conditions owned by plugins (e.g. GPUsIdle) are theirs to change: carry them over untouched.
    out += [dict(c) for t, c in before.items() if t not in _TRUE_IN]
    return out
