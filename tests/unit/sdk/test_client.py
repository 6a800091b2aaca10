"""Client logic without a cluster: error translation, wait semantics, pod selection for logs, submit validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from runyard.api import TrainingRun
from runyard.client import Client, LogLine, WatchEvent, _Pod
from runyard.exceptions import (
    AlreadyExistsError,
    ApiError,
    NotFoundError,
    RunFailedError,
    ValidationFailedError,
    WaitTimeoutError,
)


def make_run(phase: str | None = None, generation: int = 1, observed: int | None = None, **status: Any) -> TrainingRun:
    body: dict[str, Any] = {
        "metadata": {"name": "r", "namespace": "ns", "generation": generation},
        "spec": {
            "framework": "tensorflow",
            "image": "i",
            "command": ["python", "t.py"],
            "replicas": {"chief": {"replicas": 1}, "worker": {"replicas": 2}, "ps": {"replicas": 1}},
        },
    }
    if phase:
        body["status"] = {"phase": phase, **status}
        if observed is not None:
            body["status"]["observedGeneration"] = observed
    return TrainingRun.model_validate(body)


@pytest.fixture
def client() -> Iterator[Client]:
    api = ApiClient()
    yield Client(api_client=api, namespace="ns")
    api.close()


def api_exception(
    status: int, reason: str = "", message: str = "boom", causes: list[dict[str, str]] | None = None
) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    body: dict[str, Any] = {"kind": "Status", "message": message, "reason": reason}
    if causes:
        body["details"] = {"causes": causes}
    exc.body = json.dumps(body)
    return exc


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (404, "NotFound", NotFoundError),
        (409, "AlreadyExists", AlreadyExistsError),
        (422, "Invalid", ValidationFailedError),
        (500, "InternalError", ApiError),
        (403, "Forbidden", ApiError),
    ],
    ids=["404", "409", "422", "500", "403"],
)
def test_api_errors_are_typed(client: Client, status: int, reason: str, expected: type[Exception]) -> None:
    def fail(**_: Any) -> None:
        raise api_exception(status, reason)

    with pytest.raises(expected, match="get trainingrun x: boom"):
        client._call("get trainingrun x", fail)


def test_server_side_validation_lists_causes(client: Client) -> None:
    causes = [{"field": "spec.replicas", "message": "must have a node"}]
    err = Client._translate("create", api_exception(422, "Invalid", "invalid", causes))
    assert isinstance(err, ValidationFailedError) and err.problems == ["spec.replicas: must have a node"]


def test_connection_errors_become_api_errors(client: Client) -> None:
    def fail(**_: Any) -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(ApiError, match="cannot reach the API server"):
        client._call("list", fail)


def test_submit_validates_before_calling_the_api(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "_call", lambda *a, **k: pytest.fail("must not be called"))
    bad = {"apiVersion": "runyard.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(ValidationFailedError) as info:
        client.submit(bad)
    assert any("spec.framework" in p for p in info.value.problems)


def test_submit_sends_the_manifest_with_namespace_and_name(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: dict[str, Any] = {}

    def fake_call(what: str, fn: Any, group: str, version: str, ns: str, plural: str, body: Any, **kw: Any) -> Any:
        sent.update(ns=ns, body=body, kw=kw)
        return {**body, "metadata": {**body["metadata"], "uid": "u1"}}

    monkeypatch.setattr(client, "_call", fake_call)
    run = client.submit("examples/pytorch-ddp.yaml", name="ddp-2", dry_run=True)
    assert run.name == "ddp-2" and run.metadata.uid == "u1"
    assert sent["ns"] == "ns" and sent["body"]["metadata"]["namespace"] == "ns" and sent["kw"] == {"dry_run": "All"}


def feed(client: Client, monkeypatch: pytest.MonkeyPatch, first: TrainingRun, *later: TrainingRun) -> None:
    monkeypatch.setattr(client, "get", lambda name, namespace=None: first)
    monkeypatch.setattr(client, "watch", lambda *a, **k: iter(WatchEvent("MODIFIED", r) for r in later))


def test_wait_returns_on_target_and_reports_progress(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    feed(client, monkeypatch, make_run("Pending"), make_run("Running"), make_run("Succeeded"))
    run = client.wait("r", callback=lambda r: seen.append(r.status.phase.value if r.status and r.status.phase else ""))
    assert run.status and run.status.phase == "Succeeded"
    assert seen == ["Pending", "Running", "Succeeded"]


def test_wait_raises_run_failed_with_exit_code(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = make_run("Failed", failure={"role": "worker", "index": 1, "pod": "r-worker-1-a", "exitCode": 3})
    feed(client, monkeypatch, make_run("Running"), failed)
    with pytest.raises(RunFailedError, match="exit code 3") as info:
        client.wait("r")
    assert info.value.exit_code == 3


def test_wait_times_out(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    feed(client, monkeypatch, make_run("Running"))
    with pytest.raises(WaitTimeoutError, match="did not reach Succeeded within 1s \\(phase Running\\)"):
        client.wait("r", timeout=1)


def test_wait_for_running_accepts_succeeded_and_deleted_is_not_found(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed(client, monkeypatch, make_run("Pending"), make_run("Succeeded"))
    assert client.wait("r", "Running").status is not None
    monkeypatch.setattr(client, "watch", lambda *a, **k: iter([WatchEvent("DELETED", make_run("Running"))]))
    with pytest.raises(NotFoundError):
        client.wait("r")


def test_wait_ignores_status_of_an_older_generation(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # Resumed run: the old Failed status was computed for generation 1; the spec is now at generation 2.
    stale = make_run("Failed", generation=2, observed=1)
    fresh = make_run("Succeeded", generation=2, observed=2)
    feed(client, monkeypatch, stale, fresh)
    assert client.wait("r").status is not None


def pod(role: str, index: int, attempt: int, name: str | None = None, minute: int = 0) -> _Pod:
    created = datetime(2026, 1, 1, 0, minute, tzinfo=UTC)
    return _Pod(
        name or f"{role}-{index}-{attempt}",
        f"uid-{role}-{index}-{attempt}-{minute}",
        role,
        index,
        attempt,
        "Running",
        created,
    )


def test_logs_select_newest_attempt_in_canonical_order(client: Client) -> None:
    pods = [pod("worker", 1, 1), pod("ps", 0, 1), pod("chief", 0, 0), pod("worker", 0, 1), pod("chief", 0, 1)]
    chosen = Client._select(pods, None)
    assert [(p.role, p.index, p.attempt) for p in chosen] == [
        ("chief", 0, 1),
        ("worker", 0, 1),
        ("worker", 1, 1),
        ("ps", 0, 1),
    ]


def test_logs_rank_and_role_filters(client: Client) -> None:
    run = make_run()
    assert client._wanted(run, None, None) is None
    assert client._wanted(run, 0, None) == {("chief", 0)}
    assert client._wanted(run, 2, None) == {("worker", 1)}
    assert client._wanted(run, None, "worker") == {("worker", 0), ("worker", 1)}
    assert client._wanted(run, 1, "worker") == {("worker", 1)}
    with pytest.raises(ValidationFailedError, match=r"ranks 0\.\.3"):
        client._wanted(run, 4, None)
    with pytest.raises(ValidationFailedError, match="no role 'evaluator'"):
        client._wanted(run, None, "evaluator")


def test_log_line_prefix() -> None:
    line = LogLine("node", 1, "p", "hello")
    assert str(line) == "[node-1] hello" and line.prefix == "[node-1]"
