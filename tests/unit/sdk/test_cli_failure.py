"""`runyard describe` and `runyard wait` print a failure as one block: what, where, how, and the log tail indented."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from runyard import cli
from runyard.api import FailureInfo
from runyard.exceptions import RunFailedError
from tests.unit.sdk.test_cli_commands import FakeClient, make_run

runner = CliRunner()

FAILURE: dict[str, Any] = {
    "category": "OOMKilled",
    "role": "node",
    "index": 1,
    "rank": 8,
    "pod": "llm-node-1-x7k",
    "node": "gpu-3",
    "container": "trainer",
    "exitCode": 137,
    "reason": "OOMKilled",
    "message": "OOMKilled",
    "logTail": "step 41 loss 2.1\nstep 42 loss [bold]2.0[/bold]\nallocating 80 GiB",
}


def block(**changes: Any) -> list[str]:
    return cli._failure_lines(FailureInfo.model_validate({**FAILURE, **changes}))


def test_the_block_names_category_replica_rank_pod_node_and_indents_the_log_tail() -> None:
    assert block() == [
        "Failure:",
        "  Category:   OOMKilled",
        "  Replica:    node-1 (rank 8)",
        "  Pod:        llm-node-1-x7k",
        "  Node:       gpu-3",
        "  Container:  trainer",
        "  Exit code:  137",
        "  Reason:     OOMKilled",
        "  Message:    OOMKilled",
        "  Log tail (last 3 lines of llm-node-1-x7k):",
        "    step 41 loss 2.1",
        "    step 42 loss [bold]2.0[/bold]",
        "    allocating 80 GiB",
    ]


def test_what_is_unknown_is_left_out() -> None:
    lines = cli._failure_lines(FailureInfo(reason="Rejected", message="Job r-node: spec.x: Invalid value"))
    assert lines == ["Failure:", "  Reason:     Rejected", "  Message:    Job r-node: spec.x: Invalid value"]
    # A role without an index (a deleted Job) is named as the role; a rank needs a replica.
    assert "  Replica:    worker" in cli._failure_lines(FailureInfo(role="worker", reason="JobDeleted"))


def test_a_multi_line_message_is_indented_under_its_label() -> None:
    lines = block(message="torchrun: rank 9 failed with signal 9\nRoot Cause", logTail=None)
    assert lines[-2:] == ["  Message:    torchrun: rank 9 failed with signal 9", "              Root Cause"]


def test_a_message_that_is_the_log_again_shows_only_its_first_line() -> None:
    """FallbackToLogsOnError makes the termination message the log's end: the tail below already shows it."""
    lines = block(message="torchrun: rank 9 failed with signal 9\nstep 40\nstep 41 loss 2.1\nallocating 80 GiB")
    assert "  Message:    torchrun: rank 9 failed with signal 9 (...)" in lines
    assert sum("allocating 80 GiB" in line for line in lines) == 1


@pytest.fixture
def failed(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    run = make_run("llm", "Failed", failure=FAILURE, message="node-1 failed")
    client = FakeClient([run], RunFailedError(run))
    monkeypatch.setattr(cli, "_client", lambda *a, **k: client)
    return client


def test_wait_prints_the_block_then_the_error_line_and_exits_1(failed: FakeClient) -> None:
    result = runner.invoke(cli.app, ["wait", "llm"])
    assert result.exit_code == 1
    out = result.output
    assert "Category:   OOMKilled" in out and "Node:       gpu-3" in out and "    allocating 80 GiB" in out
    assert out.index("Failure:") < out.index("error: run llm failed: llm-node-1-x7k, exit code 137")


def test_describe_prints_the_block_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient([make_run("llm", "Failed", failure=FAILURE)])
    monkeypatch.setattr(cli, "_client", lambda *a, **k: client)
    result = runner.invoke(cli.app, ["describe", "llm"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "  Replica:    node-1 (rank 8)" in out and "  Category:   OOMKilled" in out
    # Log lines are the program's text: rich markup in them is printed, not interpreted.
    assert "    step 42 loss [bold]2.0[/bold]" in out
    assert out.index("Failure:") < out.index("Log tail") < out.index("Tracking:")


def test_describe_says_how_far_a_stalled_run_got_and_which_ranks_went_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    progress = {
        "step": 450,
        "totalSteps": 1000,
        "percent": 45,
        "summary": "45%(450/1000)",
        "stepsPerSecond": 2.5,
        "lastReportTime": "2026-12-01T08:00:00Z",
        "reportingRanks": 16,
        "attempt": 1,
        "silentRanks": [
            {"rank": 3, "pod": "llm-node-0-x7k", "node": "gpu-3", "lastReportTime": "2026-12-01T07:50:00Z"}
        ],
    }
    client = FakeClient([make_run("llm", "Running", progress=progress)])
    monkeypatch.setattr(cli, "_client", lambda *a, **k: client)
    out = runner.invoke(cli.app, ["describe", "llm"]).output
    assert "  Step:       45%(450/1000)" in out and "  Rate:       2.5 steps/s" in out
    assert "  Reported:   2026-12-01T08:00:00Z from 16 ranks (attempt 1)" in out
    assert "  Silent:     rank 3 (llm-node-0-x7k on gpu-3), last report 2026-12-01T07:50:00Z" in out
