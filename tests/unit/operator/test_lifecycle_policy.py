"""Table tests of the whole lifecycle policy (`decide` over every rule): children + previous status -> next status.

Each rule module has its own tests in tests/unit/operator/policies/."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest

from runyard_operator.observe import JobView, PodView, Termination
from runyard_operator.policies import lifecycle as lc
from tests.unit.operator.views import FACTS, NOW, T0, failed_pod, job, pod


@dataclass
class Case:
    name: str
    jobs: list[JobView]
    pods: list[PodView]
    previous: dict[str, Any] = field(default_factory=dict)
    facts: lc.RunFacts = FACTS
    phase: str = ""
    create: bool = False
    delete: list[str] = field(default_factory=list)
    restarts: int = 0


CASES = [
    Case("new run creates children", [], [], phase="Pending", create=True),
    Case(
        "unscheduled pods are Pending",
        [job(active=2, ready=0)],
        [
            pod(
                0,
                "Pending",
                node="",
                ready=False,
                unschedulable_message="Unschedulable: 0/4 nodes: Insufficient nvidia.com/gpu",
            )
        ],
        phase="Pending",
    ),
    Case("one pod running is Starting", [job()], [pod(0), pod(1, "Pending", ready=False, node="n1")], phase="Starting"),
    Case("all pods running is Running", [job()], [pod(0), pod(1)], phase="Running"),
    Case(
        "every index succeeded is Succeeded before the Job's own Complete",
        [job(active=0)],
        [pod(0, "Succeeded"), pod(1, "Succeeded")],
        previous={"phase": "Running", "startTime": T0},
        phase="Succeeded",
    ),
    Case(
        "one of two indexes finished stays Running",
        [job(active=1)],
        [pod(0, "Succeeded"), pod(1)],
        previous={"phase": "Running", "startTime": T0},
        phase="Running",
    ),
    Case(
        "Job complete is Succeeded",
        [job(complete=True, active=0)],
        [pod(0, "Succeeded"), pod(1, "Succeeded")],
        previous={"phase": "Running", "startTime": T0},
        phase="Succeeded",
    ),
    Case(
        "retryable failure restarts the gang",
        [job(failed_condition=True, failure_reason="BackoffLimitExceeded")],
        [failed_pod(0, 137, "OOMKilled"), pod(1)],
        previous={"phase": "Running", "startTime": T0},
        phase="Restarting",
        delete=["r-node"],
        restarts=1,
    ),
    Case(
        "non-retryable exit code fails",
        [job(failed_condition=True)],
        [failed_pod(0, 1), pod(1)],
        previous={"phase": "Running", "startTime": T0},
        phase="Failed",
    ),
    Case(
        "backoff limit reached fails",
        [job(attempt=2, failed_condition=True)],
        [failed_pod(0, 137, attempt=2)],
        previous={"phase": "Running", "restarts": 2, "startTime": T0},
        phase="Failed",
        restarts=2,
    ),
    Case(
        "old attempt's jobs are removed before recreating",
        [job(attempt=0)],
        [],
        previous={"phase": "Restarting", "restarts": 1},
        phase="Restarting",
        delete=["r-node"],
        restarts=1,
    ),
    Case(
        "after removal the next attempt is created",
        [],
        [],
        previous={"phase": "Restarting", "restarts": 1},
        phase="Pending",
        create=True,
        restarts=1,
    ),
    Case("suspend", [job()], [pod(0), pod(1)], facts=replace(FACTS, suspend=True), phase="Suspended"),
    Case(
        "queued by Kueue",
        [job(suspended=True, active=0)],
        [],
        facts=replace(FACTS, queue_name="team-a"),
        phase="Queued",
    ),
    Case(
        "deadline exceeded",
        [job()],
        [pod(0), pod(1)],
        previous={"phase": "Running", "startTime": T0},
        facts=replace(FACTS, active_deadline_seconds=10),
        phase="Failed",
        delete=["r-node"],
    ),
    Case(
        "evicted pod without exit code is retried",
        [job(failed_condition=True)],
        [pod(0, "Failed", ready=False, reason="Evicted", message="node lost")],
        previous={"phase": "Running", "startTime": T0},
        phase="Restarting",
        delete=["r-node"],
        restarts=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case) -> None:
    decision = lc.decide(case.facts, case.previous, case.jobs, case.pods, NOW)
    assert decision.status["phase"] == case.phase
    assert decision.create_children == case.create
    assert decision.delete_jobs == case.delete
    assert decision.status["restarts"] == case.restarts
    assert decision.status["observedGeneration"] == 3
    conditions = {c["type"]: c for c in decision.status["conditions"]}
    if case.phase in ("Succeeded", "Failed"):
        assert conditions[case.phase]["status"] == "True"
        assert decision.status["completionTime"] == lc.fmt_time(NOW)
    else:
        assert conditions["Succeeded"]["status"] == "False"


def test_decide_is_deterministic_and_idempotent() -> None:
    previous: dict[str, Any] = {}
    first = lc.decide(FACTS, previous, [job()], [pod(0), pod(1)], NOW)
    again = lc.decide(FACTS, first.status, [job()], [pod(0), pod(1)], NOW + timedelta(seconds=5))
    assert again.status == first.status  # nothing changed: no status write, no events
    assert not again.events


def test_failure_details_name_pod_container_and_exit_code() -> None:
    decision = lc.decide(
        FACTS, {"phase": "Running"}, [job(failed_condition=True)], [failed_pod(1, 137, "OOMKilled"), pod(0)], NOW
    )
    failure = decision.status["failure"]
    assert failure == {
        "role": "node",
        "index": 1,
        "pod": "r-node-1-abc",
        "reason": "OOMKilled",
        "message": "boom",
        "container": "trainer",
        "exitCode": 137,
        "node": "n1",
        "category": "OOMKilled",
        "rank": 1,
    }


def test_backoff_doubles_and_requeues() -> None:
    facts = replace(FACTS, backoff_seconds=10)
    restarting = [{"type": "Restarting", "status": "True", "lastTransitionTime": lc.fmt_time(NOW)}]
    decision = lc.decide(facts, {"phase": "Restarting", "restarts": 2, "conditions": restarting}, [], [], NOW)
    assert decision.status["phase"] == "Restarting" and not decision.create_children
    assert decision.requeue_at == NOW + timedelta(seconds=20)
    later = lc.decide(facts, decision.status, [], [], NOW + timedelta(seconds=21))
    assert later.create_children and later.status["phase"] == "Pending"


def test_ttl_deletes_finished_run_after_expiry() -> None:
    facts = replace(FACTS, ttl_seconds_after_finished=60)
    done = {"phase": "Succeeded", "completionTime": lc.fmt_time(NOW - timedelta(seconds=30))}
    waiting = lc.decide(facts, done, [], [], NOW)
    assert not waiting.delete_run and waiting.requeue_at == NOW + timedelta(seconds=30)
    assert lc.decide(facts, done, [], [], NOW + timedelta(seconds=31)).delete_run


@pytest.mark.parametrize(
    ("policy", "jobs", "deleted"),
    [
        ("All", [job(complete=True, active=0), job("ps")], ["r-node", "r-ps"]),
        ("Running", [job(complete=True, active=0), job("ps")], ["r-ps"]),
        ("None", [job(complete=True, active=0), job("ps")], []),
    ],
)
def test_clean_pod_policy_on_finish(policy: str, jobs: list[JobView], deleted: list[str]) -> None:
    facts = replace(FACTS, clean_pod_policy=policy)
    # The parameter server still runs after the chief finished; the node pod is done.
    pods = [pod(0, "Succeeded"), pod(0, role="ps", uid="ps0")]
    decision = lc.decide(facts, {"phase": "Succeeded", "completionTime": T0}, jobs, pods, NOW)
    assert decision.delete_jobs == deleted


@pytest.mark.parametrize(
    ("retry", "code", "reason", "allowed"),
    [
        (lc.RetryPolicy(), 137, "OOMKilled", True),
        (lc.RetryPolicy(), 1, "Error", False),
        (lc.RetryPolicy(), None, "Evicted", True),
        (lc.RetryPolicy(), None, "BackoffLimitExceeded", False),
        (lc.RetryPolicy(exit_codes=frozenset({3})), 3, "Error", True),
        (lc.RetryPolicy(exit_codes=frozenset({3})), 137, "OOMKilled", False),
        (lc.RetryPolicy(reasons=frozenset({"OOMKilled"})), 137, "OOMKilled", True),
    ],
)
def test_retry_policy(retry: lc.RetryPolicy, code: int | None, reason: str, allowed: bool) -> None:
    assert retry.allows(code, reason) is allowed


def test_conditions_keep_transition_times_and_foreign_types() -> None:
    from runyard_operator.policies import conditions

    first = conditions.compute([], "Running", "Running", "2/2", 1, NOW)
    foreign = {"type": "GPUsIdle", "status": "True", "reason": "Idle", "lastTransitionTime": "x"}
    second = conditions.compute([*first, foreign], "Running", "Running", "2/2", 1, NOW + timedelta(minutes=1))
    by_type = {c["type"]: c for c in second}
    assert by_type["Running"]["lastTransitionTime"] == lc.fmt_time(NOW)
    assert by_type["GPUsIdle"] == foreign


def test_events_mark_start_suspension_and_end_not_the_way_in() -> None:
    suspended = replace(FACTS, suspend=True)
    created = lc.decide(suspended, {}, [], [], NOW)
    assert created.status["phase"] == "Suspended" and not created.events  # a run's first status is not news
    pending = lc.decide(FACTS, {}, [job(active=0, ready=0)], [pod(0, "Pending", node="")], NOW)
    assert pending.status["phase"] in ("Pending", "Starting") and not pending.events
    running = lc.decide(FACTS, {}, [job()], [pod(0), pod(1)], NOW)
    assert running.status["phase"] == "Running"
    assert [e[1] for e in running.events] == ["Running"]  # Running is news even as the first status
    paused = lc.decide(suspended, running.status, [job()], [pod(0), pod(1)], NOW)
    assert paused.status["phase"] == "Suspended" and [e[1] for e in paused.events] == ["Suspended"]


# --- the first failure decides, signals before their consequences; stuck starts end after startTimeoutSeconds ---


def test_first_replica_to_fail_decides_and_a_signal_death_beats_its_consequence() -> None:
    """Rank 1 is SIGKILLed; rank 0 then fails in the collective with exit 1 in the same second."""
    killed = pod(
        1, "Failed", ready=False, termination=Termination("trainer", 137, "Error", "signal 9", "2026-11-26T11:59:50Z")
    )
    peer = pod(
        0, "Failed", ready=False, termination=Termination("trainer", 1, "Error", "peer closed", "2026-11-26T11:59:50Z")
    )
    later = pod(
        0, "Failed", ready=False, termination=Termination("trainer", 1, "Error", "late", "2026-11-26T11:59:55Z")
    )
    for pods in ([peer, killed], [killed, peer]):
        decision = lc.decide(FACTS, {"phase": "Running", "startTime": T0}, [job()], pods, NOW)
        assert decision.status["phase"] == lc.RESTARTING, decision.status
        assert decision.status["failure"]["index"] == 1
    # A failure a second earlier is the cause, even with a lower exit code.
    first = pod(0, "Failed", ready=False, termination=Termination("trainer", 1, "Error", "bug", "2026-11-26T11:59:49Z"))
    decision = lc.decide(FACTS, {"phase": "Running", "startTime": T0}, [job()], [killed, first, later], NOW)
    assert decision.status["phase"] == lc.FAILED and decision.status["failure"]["index"] == 0


@pytest.mark.parametrize("reason", sorted(lc.STUCK_REASONS))
def test_stuck_start_is_pending_with_the_reason_then_fails_at_the_timeout(reason: str) -> None:
    facts = replace(FACTS, start_timeout_seconds=60)
    stuck = pod(0, "Pending", ready=False, waiting_reason=reason, waiting_message=f"trainer: {reason} details")
    waiting = lc.decide(facts, {"phase": "Pending"}, [job()], [stuck, pod(1, "Pending", ready=False)], NOW)
    assert waiting.status["phase"] == lc.PENDING
    assert reason in waiting.status["message"] and "fails at 2026-11-26T12:00:30Z" in waiting.status["message"]
    assert waiting.requeue_at == NOW + timedelta(seconds=30)
    # T0 + 60 s has passed: the pod's own start time is the clock, whatever the operator saw before.
    failed = lc.decide(facts, {"phase": "Pending"}, [job()], [stuck], NOW + timedelta(seconds=31))
    assert failed.status["phase"] == lc.FAILED
    assert failed.status["failure"]["reason"] == reason and failed.status["failure"]["index"] == 0
    assert "startTimeoutSeconds=60" in failed.status["failure"]["message"]
    assert failed.delete_jobs == ["r-node"]  # cleanPodPolicy Running: the stuck replicas go


def test_container_creating_is_not_stuck() -> None:
    creating = pod(0, "Pending", ready=False, waiting_reason="ContainerCreating")
    decision = lc.decide(FACTS, {"phase": "Pending"}, [job()], [creating], NOW + timedelta(days=1))
    assert decision.status["phase"] != lc.FAILED


# --- failures decided from durable facts: the Job's podFailurePolicy record, disruptions, deleted Jobs -----------


def _failed_job(message: str, reason: str = "PodFailurePolicy") -> JobView:
    return job(active=0, failed_condition=True, failure_reason=reason, failure_message=message)


RUNNING = {"phase": "Running", "startTime": T0}


@pytest.mark.parametrize(
    ("message", "reason", "want_phase", "exit_code"),
    [
        # The failed pod is gone (operator restart, pod deleted): the Job recorded its exit code.
        ("Container trainer for pod ns/r-node-1-abc failed with exit code 137 matching FailJob rule at index 1",
         "PodFailurePolicy", lc.RESTARTING, 137),
        ("Container trainer for pod ns/r-node-1-abc failed with exit code 1 matching FailJob rule at index 1",
         "PodFailurePolicy", lc.FAILED, 1),
        # A disrupted pod (evicted, preempted, node lost) whose pod is gone.
        ("Pod ns/r-node-0-abc has condition DisruptionTarget matching FailJob rule at index 0",
         "PodFailurePolicy", lc.RESTARTING, None),
        # Nothing recorded why (a Job without podFailurePolicy): retryable, never a permanent failure.
        ("Job has reached the specified backoff limit", "BackoffLimitExceeded", lc.RESTARTING, None),
    ],
)  # fmt: skip
def test_failed_job_without_its_pods_decides_from_what_it_recorded(
    message: str, reason: str, want_phase: str, exit_code: int | None
) -> None:
    decision = lc.decide(FACTS, RUNNING, [_failed_job(message, reason)], [], NOW)
    assert decision.status["phase"] == want_phase, decision.status
    failure = decision.status["failure"]
    assert failure.get("exitCode") == exit_code
    if "for pod" in message or "Pod ns/" in message:
        assert failure["pod"].startswith("r-node-")
    if want_phase == lc.RESTARTING:
        assert decision.status["restarts"] == 1 and decision.delete_jobs == ["r-node"]


@pytest.mark.parametrize(
    ("disruption", "reason"),
    [("EvictionByEvictionAPI", "Evicted"), ("PreemptionByScheduler", "Preempted"),
     ("DeletionByTaintManager", "NodeLost"), ("SomethingNew", "Disrupted")],
)  # fmt: skip
def test_disrupted_pod_restarts_the_gang_with_its_reason(disruption: str, reason: str) -> None:
    evicted = pod(0, "Running", deleting=True, disruption=disruption, message="drained")
    decision = lc.decide(FACTS, RUNNING, [job()], [evicted, pod(1)], NOW)
    assert decision.status["phase"] == lc.RESTARTING, decision.status
    assert decision.status["failure"]["reason"] == reason and decision.status["failure"]["index"] == 0


def test_disruption_is_not_retried_when_the_policy_excludes_it() -> None:
    facts = replace(FACTS, retry=lc.RetryPolicy(reasons=frozenset({"OOMKilled"})))
    evicted = pod(0, "Running", deleting=True, disruption="EvictionByEvictionAPI")
    decision = lc.decide(facts, RUNNING, [job()], [evicted, pod(1)], NOW)
    assert decision.status["phase"] == lc.FAILED and decision.status["failure"]["reason"] == "Evicted"


def test_job_deleted_mid_run_is_a_counted_restart() -> None:
    tf = replace(FACTS, framework="tensorflow", replicas={"chief": 1, "worker": 2}, success_roles=("chief",))
    decision = lc.decide(tf, RUNNING, [job("worker")], [pod(0)], NOW)
    assert decision.status["phase"] == lc.RESTARTING
    assert decision.status["failure"]["reason"] == lc.REASON_JOB_DELETED and decision.status["restarts"] == 1
    assert decision.delete_jobs == ["r-worker"] and not decision.create_children
    assert any(e[1] == "Restarting" for e in decision.events)


def test_missing_job_before_any_replica_started_is_just_created() -> None:
    decision = lc.decide(FACTS, {"phase": "Pending"}, [], [], NOW)
    assert decision.status["phase"] == lc.PENDING and decision.create_children


def test_refused_pod_creation_waits_then_fails_and_a_partial_gang_fails_at_once() -> None:
    facts = replace(FACTS, start_timeout_seconds=60)
    quota = {"node": 'pods "r-node-1-x" is forbidden: exceeded quota: pods, requested: pods=1, limit: pods=1'}
    created = job(active=0, created=lc.fmt_time(NOW - timedelta(seconds=20)))
    waiting = lc.decide(facts, {"phase": "Pending"}, [created], [], NOW, quota)
    assert waiting.status["phase"] == lc.PENDING and "exceeded quota" in waiting.status["message"]
    late = lc.decide(facts, {"phase": "Pending"}, [created], [], NOW + timedelta(seconds=41), quota)
    assert late.status["phase"] == lc.FAILED and late.status["failure"]["reason"] == "FailedCreate"
    # One rank runs while the other cannot be created: never a partial (or sequential) gang.
    partial = lc.decide(facts, {"phase": "Starting"}, [job(active=1)], [pod(0)], NOW, quota)
    assert partial.status["phase"] == lc.FAILED and "partial gang" in partial.status["failure"]["message"]
    assert partial.delete_jobs == ["r-node"]


def test_a_job_missing_pods_is_not_polled() -> None:
    """The FailedCreate Event that would explain it arrives by watch and wakes the run: no timer per waiting run."""
    created = job(active=0, created=lc.fmt_time(NOW - timedelta(seconds=30)))
    decision = lc.decide(FACTS, {"phase": "Pending"}, [created], [], NOW)
    assert decision.requeue_at is None


def test_running_gang_names_replicas_that_are_not_ready() -> None:
    """A node that stops reporting marks its pods not ready at once; its eviction comes minutes later."""
    decision = lc.decide(FACTS, RUNNING, [job()], [pod(0), pod(1, ready=False)], NOW)
    assert decision.status["phase"] == lc.RUNNING
    assert decision.status["message"] == "2/2 replicas started; not ready: r-node-1-abc"
    assert decision.status["readyReplicas"] == 1
