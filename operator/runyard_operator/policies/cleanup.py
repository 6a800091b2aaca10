"""Clean-up policy: cleanPodPolicy when a run ends, and ttlSecondsAfterFinished, after which the run deletes itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from runyard_operator.observe import JobView, PodView
from runyard_operator.policies.draft import Observed, StatusDraft
from runyard_operator.policies.model import Decision, RunFacts


def jobs_to_clean(facts: RunFacts, jobs: Sequence[JobView], live: Sequence[PodView]) -> list[str]:
    """Jobs to delete when the run ends: cleanPodPolicy All removes every Job, Running those with live pods.

    A failed Job needs nothing: the Job controller terminates its remaining pods itself.
    """
    if facts.clean_pod_policy == "All":
        return [j.name for j in jobs]
    if facts.clean_pod_policy == "Running":
        busy = {p.role for p in live if not p.deleting}
        return [j.name for j in jobs if j.role in busy and not j.failed_condition]
    return []


def on_end(facts: RunFacts, seen: Observed, decision: Decision, now: datetime) -> None:
    """The run ends now: nothing more is created, its replicas are cleaned up, the TTL starts."""
    decision.create_children = False
    decision.delete_jobs = [*decision.delete_jobs, *jobs_to_clean(facts, seen.current_jobs, seen.live_pods)]
    if facts.ttl_seconds_after_finished is not None:
        decision.requeue_at = now + timedelta(seconds=facts.ttl_seconds_after_finished)


def after_end(facts: RunFacts, seen: Observed, draft: StatusDraft, decision: Decision, now: datetime) -> None:
    """A finished run only cleans up and, with a TTL, deletes itself; its status stays as it was."""
    draft.gpus = 0
    draft.ready_replicas = 0
    draft.conditions = list(draft.conditions or [])
    decision.delete_jobs = jobs_to_clean(facts, [*seen.current_jobs, *seen.stale_jobs], seen.live_pods)
    if facts.ttl_seconds_after_finished is not None and draft.completion_time:
        expiry = draft.completion_time + timedelta(seconds=facts.ttl_seconds_after_finished)
        if now >= expiry:
            decision.delete_run = True
        else:
            decision.requeue_at = expiry
