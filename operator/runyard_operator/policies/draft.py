"""The typed status draft the lifecycle rules edit, and the run's children split by attempt; dicts only at the edges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypedDict

from runyard.api import Phase
from runyard_operator.observe import JobView, PodView
from runyard_operator.timestamps import format_time, parse_time


class FailureInfo(TypedDict, total=False):
    """`status.failure`: which replica failed and why (keys present only when known)."""

    role: str
    index: int
    pod: str
    reason: str
    message: str
    container: str
    exitCode: int
    category: str
    node: str
    rank: int
    logTail: str


@dataclass
class StatusDraft:
    """The status fields the lifecycle owns, typed; None means absent. Any other field is carried in `other` untouched."""

    phase: str | None = None
    message: str | None = None
    observed_generation: int | None = None
    total_replicas: int | None = None
    ready_replicas: int | None = None
    restarts: int | None = None
    nodes: list[str] | None = None
    gpus: int | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    failure: FailureInfo | None = None
    avoid_nodes: list[str] | None = None
    scheduling_message: str | None = None
    conditions: list[dict[str, Any]] | None = None
    # Replicas stopped by a suspension or preemption wait to resume: {"attempt", "reason", "time"}.
    stopped: dict[str, Any] | None = None
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> StatusDraft:
        raw = dict(status)
        draft = cls(
            phase=_str(raw.pop("phase", None)),
            message=_str(raw.pop("message", None)),
            observed_generation=_int(raw.pop("observedGeneration", None)),
            total_replicas=_int(raw.pop("totalReplicas", None)),
            ready_replicas=_int(raw.pop("readyReplicas", None)),
            restarts=_int(raw.pop("restarts", None)),
            nodes=[str(n) for n in nodes] if (nodes := raw.pop("nodes", None)) is not None else None,
            gpus=_int(raw.pop("gpus", None)),
            start_time=parse_time(raw.pop("startTime", None)),
            completion_time=parse_time(raw.pop("completionTime", None)),
            failure=FailureInfo(**failure) if (failure := raw.pop("failure", None)) is not None else None,  # type: ignore[typeddict-item]
            avoid_nodes=[str(n) for n in avoid] if (avoid := raw.pop("avoidNodes", None)) is not None else None,
            scheduling_message=_str(raw.pop("schedulingMessage", None)),
            conditions=[dict(c) for c in conds] if (conds := raw.pop("conditions", None)) is not None else None,
            stopped=dict(stop) if isinstance(stop := raw.pop("stopped", None), Mapping) else None,
        )
        draft.other = raw
        return draft

    def to_status(self) -> dict[str, Any]:
        own: dict[str, Any] = {
            "phase": self.phase,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "totalReplicas": self.total_replicas,
            "readyReplicas": self.ready_replicas,
            "restarts": self.restarts,
            "nodes": list(self.nodes) if self.nodes is not None else None,
            "gpus": self.gpus,
            "startTime": format_time(self.start_time) if self.start_time else None,
            "completionTime": format_time(self.completion_time) if self.completion_time else None,
            "failure": dict(self.failure) if self.failure is not None else None,
            "avoidNodes": list(self.avoid_nodes) if self.avoid_nodes is not None else None,
            "schedulingMessage": self.scheduling_message,
            "conditions": [dict(c) for c in self.conditions] if self.conditions is not None else None,
            "stopped": dict(self.stopped) if self.stopped is not None else None,
        }
        out = dict(self.other) | {k: v for k, v in own.items() if v is not None}
        if self.stopped is None:
            out.pop("stopped", None)
        return out

    def resumed_step(self, attempt: int) -> int | None:
        """The checkpoint step `attempt`'s replicas were handed (`status.resumedFrom`), when known."""
        found = self.other.get("resumedFrom")
        if not isinstance(found, Mapping) or found.get("attempt") != attempt:
            return None
        step = found.get("step")
        return step if isinstance(step, int) else None

    @property
    def last_checkpoint_step(self) -> int | None:
        """The step of `status.lastCheckpoint` (written by the artifacts plugin), when it has one."""
        found = self.other.get("lastCheckpoint")
        step = found.get("step") if isinstance(found, Mapping) else None
        return step if isinstance(step, int) else None


@dataclass(frozen=True)
class Observed:
    """The run's children as one decision sees them, split by the attempt its status records."""

    phase_before: str  # the phase the previous status recorded ("" for a new run)
    attempt: int
    jobs: Sequence[JobView]  # every Job, of other attempts and being deleted included
    current_jobs: list[JobView]  # this attempt's, not being deleted
    stale_jobs: list[JobView]  # other attempts', not being deleted yet
    current_pods: list[PodView]
    live_pods: list[PodView]  # this attempt's pods that are pending or running and not being deleted
    # The end of failed pods' trainer logs (pod name -> raw text), read once by the controller for a new failure.
    log_tails: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def split(
        cls,
        phase_before: str,
        attempt: int,
        jobs: Sequence[JobView],
        pods: Sequence[PodView],
        log_tails: Mapping[str, str] | None = None,
    ) -> Observed:
        current_pods = [p for p in pods if p.attempt == attempt]
        # Suspending a Job deletes its pods without counting them as failed (Kubernetes 1.36, seen on the real node):
        # the Job is merely suspended, and re-admitted as it is it would start replicas without RUNYARD_RESUME_FROM.
        # One whose replicas ran (pods that got a node are still stopping, or the run was Starting/Running) is
        # therefore `stopped` too, like one the podFailurePolicy failed (policies/stop.py replaces it).
        ran = {p.owner_uid for p in current_pods if p.node or p.start_time}
        jobs = [
            replace(j, stopped=True)
            if not j.stopped
            and j.attempt == attempt
            and j.suspended
            and j.suspended_since
            and (j.uid in ran or phase_before in (Phase.STARTING.value, Phase.RUNNING.value))
            else j
            for j in jobs
        ]
        return cls(
            phase_before=phase_before,
            attempt=attempt,
            jobs=jobs,
            current_jobs=[j for j in jobs if j.attempt == attempt and not j.deleting],
            stale_jobs=[j for j in jobs if j.attempt != attempt and not j.deleting],
            current_pods=current_pods,
            live_pods=[p for p in current_pods if not p.deleting and p.phase in ("Pending", "Running")],
            log_tails=dict(log_tails or {}),
        )

    def started_pods(self) -> list[PodView]:
        """This attempt's replicas that got a node and ran (finished ones count: Complete trails them)."""
        return [p for p in self.current_pods if p.node and p.phase in ("Running", "Succeeded")]


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
