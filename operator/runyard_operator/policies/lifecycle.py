"""Pure lifecycle policy: from a run's facts, its previous status and its observed children to the next status and actions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runyard import constants as c
from runyard.api import Phase
from runyard_operator.observe import JobView, PodView, Termination
from runyard_operator.policies import conditions as cond

# The API's Phase enum is the one list of phases; plain str aliases keep status dicts JSON-ready.
PENDING: str = Phase.PENDING.value
QUEUED: str = Phase.QUEUED.value
STARTING: str = Phase.STARTING.value
RUNNING: str = Phase.RUNNING.value
RESTARTING: str = Phase.RESTARTING.value
SUSPENDED: str = Phase.SUSPENDED.value
SUCCEEDED: str = Phase.SUCCEEDED.value
FAILED: str = Phase.FAILED.value
TERMINAL = frozenset({SUCCEEDED, FAILED})

# Phases on the way in are visible in status and conditions only: an Event each would double a burst's writes
# (bench/RESULTS.md) while telling `kubectl describe` nothing the phase column does not.
_QUIET_PHASES = frozenset({PENDING, QUEUED, STARTING})

REASON_DEADLINE = "DeadlineExceeded"
REASON_BACKOFF = "BackoffLimitExceeded"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_INVALID = "InvalidSpec"
REASON_EVICTED = "Evicted"
REASON_PREEMPTED = "Preempted"
REASON_NODE_LOST = "NodeLost"
REASON_DISRUPTED = "Disrupted"
REASON_UNKNOWN = "Unknown"
REASON_JOB_DELETED = "JobDeleted"
# Refusals that end a run before it runs: the API server rejected a child, a child's name is someone else's, the
# platform's namespace or pod policy refuses it.
REASON_REJECTED = "Rejected"
REASON_NAME_CONFLICT = "NameConflict"
REASON_NAMESPACE_REFUSED = "NamespaceNotAllowed"
REASON_POLICY = "PolicyViolation"

# Reasons a container waits with that do not resolve themselves (Always-restarting sidecars can crash-loop).
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures restart the gang. Without explicit exit codes, Kubeflow's ExitCode rule: >= 128 retries."""

    exit_codes: frozenset[int] | None = None
    reasons: frozenset[str] = frozenset(c.DEFAULT_RETRY_REASONS)

    def allows(self, exit_code: int | None, reason: str) -> bool:
        if reason in self.reasons:
            return True
        if exit_code is None:
            return False
        return exit_code in self.exit_codes if self.exit_codes is not None else exit_code >= 128


@dataclass(frozen=True)
class RunFacts:
    """The parts of a TrainingRun the lifecycle depends on, already validated."""

    name: str
    generation: int
    framework: str
    replicas: Mapping[str, int]
    success_roles: tuple[str, ...]
    backoff_limit: int = 0
    backoff_seconds: float = 0.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    active_deadline_seconds: int | None = None
    start_timeout_seconds: int = c.DEFAULT_START_TIMEOUT_SECONDS
    ttl_seconds_after_finished: int | None = None
    clean_pod_policy: str = "Running"
    suspend: bool = False
    queue_name: str | None = None

    @property
    def total_replicas(self) -> int:
        return sum(self.replicas.values())


@dataclass
class Decision:
    """What reconcile should do next. Executed by the controller; nothing here talks to the API."""

    status: dict[str, Any]
    create_children: bool = False
    delete_jobs: list[str] = field(default_factory=list)
    suspend_jobs: dict[str, bool] = field(default_factory=dict)
    delete_run: bool = False
    requeue_at: datetime | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)


def fmt_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


# DisruptionTarget reasons (k8s.io/api/core/v1 DisruptionTarget reasons) as the retry policy names them.
_DISRUPTIONS = {
    "EvictionByEvictionAPI": REASON_EVICTED,
    "TerminationByKubelet": REASON_EVICTED,
    "PreemptionByScheduler": REASON_PREEMPTED,
    "PreemptionByKubeScheduler": REASON_PREEMPTED,
    "DeletionByTaintManager": REASON_NODE_LOST,
    "DeletionByPodGC": REASON_NODE_LOST,
}


def _pod_failure(pod: PodView) -> Termination | None:
    """Why one replica failed, from what its pod still shows: a disruption first, then its container's exit."""
    if pod.disruption:
        reason = _DISRUPTIONS.get(pod.disruption, REASON_DISRUPTED)
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


def _failure_of(pods: Sequence[PodView], jobs: Sequence[JobView]) -> tuple[dict[str, Any], int | None, str]:
    """The failure that decides: the first replica to fail (as its pod shows it), else what its Job recorded.

    A failed Job whose pods are gone or unseen still says why through its podFailurePolicy condition (exit code or
    disruption). A failure nothing records the cause of is `Unknown`: retryable, like infrastructure.
    """
    failed = [(p, t) for p in pods if (t := _pod_failure(p)) is not None]
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
        info: dict[str, Any] = {
            "role": pod.role,
            "index": pod.index,
            "pod": pod.name,
            "reason": reason,
            "message": term.message or f"exit code {term.exit_code}",
        }
        if term.container:
            info |= {"container": term.container, "exitCode": term.exit_code}
        return info, (term.exit_code if term.container else None), reason
    job = next((j for j in jobs if j.failed_condition), None)
    if job is None:
        return {"reason": REASON_UNKNOWN, "message": "a replica failed"}, None, REASON_UNKNOWN
    exit_code, recorded, pod_name = job.recorded_failure
    if recorded:
        info = {"role": job.role, "reason": recorded, "message": job.failure_message}
        if pod_name:
            info["pod"] = pod_name
        if exit_code is not None:
            info |= {"container": c.CONTAINER_NAME, "exitCode": exit_code}
        return info, exit_code, recorded
    if job.failure_reason in (REASON_DEADLINE,):
        return (
            {"role": job.role, "reason": job.failure_reason, "message": job.failure_message},
            None,
            job.failure_reason,
        )
    # BackoffLimitExceeded and the like say a pod failed, not why: the cause cannot be known any more.
    message = f"{job.failure_reason}: {job.failure_message}".strip(": ") + " (the failed pod's cause was not recorded)"
    return {"role": job.role, "reason": REASON_UNKNOWN, "message": message}, None, REASON_UNKNOWN


def _stuck(pods: Sequence[PodView]) -> PodView | None:
    """The first replica whose containers wait on something that will not resolve itself."""
    stuck = [p for p in pods if p.waiting_reason in STUCK_REASONS]
    return min(stuck, key=lambda p: (p.start_time, p.role, p.index)) if stuck else None


def _scheduling_message(pods: Sequence[PodView]) -> str:
    for pod in sorted(pods, key=lambda p: (p.role, p.index)):
        if pod.unschedulable_message and not pod.node:
            return pod.unschedulable_message
    return ""


def decide(
    facts: RunFacts,
    previous: Mapping[str, Any],
    jobs: Sequence[JobView],
    pods: Sequence[PodView],
    now: datetime,
    refusals: Mapping[str, str] | None = None,
) -> Decision:
    """Compute the next status and the actions that move the run towards it (level-based: same input, same output).

    `refusals` maps a role to why its Job could not create pods (FailedCreate: quota, Pod Security, a missing
    ServiceAccount or PriorityClass), as the Job controller reported it.
    """
    prev_phase = str(previous.get("phase") or "")
    attempt = int(previous.get("restarts") or 0)
    status: dict[str, Any] = {
        k: v for k, v in previous.items() if k not in {"conditions", "observedGeneration", "schedulingMessage"}
    }
    status["observedGeneration"] = facts.generation
    status["totalReplicas"] = facts.total_replicas
    status["restarts"] = attempt
    decision = Decision(status=status)

    current_jobs = [j for j in jobs if j.attempt == attempt and not j.deleting]
    stale_jobs = [j for j in jobs if j.attempt != attempt and not j.deleting]
    current_pods = [p for p in pods if p.attempt == attempt]
    live_pods = [p for p in current_pods if not p.deleting and p.phase in ("Pending", "Running")]

    status["readyReplicas"] = sum(1 for p in live_pods if p.ready)
    status["nodes"] = sorted({p.node for p in current_pods if p.node}) or previous.get("nodes") or []
    status["gpus"] = sum(p.gpus for p in live_pods if p.node)

    if prev_phase in TERMINAL:
        return _finished(facts, previous, decision, current_jobs + stale_jobs, live_pods, now)

    decision.delete_jobs = [j.name for j in stale_jobs]
    by_role = {j.role: j for j in current_jobs}
    phase, reason, message = prev_phase or PENDING, "", ""

    failed_jobs = [j for j in current_jobs if j.failed_condition]
    # Pods are watched directly: acting on a failed or finished pod does not wait for the Job controller's
    # own sync (the Job always follows: backoffLimit 0 fails it, all indexes succeeded completes it).
    failed_pods = [p for p in current_pods if (p.phase == "Failed" and not p.deleting) or p.disruption]
    # A Job of this attempt that existed (replicas started) and is gone was deleted by someone: a counted restart.
    deleted_jobs = (
        sorted(set(facts.replicas) - {j.role for j in current_jobs})
        if prev_phase in (STARTING, RUNNING) and not stale_jobs
        else []
    )
    done_indexes: dict[str, set[int]] = {}
    for p in current_pods:
        if p.phase == "Succeeded":
            done_indexes.setdefault(p.role, set()).add(p.index)

    def role_done(role: str) -> bool:
        job_ = by_role.get(role)
        if job_ is not None and job_.complete:
            return True
        return 0 < facts.replicas.get(role, 0) <= len(done_indexes.get(role, ()))

    start = parse_time(previous.get("startTime"))

    if deleted_jobs and not (failed_jobs or failed_pods):
        role = deleted_jobs[0]
        failure: dict[str, Any] = {
            "role": role,
            "reason": REASON_JOB_DELETED,
            "message": f"the Job of role {role} was deleted while the run was {prev_phase.lower()}",
        }
        exit_code, fail_reason = None, REASON_JOB_DELETED
    if failed_jobs or failed_pods:
        failure, exit_code, fail_reason = _failure_of(current_pods, failed_jobs or current_jobs)
    if failed_jobs or failed_pods or deleted_jobs:
        retryable = facts.retry.allows(exit_code, fail_reason)
        if retryable and attempt < facts.backoff_limit:
            phase, reason = RESTARTING, "GangRestart"
            message = (
                f"{failure.get('pod') or failure.get('role')} failed ({fail_reason}"
                f"{f', exit code {exit_code}' if exit_code is not None else ''}); "
                f"restarting all replicas (restart {attempt + 1} of {facts.backoff_limit})"
            )
            status["restarts"] = attempt + 1
            status["failure"] = failure
            decision.delete_jobs = sorted({j.name for j in current_jobs} | set(decision.delete_jobs))
            decision.events.append(("Warning", "Restarting", message))
        else:
            phase = FAILED
            if retryable:
                reason = REASON_BACKOFF
                failure["message"] = (
                    f"{failure.get('message', '')} (backoff limit {facts.backoff_limit} reached)"
                ).strip()
            else:
                reason = fail_reason or "Error"
            status["failure"] = failure
            message = f"{failure.get('pod') or failure.get('role')}: {failure.get('reason')}: {failure.get('message')}"
    elif refusals or (late := _created_after_a_peer_finished(current_pods)) is not None:
        if not refusals and late is not None:
            # Proof from the pods themselves: one was only created after a peer had finished (a quota or an
            # admission webhook held it back), so the gang never ran together.
            refusals = {late.role: f"pod {late.name} was only created after a peer replica had finished"}
        phase, reason, message = _refused_phase(
            facts, refusals or {}, current_jobs, current_pods, status, decision, now
        )
    elif facts.success_roles and all(role_done(role) for role in facts.success_roles):
        phase, reason, message = SUCCEEDED, "Succeeded", "all required replicas completed successfully"
    elif start and facts.active_deadline_seconds and now >= start + timedelta(seconds=facts.active_deadline_seconds):
        phase, reason = FAILED, REASON_DEADLINE
        message = f"run was active longer than activeDeadlineSeconds={facts.active_deadline_seconds}"
        status["failure"] = {"reason": REASON_DEADLINE, "message": message}
    elif facts.suspend:
        phase, reason, message = SUSPENDED, "Suspended", "runPolicy.suspend is true; replicas are stopped"
        decision.suspend_jobs = {j.name: True for j in current_jobs if not j.suspended}
        # A run created suspended still gets its (suspended) Jobs, so resuming is a single patch.
        decision.create_children = len(current_jobs) < len(facts.replicas) and not stale_jobs
    else:
        restart_at = _restart_at(facts, previous, attempt)
        if prev_phase == RESTARTING and (stale_jobs or [j for j in jobs if j.attempt != attempt]):
            phase, reason, message = (
                RESTARTING,
                "GangRestart",
                "waiting for the previous replicas to be removed",
            )
        elif prev_phase == RESTARTING and restart_at and now < restart_at:
            phase, reason, message = RESTARTING, "Backoff", f"restarting at {fmt_time(restart_at)}"
            decision.requeue_at = restart_at
        else:
            decision.create_children = len(current_jobs) < len(facts.replicas)
            if not facts.queue_name:
                decision.suspend_jobs = {j.name: False for j in current_jobs if j.suspended}
            if facts.queue_name and current_jobs and all(j.suspended for j in current_jobs):
                phase, reason, message = (
                    QUEUED,
                    "Queued",
                    f"waiting for admission by Kueue queue {facts.queue_name}",
                )
            elif (stuck := _stuck(live_pods)) is not None:
                phase, reason, message = _stuck_phase(facts, stuck, status, decision, now)
            else:
                sched = _scheduling_message(live_pods)
                # Pods that already finished count as started: the Job's Complete condition trails them.
                started = [p for p in current_pods if p.node and p.phase in ("Running", "Succeeded")]
                if sched:
                    phase, reason, message = PENDING, REASON_UNSCHEDULABLE, sched
                    status["schedulingMessage"] = sched
                elif not any(p.node for p in current_pods):
                    phase, reason, message = PENDING, "Creating", "waiting for replicas to be created and scheduled"
                elif len(started) >= facts.total_replicas:
                    phase, reason = RUNNING, "Running"
                    message = f"{len(started)}/{facts.total_replicas} replicas started"
                    # A replica whose node stopped reporting is marked not ready long before it is evicted.
                    unready = sorted(p.name for p in started if p.phase == "Running" and not p.ready)
                    if unready:
                        message += f"; not ready: {', '.join(unready[:3])}" + (" ..." if len(unready) > 3 else "")
                else:
                    phase, reason = STARTING, "Starting"
                    message = f"{len(started)}/{facts.total_replicas} replicas started"

    check = _pod_creation_check_at(facts, current_jobs, current_pods, now) if phase in (PENDING, STARTING) else None
    if check is not None:
        # Pod creation may be refused without any change the operator watches (quota, Pod Security): look again.
        decision.requeue_at = min(filter(None, [decision.requeue_at, check]))
    if phase in (STARTING, RUNNING) and not start:
        start = now
        status["startTime"] = fmt_time(now)
    if phase not in TERMINAL and phase != RESTARTING and start and facts.active_deadline_seconds:
        deadline = start + timedelta(seconds=facts.active_deadline_seconds)
        decision.requeue_at = min(filter(None, [decision.requeue_at, deadline]))

    status["phase"] = phase
    status["message"] = message
    if phase in TERMINAL:
        status["completionTime"] = fmt_time(now)
        status["gpus"] = 0
        decision.create_children = False
        decision.delete_jobs = [*decision.delete_jobs, *_clean(facts, current_jobs, live_pods)]
        if facts.ttl_seconds_after_finished is not None:
            decision.requeue_at = now + timedelta(seconds=facts.ttl_seconds_after_finished)
        decision.events.append(("Normal" if phase == SUCCEEDED else "Warning", phase, message))
    elif (
        phase != prev_phase
        and phase != RESTARTING
        and (phase == RUNNING or (prev_phase and phase not in _QUIET_PHASES))
    ):
        # A run's first status (often Suspended, for a queue-managed run) is not news either; Running always is.
        decision.events.append(("Normal", phase, message))
    status["conditions"] = cond.compute(previous.get("conditions") or [], phase, reason, message, facts.generation, now)
    return decision


def _stuck_phase(
    facts: RunFacts, pod: PodView, status: dict[str, Any], decision: Decision, now: datetime
) -> tuple[str, str, str]:
    """Pending (naming the reason) until runPolicy.startTimeoutSeconds after the pod started, then Failed.

    The clock is the pod's own startTime, so an operator restart neither resets nor shortens it.
    """
    since = parse_time(pod.start_time) or now
    deadline = since + timedelta(seconds=facts.start_timeout_seconds)
    if now >= deadline:
        status["failure"] = {
            "role": pod.role,
            "index": pod.index,
            "pod": pod.name,
            "reason": pod.waiting_reason,
            "message": f"{pod.waiting_message} (not resolved within startTimeoutSeconds={facts.start_timeout_seconds})",
        }
        return FAILED, pod.waiting_reason, f"{pod.name}: {pod.waiting_reason}: {status['failure']['message']}"
    decision.requeue_at = deadline
    message = f"{pod.name}: {pod.waiting_reason}: {pod.waiting_message}; the run fails at {fmt_time(deadline)}"
    return PENDING, pod.waiting_reason, message


REASON_FAILED_CREATE = "FailedCreate"
# How often a run whose Job has not created all its pods looks for the Job controller's FailedCreate Events (no
# watch on Events: this polling is bounded to runs in that state, and ends with startTimeoutSeconds).
POD_CREATION_CHECK_SECONDS = 10.0


def _refused_phase(
    facts: RunFacts,
    refusals: Mapping[str, str],
    jobs: Sequence[JobView],
    pods: Sequence[PodView],
    status: dict[str, Any],
    decision: Decision,
    now: datetime,
) -> tuple[str, str, str]:
    """Pending while no replica runs and startTimeoutSeconds has not passed; Failed otherwise.

    A gang must never run partially: once any replica started while another cannot even be created (a pods quota
    of 1 would otherwise run a 2-rank gang one rank after the other), the run fails with the refusal.
    """
    role = sorted(refusals)[0]
    why = refusals[role]
    job = next((j for j in jobs if j.role == role), None)
    since = parse_time(job.created if job else None) or now
    deadline = since + timedelta(seconds=facts.start_timeout_seconds)
    started = [p for p in pods if p.node and p.phase in ("Running", "Succeeded")]
    if started or now >= deadline:
        partial = " while other replicas ran: a partial gang cannot train" if started else ""
        status["failure"] = {
            "role": role,
            "reason": REASON_FAILED_CREATE,
            "message": f"pods of role {role} could not be created{partial}: {why}",
        }
        return FAILED, REASON_FAILED_CREATE, f"{role}: {REASON_FAILED_CREATE}: {status['failure']['message']}"
    decision.requeue_at = deadline
    message = f"pods of role {role} cannot be created: {why}; the run fails at {fmt_time(deadline)}"
    return PENDING, REASON_FAILED_CREATE, message


def _created_after_a_peer_finished(pods: Sequence[PodView]) -> PodView | None:
    finished = [p.termination.finished_at for p in pods if p.termination and p.termination.finished_at]
    if not finished:
        return None
    first_end = min(finished)
    late = [p for p in pods if p.created and p.created > first_end]
    return min(late, key=lambda p: p.created) if late else None


def _pod_creation_check_at(
    facts: RunFacts, jobs: Sequence[JobView], pods: Sequence[PodView], now: datetime
) -> datetime | None:
    """When to look at the Events of Jobs that lack pods: once they are old enough, then every check interval."""
    if awaiting_pods(facts, jobs, pods, now):
        return now + timedelta(seconds=POD_CREATION_CHECK_SECONDS)
    young = [
        created + timedelta(seconds=POD_CREATION_CHECK_SECONDS / 2)
        for j in jobs
        if (created := parse_time(j.created)) is not None
        and not (j.suspended or j.deleting or j.complete)
        and sum(1 for p in pods if p.owner_uid == j.uid) < facts.replicas.get(j.role, 0)
    ]
    return min(young) if young else None


def awaiting_pods(facts: RunFacts, jobs: Sequence[JobView], pods: Sequence[PodView], now: datetime) -> list[JobView]:
    """Jobs of the current attempt whose Events may say why pods are missing: those that have existed a while
    without creating all their pods, and every Job once a pod was created only after a peer had finished."""
    if _created_after_a_peer_finished(pods) is not None:
        return [j for j in jobs if not j.deleting]
    out = []
    for job in jobs:
        created = parse_time(job.created)
        if job.suspended or job.deleting or job.failed_condition or job.complete or created is None:
            continue
        if now - created < timedelta(seconds=POD_CREATION_CHECK_SECONDS / 2):
            continue
        have = sum(1 for p in pods if p.owner_uid == job.uid or (not p.owner_uid and p.role == job.role))
        if have < facts.replicas.get(job.role, 0):
            out.append(job)
    return out


def _restart_at(facts: RunFacts, previous: Mapping[str, Any], attempt: int) -> datetime | None:
    """When a gang restart may create the new replicas: the Restarting transition plus the doubling backoff."""
    since = next(
        (
            parse_time(c.get("lastTransitionTime"))
            for c in previous.get("conditions") or []
            if c.get("type") == "Restarting" and c.get("status") == "True"
        ),
        None,
    )
    if since is None or attempt < 1:
        return None
    return since + timedelta(seconds=min(facts.backoff_seconds * 2 ** (attempt - 1), 3600))


def _clean(facts: RunFacts, jobs: Sequence[JobView], live: Sequence[PodView]) -> list[str]:
    """Jobs to delete when the run ends: cleanPodPolicy All removes every Job, Running those with live pods.

    A failed Job needs nothing: the Job controller terminates its remaining pods itself.
    """
    if facts.clean_pod_policy == "All":
        return [j.name for j in jobs]
    if facts.clean_pod_policy == "Running":
        busy = {p.role for p in live if not p.deleting}
        return [j.name for j in jobs if j.role in busy and not j.failed_condition]
    return []


def _finished(
    facts: RunFacts,
    previous: Mapping[str, Any],
    decision: Decision,
    jobs: Sequence[JobView],
    live: Sequence[PodView],
    now: datetime,
) -> Decision:
    """A finished run only cleans up and, with a TTL, deletes itself; its status stays as it was."""
    status = decision.status
    status["gpus"] = 0
    status["readyReplicas"] = 0
    status["conditions"] = list(previous.get("conditions") or [])
    decision.delete_jobs = _clean(facts, jobs, live)
    done = parse_time(previous.get("completionTime"))
    if facts.ttl_seconds_after_finished is not None and done:
        expiry = done + timedelta(seconds=facts.ttl_seconds_after_finished)
        if now >= expiry:
            decision.delete_run = True
        else:
            decision.requeue_at = expiry
    return decision
