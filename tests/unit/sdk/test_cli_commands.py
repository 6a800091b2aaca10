"""CLI commands against a fake Client: output formats and the documented exit codes (0, 1, 2, 3, 4, 5)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from runyard import cli
from runyard.api import TrainingRun
from runyard.client import LogLine, Replica
from runyard.exceptions import ApiError, NotFoundError, RunFailedError, ValidationFailedError, WaitTimeoutError
from runyard.validation import validate_manifest

runner = CliRunner()


def make_run(name: str, phase: str = "Running", **status: Any) -> TrainingRun:
    return TrainingRun.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"framework": "pytorch", "image": "i", "replicas": {"node": {"replicas": 2}}},
            "status": {"phase": phase, "readyReplicas": 1, "totalReplicas": 2, **status},
        }
    )


class FakeClient:
    def __init__(self, runs: list[TrainingRun], error: Exception | None = None) -> None:
        self.runs = {r.name: r for r in runs}
        self.error = error
        self.calls: list[tuple[str, Any]] = []

    def _maybe_fail(self) -> None:
        if self.error:
            raise self.error

    def get(self, name: str) -> TrainingRun:
        self._maybe_fail()
        if name not in self.runs:
            raise NotFoundError(f'trainingruns.runyard.dev "{name}" not found', status=404)
        return self.runs[name]

    def list(self, **kwargs: Any) -> list[TrainingRun]:
        self._maybe_fail()
        self.calls.append(("list", kwargs))
        return list(self.runs.values())

    def wait(self, name: str, for_: str, timeout: float | None = None, callback: Any = None) -> TrainingRun:
        self._maybe_fail()
        run = self.get(name)
        if callback:
            callback(run)
        return run

    def logs(self, name: str, rank: int | None = None, **kwargs: Any) -> Iterator[LogLine]:
        self.calls.append(("logs", kwargs))
        self.get(name)
        yield LogLine("node", 0, "p0", "hello")
        yield LogLine("node", 1, "p1", "no logs", notice=True)

    def events(self, name: str) -> list[Any]:
        return []

    def replicas(self, name: str) -> list[Replica]:
        return [Replica("node", 0, f"{name}-node-0-x", "Running", "node-a", "10.1.2.3", 0)]

    def delete(self, name: str, wait: bool = False) -> None:
        self.get(name)
        self.calls.append(("delete", name))

    def submit(self, doc: Any, **kwargs: Any) -> TrainingRun:
        self._maybe_fail()
        problems = validate_manifest(doc)
        if problems:
            raise ValidationFailedError("invalid", [str(p) for p in problems])
        return TrainingRun.model_validate(doc)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient([make_run("a"), make_run("b", "Succeeded", gpus=16)])
    monkeypatch.setattr(cli, "_client", lambda *a, **k: client)
    return client


def test_list_formats(fake: FakeClient) -> None:
    table = runner.invoke(cli.app, ["list"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["NAME", "FRAMEWORK", "PHASE", "READY", "RESTARTS", "GPUS", "PROGRESS", "ETA", "AGE"]
    assert lines[2].split()[:8] == ["b", "pytorch", "Succeeded", "1/2", "0", "16", "-", "-"]
    as_json = json.loads(runner.invoke(cli.app, ["list", "-o", "json"]).output)
    assert as_json["kind"] == "List" and [i["metadata"]["name"] for i in as_json["items"]] == ["a", "b"]
    as_yaml = yaml.safe_load(runner.invoke(cli.app, ["list", "-o", "yaml"]).output)
    assert len(as_yaml["items"]) == 2
    assert "NAMESPACE" in runner.invoke(cli.app, ["list", "-o", "wide"]).output
    assert runner.invoke(cli.app, ["list", "--phase", "Bogus"]).exit_code == 2


def test_list_and_top_show_progress_and_the_time_left_from_now(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    eta = (datetime.now(UTC) + timedelta(minutes=50, seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    progress = {"step": 450, "totalSteps": 1000, "percent": 45, "summary": "45%(450/1000)", "eta": eta}
    done = {"step": 1000, "totalSteps": 1000, "percent": 100, "summary": "100%(1000/1000)", "remaining": "0s"}
    client = FakeClient([make_run("a", progress=progress), make_run("b", "Succeeded", progress=done)])
    monkeypatch.setattr(cli, "_client", lambda *a, **k: client)
    lines = runner.invoke(cli.app, ["list"]).output.splitlines()
    assert lines[1].split()[6] == "45%(450/1000)" and lines[1].split()[7] in ("50m", "49m")
    assert lines[2].split()[6:8] == ["100%(1000/1000)", "-"]  # an ended run has no time left
    top = runner.invoke(cli.app, ["top", "--once"]).output
    assert "PROGRESS" in top and "45%(450/1000)" in top


def test_get_and_not_found(fake: FakeClient) -> None:
    got = runner.invoke(cli.app, ["get", "a", "-o", "json"])
    assert got.exit_code == 0 and json.loads(got.output)["metadata"]["name"] == "a"
    missing = runner.invoke(cli.app, ["get", "zzz"])
    assert missing.exit_code == 3 and "not found" in missing.output


def test_logs_prints_prefixes_and_notices(fake: FakeClient) -> None:
    result = runner.invoke(cli.app, ["logs", "a"])
    assert result.exit_code == 0
    assert "[node-0] hello" in result.output and "runyard: [node-1] no logs" in result.output


def test_logs_passes_attempt_and_store(fake: FakeClient) -> None:
    result = runner.invoke(cli.app, ["logs", "a", "--attempt", "0", "--store", "s3://bucket/team"])
    assert result.exit_code == 0, result.output
    (call,) = [kw for what, kw in fake.calls if what == "logs"]
    assert (call["attempt"], call["store"]) == (0, "s3://bucket/team")
    assert runner.invoke(cli.app, ["logs", "a", "--attempt", "-1"]).exit_code == 2


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (RunFailedError(make_run("a", "Failed", failure={"pod": "a-node-0", "exitCode": 3})), 1, "exit code 3"),
        (WaitTimeoutError("run a did not reach Succeeded within 1s"), 4, "within 1s"),
        (NotFoundError("gone"), 3, "gone"),
        (ApiError("server down", status=500), 5, "server down"),
    ],
    ids=["failed", "timeout", "not-found", "api"],
)
def test_wait_exit_codes(monkeypatch: pytest.MonkeyPatch, error: Exception, code: int, text: str) -> None:
    monkeypatch.setattr(cli, "_client", lambda *a, **k: FakeClient([make_run("a")], error))
    result = runner.invoke(cli.app, ["wait", "a", "--timeout", "1"])
    assert result.exit_code == code and text in result.output


def test_wait_success_top_describe_delete(fake: FakeClient) -> None:
    waited = runner.invoke(cli.app, ["wait", "b"])
    assert waited.exit_code == 0 and "Succeeded" in waited.output
    top = runner.invoke(cli.app, ["top", "--once"])
    assert top.exit_code == 0 and "UTIL AVG" in top.output and "b" in top.output
    described = runner.invoke(cli.app, ["describe", "b"])
    assert described.exit_code == 0 and "Phase:" in described.output and "Conditions:" in described.output
    assert "b-node-0-x" in described.output and "node-a" in described.output and "10.1.2.3" in described.output
    deleted = runner.invoke(cli.app, ["delete", "a", "b"])
    assert deleted.exit_code == 0 and ("delete", "b") in fake.calls


def test_submit_invalid_file_is_a_usage_error(fake: FakeClient) -> None:
    result = runner.invoke(cli.app, ["submit", "-f", "examples/invalid/zero-replicas.yaml"])
    assert result.exit_code == 2 and "spec.replicas.node.replicas" in result.output
    ok = runner.invoke(cli.app, ["submit", "-f", "examples/pytorch-ddp.yaml"])
    assert ok.exit_code == 0 and "trainingrun.runyard.dev/pytorch-ddp created" in ok.output


def test_global_and_command_namespace_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    class Recorder(FakeClient):
        def __init__(self, kubeconfig: Any = None, context: Any = None, namespace: Any = None) -> None:
            super().__init__([make_run("a")])
            seen.append((context, namespace))

    monkeypatch.setattr("runyard.client.Client", Recorder)
    assert runner.invoke(cli.app, ["-n", "global", "--context", "c1", "get", "a"]).exit_code == 0
    assert runner.invoke(cli.app, ["-n", "global", "get", "a", "-n", "local"]).exit_code == 0
    assert seen == [("c1", "global"), (None, "local")]
