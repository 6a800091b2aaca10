"""RunFailedError carries status.failure and says which replica failed with which exit code."""

from __future__ import annotations

from typing import Any

from runyard.api import TrainingRun
from runyard.exceptions import RunFailedError, describe_failure


def run_with(status: dict[str, Any] | None) -> TrainingRun:
    body: dict[str, Any] = {
        "metadata": {"name": "r"},
        "spec": {"framework": "pytorch", "image": "i", "replicas": {"node": {"replicas": 2}}},
    }
    if status is not None:
        body["status"] = status
    return TrainingRun.model_validate(body)


def test_run_failed_error_has_failure_details() -> None:
    failure = {
        "role": "node",
        "index": 1,
        "pod": "r-node-1-x",
        "exitCode": 137,
        "reason": "OOMKilled",
        "message": "oom",
    }
    err = RunFailedError(run_with({"phase": "Failed", "failure": failure}))
    assert err.exit_code == 137
    assert err.failure is not None and err.failure.pod == "r-node-1-x"
    assert str(err) == "run r failed: r-node-1-x, exit code 137, reason OOMKilled: oom"


def test_describe_failure_without_details() -> None:
    assert describe_failure(run_with({"phase": "Failed", "message": "deadline"})) == "run r failed: deadline"
    assert describe_failure(run_with(None)) == "run r failed: no failure details in status"
    text = describe_failure(run_with({"failure": {"role": "worker", "index": 0, "exitCode": 1}}))
    assert text == "run r failed: worker-0, exit code 1"
