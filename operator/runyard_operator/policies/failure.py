"""Failure policy: which replica's failure decides, from durable facts, and whether it restarts the gang or ends the run."""

from __future__ import annotations

from collections.abc import Sequence

from runyard import constants as c
from runyard_operator.observe import JobView, PodView, Termination
from runyard_operator.policies import stop, triage
from runyard_operator.policies.draft import FailureInfo, Observed, StatusDraft
from runyard_operator.policies.model import (
    FAILED,
    REASON_BACKOFF,
    REASON_DEADLINE,
    REASON_DISRUPTED,
    REASON_EVICTED,
    REASON_JOB_DELETED,
    REASON_NODE_LOST,
    REASON_PREEMPTED,
    REASON_UNKNOWN,
    RESTARTING,
    RUNNING,
    STARTING,
    Decision,
    RunFacts,
    Verdict,
)
from runyard_operator.policies.pod_creation import created_after_a_peer_finished

# DisruptionTarget reasons (k8s.io/api/core/v1 DisruptionTarget reasons) as the retry policy names them.
DISRUPTIONS = {
    "EvictionByEvictionAPI": REASON_EVICTED,
    "TerminationByKubelet": REASON_EVICTED,
    "PreemptionByScheduler": REASON_PREEMPTED,
    "PreemptionByKubeScheduler": REASON_PREEMPTED,
    "DeletionByTaintManager": REASON_NODE_LOST,
    "DeletionByPodGC": REASON_NODE_LOST,
}


def pod_failure(pod: PodView) -> Termination | None:
    """Why one replica failed, from what its pod still shows: a disruption first, then its container's exit."""
    if pod.disruption:
        reason = DISRUPTIONS.get(pod.disruption, REASON_DISRUPTED)
        exit_code = pod.termination.exit_code if pod.termination else 0
        finished = pod.termination.finished_at if pod.termination else ""
        return Termination("", exit_code, reason, f"{pod.disruption}: {pod.message or 'pod disrupted'}", finished)
    if pod.phase != "Failed":
        return None
    if pod.termination and pod.termination.exit_code != 0:
        return pod.termination
    if pod.reason:  # evicted or lost pods end Failed without a container exit code
        return Termination("", 0, pod.reason, pod.message)
    return None


def failure_of(pods: Sequence[PodView], jobs: Sequence[JobView]) -> tuple[FailureInfo, int | None, str]:
    """The failure that decides: the first replica to fail (as its pod shows it), else what its Job recorded.

    A failed Job whose pods are gone or unseen still says why through its podFailurePolicy condition (exit code or
    disruption). A failure nothing records the cause of is `Unknown`: retryable, like infrastructure.
    """
    failed = [(p, t) for p in pods if (t := pod_failure(p)) is not None]
    # The first replica to fail is the cause, the others followed it (their peers vanished mid-collective). Within
    # the same second a replica killed by a signal comes first: a peer's "connection closed" is its consequence.
    failed.sort(
        key=lambda item: (
            item[1].finished_at or "~",
            not (item[1].signalled or not item[1].container),
            item[0].start_time,
            item[0].role,
            item[0].index,
        )
    )
    if failed:
        pod, term = failed[0]
        reason = term.reason or "Error"
        info = FailureInfo(
            role=pod.role,
            index=pod.index,
            pod=pod.name,
            reason=reason,
            message=term.message or f"exit code {term.exit_code}",
        )
        if term.container:
            info |= {"container": term.container, "exitCode": term.exit_code}
        if pod.node:
            info["node"] = pod.node
        return info, (term.exit_code if term.container else None), reason
    job = next((j for j in jobs if j.failed_condition), None)
    if job is None:
        return FailureInfo(reason=REASON_UNKNOWN, message="a replica failed"), None, REASON_UNKNOWN
    exit_code, recorded, pod_name = job.recorded_failure
    if recorded:
        info = FailureInfo(role=job.role, reason=recorded, message=job.failure_message)
        if pod_name:
            info["pod"] = pod_name
        if exit_code is not None:
            info |= {"container": c.CONTAINER_NAME, "exitCode": exit_code}
        return info, exit_code, recorded
    if job.failure_reason in (REASON_DEADLINE,):
        return (
            FailureInfo(role=job.role, reason=job.failure_reason, message=job.failure_message),
            None,
            job.failure_reason,
        )
    # BackoffLimitExceeded and the like say a pod failed, not why: the cause cannot be known any more.
    message = f"{job.failure_reason}: {job.failure_message}".strip(": ") + " (the failed pod's cause was not recorded)"
    return FailureInfo(role=job.role, reason=REASON_UNKNOWN, message=message), None, REASON_UNKNOWN


def deleted_roles(facts: RunFacts, seen: Observed, draft: StatusDraft) -> list[str]:
    """Roles whose Job of this attempt existed (replicas started) and is gone: someone deleted it.

    Not a Job the operator itself replaces because a suspension stopped its replicas (`status.stopped`).
    """
    if seen.phase_before not in (STARTING, RUNNING) or seen.stale_jobs or stop.resuming(draft, seen):
        return []
    return sorted(set(facts.replicas) - {j.role for j in seen.current_jobs})


def replaced_replica(seen: Observed, draft: StatusDraft) -> PodView | None:
    """A replica created after a peer finished, in a gang the status recorded as Running (all replicas had started).

    Such a pod replaces one that was removed mid-run (deleted, its node gone) when the watch never showed why; it is
    a disruption of a gang that ran, not the pods quota of a gang that never ran together (policies/pod_creation.py).
    """
    if seen.phase_before != RUNNING or stop.resuming(draft, seen):
        return None
    return created_after_a_peer_finished(seen.current_pods)


def decide(facts: RunFacts, seen: Observed, draft: StatusDraft, decision: Decision) -> Verdict | None:
    """A failed replica, failed Job or deleted Job of this attempt: a gang restart while retryable, else Failed."""
    # A Job whose replicas a suspension stopped failed on purpose (policies/stop.py replaces it).
    failed_jobs = [j for j in seen.current_jobs if j.failed_condition and not j.stopped]
    # Pods are watched directly: acting on a failed pod does not wait for the Job controller's own sync.
    failed_pods = [p for p in seen.current_pods if (p.phase == "Failed" and not p.deleting) or p.disruption]
    deleted = deleted_roles(facts, seen, draft)
    replaced = replaced_replica(seen, draft)
    if failed_jobs or failed_pods:
        failure, exit_code, reason = failure_of(seen.current_pods, failed_jobs or seen.current_jobs)
    elif replaced is not None:
        failure = FailureInfo(
            role=replaced.role,
            index=replaced.index,
            pod=replaced.name,
            reason=REASON_DISRUPTED,
            message=f"replica {replaced.role}-{replaced.index} was removed while the run was running and its "
            f"replacement {replaced.name} only started after a peer had finished: a partial gang cannot train",
        )
        exit_code, reason = None, REASON_DISRUPTED
    elif deleted:
        failure = FailureInfo(
            role=deleted[0],
            reason=REASON_JOB_DELETED,
            message=f"the Job of role {deleted[0]} was deleted while the run was {seen.phase_before.lower()}",
        )
        exit_code, reason = None, REASON_JOB_DELETED
    else:
        return None
    raw_log = seen.log_tails.get(failure.get("pod", ""))
    if raw_log:
        failure["logTail"] = triage.log_tail(raw_log)
    triage.triage(failure, facts.rank_layout)
    retryable = facts.retry.allows(exit_code, reason, failure.get("category"))
    what = f"{reason}{f', exit code {exit_code}' if exit_code is not None else ''}"
    return restart_or_fail(facts, seen, draft, decision, failure, what, retryable)


def restart_or_fail(
    facts: RunFacts,
    seen: Observed,
    draft: StatusDraft,
    decision: Decision,
    failure: FailureInfo,
    what: str,
    retryable: bool,
) -> Verdict:
    """Record `failure`; restart the whole gang while it is retryable and under backoffLimit, else fail the run."""
    reason = failure.get("reason", "")
    draft.failure = failure
    draft.avoid_nodes = triage.avoid_nodes(draft.avoid_nodes or [], failure) or draft.avoid_nodes
    who = failure.get("pod") or failure.get("role")
    if retryable and seen.attempt < facts.backoff_limit:
        message = (
            f"{who} failed ({what}); restarting all replicas (restart {seen.attempt + 1} of {facts.backoff_limit})"
        )
        draft.restarts = seen.attempt + 1
        # The whole gang goes: collective training cannot rejoin a single restarted rank.
        decision.delete_jobs = sorted({j.name for j in seen.current_jobs} | set(decision.delete_jobs))
        decision.events.append(("Warning", "Restarting", message))
        return Verdict(RESTARTING, "GangRestart", message)
    if retryable:
        failure["message"] = f"{failure.get('message', '')} (backoff limit {facts.backoff_limit} reached)".strip()
        why = REASON_BACKOFF
    else:
        why = reason or "Error"
    return Verdict(FAILED, why, f"{who}: {failure.get('reason')}: {failure.get('message')}")
