"""kstatus-compatible conditions for a TrainingRun phase, keeping transition times stable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# Typed conditions, each True in exactly the phases listed; kstatus reads Reconciling/Stalled and observedGeneration.
_TRUE_IN: dict[str, frozenset[str]] = {
    "Running": frozenset({"Running"}),
    "Suspended": frozenset({"Suspended"}),
    "Restarting": frozenset({"Restarting"}),
    "Queued": frozenset({"Queued"}),
    "Succeeded": frozenset({"Succeeded"}),
    "Failed": frozenset({"Failed"}),
    # In progress: kstatus reports InProgress while Reconciling is True.
    "Reconciling": frozenset({"Pending", "Queued", "Starting", "Restarting"}),
    # A failed run will not progress without a change to it: kstatus reports Failed.
    "Stalled": frozenset({"Failed"}),
    "Ready": frozenset({"Running", "Succeeded"}),
}


def compute(
    previous: Sequence[Mapping[str, Any]],
    phase: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """All conditions for `phase`; lastTransitionTime only moves when a condition's status flips."""
    before = {str(c.get("type")): c for c in previous}
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: list[dict[str, Any]] = []
    for ctype, phases in _TRUE_IN.items():
        status = "True" if phase in phases else "False"
        old = before.get(ctype)
        if old is None and status == "False" and ctype not in ("Succeeded", "Failed", "Ready"):
            continue  # keep the list short: absent means False for the situational conditions
        transition = old.get("lastTransitionTime") if old and old.get("status") == status else stamp
        out.append(
            {
                "type": ctype,
                "status": status,
                "reason": reason
                if status == "True"
                else (str(old.get("reason")) if old and old.get("status") == status else f"Not{ctype}"),
                "message": message if status == "True" else "",
                "lastTransitionTime": transition,
                "observedGeneration": generation,
            }
        )
    # Conditions owned by plugins (e.g. GPUsIdle) are theirs to change: carry them over untouched.
    out += [dict(c) for t, c in before.items() if t not in _TRUE_IN]
    return out
