"""Shared builders for policy tests: run facts, JobView/PodView as observe.py makes them, and observed children."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from runyard_operator.observe import JobView, PodView, Termination
from runyard_operator.policies import lifecycle as lc
from runyard_operator.policies.draft import Observed, StatusDraft

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
T0 = lc.fmt_time(NOW - timedelta(seconds=30))

FACTS = lc.RunFacts(
    name="r", generation=3, framework="pytorch", replicas={"node": 2}, success_roles=("node",), backoff_limit=2
)


def job(role: str = "node", attempt: int = 0, **kw: Any) -> JobView:
    base = {
        "name": f"r-{role}",
        "uid": f"j-{role}-{attempt}",
        "run_uid": "u",
        "role": role,
        "attempt": attempt,
        "suspended": False,
        "active": 2,
        "ready": 2,
        "succeeded": 0,
        "failed": 0,
        "complete": False,
        "failed_condition": False,
        "failure_reason": "",
        "failure_message": "",
        "deleting": False,
    }
    return JobView(**{**base, **kw})


def pod(index: int, phase: str = "Running", attempt: int = 0, **kw: Any) -> PodView:
    base = {
        "name": f"r-node-{index}-abc",
        "uid": f"p{index}-{attempt}",
        "run_uid": "u",
        "role": "node",
        "attempt": attempt,
        "index": index,
        "phase": phase,
        "node": f"n{index}",
        "ready": phase == "Running",
        "unschedulable_message": "",
        "termination": None,
        "gpus": 8,
        "deleting": False,
        "start_time": T0,
        "reason": "",
        "message": "",
    }
    return PodView(**{**base, **kw})


def failed_pod(index: int, code: int, reason: str = "Error", attempt: int = 0) -> PodView:
    return pod(index, "Failed", attempt, ready=False, termination=Termination("trainer", code, reason, "boom"))


def seen(
    jobs: list[JobView] | None = None, pods: list[PodView] | None = None, phase: str = "Running", attempt: int = 0
) -> Observed:
    """The children as a decision in `phase` (the previous status') at `attempt` sees them."""
    return Observed.split(phase, attempt, jobs or [], pods or [])


def draft(**status: Any) -> StatusDraft:
    return StatusDraft.from_status(status)
