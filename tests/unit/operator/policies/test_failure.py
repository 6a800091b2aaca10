"""Failure policy: the first failure decides, from pods or what the Job recorded; restart while retryable and allowed."""

from __future__ import annotations

from dataclasses import replace

from runyard_operator.observe import Termination
from runyard_operator.policies import failure
from runyard_operator.policies.draft import Observed
from runyard_operator.policies.model import Decision, RetryPolicy
from tests.unit.operator.views import FACTS, draft, failed_pod, job, pod, seen


def test_no_failure_no_verdict() -> None:
    d = draft(phase="Running")
    assert failure.decide(FACTS, seen([job()], [pod(0), pod(1)]), d, Decision()) is None
    assert d.failure is None


def test_retryable_failure_restarts_the_whole_gang_with_an_event() -> None:
    d, decision = draft(phase="Running"), Decision(delete_jobs=["r-old"])
    verdict = failure.decide(FACTS, seen([job()], [failed_pod(1, 137, "OOMKilled"), pod(0)]), d, decision)
    assert verdict is not None and verdict.phase == "Restarting" and verdict.reason == "GangRestart"
    assert "restart 1 of 2" in verdict.message and "exit code 137" in verdict.message
    assert d.restarts == 1 and d.failure == {
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
    assert decision.delete_jobs == ["r-node", "r-old"]
    assert [e[1] for e in decision.events] == ["Restarting"]


def test_backoff_limit_reached_fails_with_the_limit_named() -> None:
    d = draft(phase="Running", restarts=2)
    verdict = failure.decide(FACTS, seen([job(attempt=2)], [failed_pod(0, 137, attempt=2)], attempt=2), d, Decision())
    assert verdict is not None and (verdict.phase, verdict.reason) == ("Failed", "BackoffLimitExceeded")
    assert d.failure is not None and d.failure["message"].endswith("(backoff limit 2 reached)")


def test_non_retryable_exit_fails_with_its_reason() -> None:
    d = draft(phase="Running")
    verdict = failure.decide(FACTS, seen([job()], [failed_pod(0, 1)]), d, Decision())
    assert verdict is not None and (verdict.phase, verdict.reason) == ("Failed", "Error")
    assert verdict.message == "r-node-0-abc: Error: boom"


def test_retry_policy_decides_what_is_retryable() -> None:
    facts = replace(FACTS, retry=RetryPolicy(exit_codes=frozenset({3})))
    verdict = failure.decide(facts, seen([job()], [failed_pod(0, 3)]), draft(phase="Running"), Decision())
    assert verdict is not None and verdict.phase == "Restarting"
    verdict = failure.decide(facts, seen([job()], [failed_pod(0, 137)]), draft(phase="Running"), Decision())
    assert verdict is not None and verdict.phase == "Failed"


def test_a_deleted_job_of_a_started_run_is_a_counted_restart() -> None:
    tf = replace(FACTS, replicas={"chief": 1, "worker": 2}, success_roles=("chief",))
    d, decision = draft(phase="Running"), Decision()
    verdict = failure.decide(tf, seen([job("worker")], [pod(0)]), d, decision)
    assert verdict is not None and verdict.phase == "Restarting"
    assert d.failure is not None and d.failure["reason"] == "JobDeleted" and d.failure["role"] == "chief"
    # Before any replica started, a missing Job is just not created yet.
    assert failure.decide(tf, seen([job("worker")], [], phase="Pending"), draft(phase="Pending"), Decision()) is None


def test_failure_of_orders_signals_before_their_consequences() -> None:
    killed = pod(1, "Failed", termination=Termination("trainer", 137, "Error", "signal 9", "2026-11-26T11:59:50Z"))
    peer = pod(0, "Failed", termination=Termination("trainer", 1, "Error", "peer closed", "2026-11-26T11:59:50Z"))
    info, exit_code, reason = failure.failure_of([peer, killed], [])
    assert (info["index"], exit_code, reason) == (1, 137, "Error")


def test_failure_of_reads_what_the_job_recorded_when_the_pod_is_gone() -> None:
    recorded = job(
        failed_condition=True,
        failure_reason="PodFailurePolicy",
        failure_message="Container trainer for pod ns/r-node-1-abc failed with exit code 137 matching FailJob rule",
    )
    info, exit_code, _ = failure.failure_of([], [recorded])
    assert (info.get("pod"), exit_code) == ("r-node-1-abc", 137)
    unknown = job(failed_condition=True, failure_reason="BackoffLimitExceeded", failure_message="limit")
    info, exit_code, reason = failure.failure_of([], [unknown])
    assert (reason, exit_code) == ("Unknown", None) and "cause was not recorded" in info["message"]


def test_disruptions_map_to_the_retry_policys_reasons() -> None:
    evicted = pod(0, deleting=True, disruption="EvictionByEvictionAPI", message="drained")
    term = failure.pod_failure(evicted)
    assert term is not None and term.reason == "Evicted" and term.message == "EvictionByEvictionAPI: drained"
    assert failure.pod_failure(pod(0)) is None


def test_user_code_is_categorised_and_not_retried_by_default() -> None:
    d = draft(phase="Running")
    verdict = failure.decide(FACTS, seen([job()], [failed_pod(0, 1)]), d, Decision())
    assert verdict is not None and verdict.phase == "Failed"
    assert d.failure is not None and (d.failure["category"], d.failure["node"], d.failure["rank"]) == (
        "UserCode",
        "n0",
        0,
    )
    assert d.avoid_nodes is None  # the node was not the fault


def test_the_rank_comes_from_the_frameworks_layout() -> None:
    facts = replace(FACTS, rank_layout={"node": (0, 8)})
    d = draft(phase="Running")
    failure.decide(facts, seen([job()], [failed_pod(1, 1)]), d, Decision())
    assert d.failure is not None and (d.failure["index"], d.failure["rank"]) == (1, 8)


def test_the_log_tail_is_stored_redacted_and_can_name_a_gpu_fault() -> None:
    log = "epoch 3\nHF_TOKEN=hf_secret\nRuntimeError: CUDA error: uncorrectable ECC error encountered\n"
    observed = Observed.split("Running", 0, [job()], [failed_pod(1, 1), pod(0)], {"r-node-1-abc": log})
    facts = replace(FACTS, retry=RetryPolicy.of(None, None, ["GPUError", "NodeLost"]))
    d, decision = draft(phase="Running", avoidNodes=["n7"]), Decision()
    verdict = failure.decide(facts, observed, d, decision)
    assert d.failure is not None and d.failure["category"] == "GPUError"
    assert (
        d.failure["logTail"] == "epoch 3\nHF_TOKEN=***\nRuntimeError: CUDA error: uncorrectable ECC error encountered"
    )
    # Retried because its category is listed (exit code 1 alone would not be), away from the faulty node.
    assert verdict is not None and verdict.phase == "Restarting"
    assert d.avoid_nodes == ["n7", "n1"] and d.to_status()["avoidNodes"] == ["n7", "n1"]


def test_a_lost_node_is_avoided_by_the_restart() -> None:
    lost = pod(1, deleting=True, disruption="DeletionByTaintManager", message="node n1 not ready")
    d = draft(phase="Running")
    verdict = failure.decide(FACTS, seen([job()], [lost, pod(0)]), d, Decision())
    assert verdict is not None and verdict.phase == "Restarting"
    assert d.failure is not None and (d.failure["reason"], d.failure["category"]) == ("NodeLost", "NodeLost")
    assert d.avoid_nodes == ["n1"]


def test_a_disruption_only_the_job_recorded_is_an_eviction() -> None:
    recorded = job(
        failed_condition=True,
        failure_reason="PodFailurePolicy",
        failure_message="Pod ns/r-node-0-abc has condition DisruptionTarget matching FailJob rule at index 0",
    )
    d = draft(phase="Running")
    verdict = failure.decide(FACTS, seen([recorded], []), d, Decision())
    assert verdict is not None and verdict.phase == "Restarting"
    assert d.failure is not None and (d.failure["reason"], d.failure["category"]) == ("Disrupted", "Evicted")
    assert "node" not in d.failure and d.avoid_nodes is None
