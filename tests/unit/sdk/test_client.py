"""Client logic without a cluster: error translation, wait semantics, pod selection for logs, submit validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from runyard.api import TrainingRun
from runyard.artifacts import logs as lg
from runyard.artifacts.store import StoreURI
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
    done = client.wait("r", "Running")
    assert done.status is not None and done.status.phase == "Succeeded"
    monkeypatch.setattr(client, "watch", lambda *a, **k: iter([WatchEvent("DELETED", make_run("Running"))]))
    with pytest.raises(NotFoundError):
        client.wait("r")


def test_wait_ignores_status_of_an_older_generation(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # Resumed run: the old Failed status was computed for generation 1; the spec is now at generation 2.
    stale = make_run("Failed", generation=2, observed=1)
    fresh = make_run("Succeeded", generation=2, observed=2)
    feed(client, monkeypatch, stale, fresh)
    done = client.wait("r")
    assert done.status is not None and done.status.phase == "Succeeded" and done.status.observed_generation == 2


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


# --- logs after the pods are gone: the archive ------------------------------------------------------------------


def archived_run(store: str | None, phase: str = "Succeeded", restarts: int = 1, **logs: Any) -> TrainingRun:
    body: dict[str, Any] = {
        "metadata": {"name": "ddp", "namespace": "ns", "generation": 1},
        "spec": {"framework": "pytorch", "image": "i", "replicas": {"node": {"replicas": 2}}},
        "status": {"phase": phase, "restarts": restarts, "observedGeneration": 1},
    }
    if store:
        body["spec"]["artifacts"] = {"store": store}
        run_uri = StoreURI.parse(store).run("ddp").uri()
        body["status"]["artifacts"] = {"storeUri": run_uri, "logs": {"uri": f"{run_uri}/logs", **logs}}
    return TrainingRun.model_validate(body)


def write_archive(root: Path, attempt: int, ranks: dict[str, str], errors: dict[str, str] | None = None) -> None:
    entries = [lg.RankLog(rank, f"ddp-{rank}-x", size=len(text), stored=len(text)) for rank, text in ranks.items()]
    entries += [lg.RankLog(rank, error=error) for rank, error in (errors or {}).items()]
    run_dir = root / "ddp"
    for rank, text in ranks.items():
        (run_dir / lg.log_path(attempt, rank)).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / lg.log_path(attempt, rank)).write_text(text)
    (run_dir / lg.index_path(attempt)).parent.mkdir(parents=True, exist_ok=True)
    (run_dir / lg.index_path(attempt)).write_text(
        json.dumps(lg.index_document("ddp", attempt, "Succeeded", entries, "t"))
    )


def serve(client: Client, monkeypatch: pytest.MonkeyPatch, run: TrainingRun | None, pods: list[_Pod]) -> None:
    def get(name: str, namespace: str | None = None) -> TrainingRun:
        if run is None:
            raise NotFoundError(f'trainingruns.runyard.dev "{name}" not found', status=404)
        return run

    monkeypatch.setattr(client, "get", get)
    monkeypatch.setattr(client, "_pods", lambda name, namespace: pods)
    monkeypatch.setattr(
        client, "_read_log", lambda p, ns: iter([LogLine(p.role, p.index, p.name, f"live {p.name}", p.attempt)])
    )


def texts(lines: list[LogLine]) -> list[str]:
    return [("! " if line.notice else "") + str(line) for line in lines]


def test_logs_fall_back_to_the_archive_once_the_pods_are_gone(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_archive(tmp_path, 1, {"node-0": "epoch 5\n", "node-1": "epoch 5 too\n"})
    serve(client, monkeypatch, archived_run(f"file://{tmp_path}", attempts=[0, 1]), [])
    lines = list(client.logs("ddp"))
    uri = f"file://{tmp_path}/ddp/logs/attempt-1"
    assert texts(lines) == [
        f"! [node-0] pod gone: attempt 1's log from the archive {uri}/node-0.log",
        "[node-0] epoch 5",
        f"! [node-1] pod gone: attempt 1's log from the archive {uri}/node-1.log",
        "[node-1] epoch 5 too",
    ]
    assert {(line.pod, line.restart_attempt) for line in lines if not line.notice} == {
        ("ddp-node-0-x", 1),
        ("ddp-node-1-x", 1),
    }
    # Following a finished run whose pods are gone reads the same archive once.
    assert texts(list(client.logs("ddp", follow=True))) == texts(lines)
    assert texts(list(client.logs("ddp", rank=1)))[-1] == "[node-1] epoch 5 too"


def test_what_preempted_replicas_printed_comes_before_the_resumed_attempt_and_alone_while_suspended(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    segment = lg.stopped_segment("2026-12-05T23:15:00Z")
    for rank in ("node-0", "node-1"):
        path = tmp_path / "ddp" / lg.log_path(0, rank, segment)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{rank} step 40: stop asked, checkpoint saved\n")
    stop = {"attempt": 0, "segment": segment, "reason": "Preempted", "time": "2026-12-05T23:15:00Z"}
    uri = f"file://{tmp_path}/ddp/logs/attempt-0/{segment}"
    # Still suspended, its pods gone and its attempt not over: what the replicas printed until they stopped.
    serve(client, monkeypatch, archived_run(f"file://{tmp_path}", "Suspended", 0, stops=[stop]), [])
    assert texts(list(client.logs("ddp"))) == [
        f"! [node-0] Preempted at 2026-12-05T23:15:00Z: the stopped replica's log from the archive {uri}/node-0.log",
        "[node-0] node-0 step 40: stop asked, checkpoint saved",
        f"! [node-1] Preempted at 2026-12-05T23:15:00Z: the stopped replica's log from the archive {uri}/node-1.log",
        "[node-1] node-1 step 40: stop asked, checkpoint saved",
    ]
    # Resumed: the stopped part first, then the replicas that went on (live here), rank by rank.
    live = [pod("node", 0, 0, name="ddp-node-0-new"), pod("node", 1, 0, name="ddp-node-1-new")]
    serve(client, monkeypatch, archived_run(f"file://{tmp_path}", "Running", 0, stops=[stop]), live)
    assert [t for t in texts(list(client.logs("ddp"))) if not t.startswith("!")] == [
        "[node-0] node-0 step 40: stop asked, checkpoint saved",
        "[node-0] live ddp-node-0-new",
        "[node-1] node-1 step 40: stop asked, checkpoint saved",
        "[node-1] live ddp-node-1-new",
    ]
    assert [t for t in texts(list(client.logs("ddp", rank=1))) if not t.startswith("!")] == [
        "[node-1] node-1 step 40: stop asked, checkpoint saved",
        "[node-1] live ddp-node-1-new",
    ]


def test_only_the_ranks_whose_pod_is_gone_come_from_the_archive(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_archive(tmp_path, 1, {"node-0": "archived 0\n", "node-1": "archived 1\n"})
    live = [pod("node", 0, 1, name="ddp-node-0-live")]
    serve(client, monkeypatch, archived_run(f"file://{tmp_path}", attempts=[1]), live)
    assert [t for t in texts(list(client.logs("ddp"))) if not t.startswith("!")] == [
        "[node-0] live ddp-node-0-live",
        "[node-1] archived 1",
    ]


def test_an_earlier_attempt_is_read_from_its_archive_while_the_current_one_runs(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_archive(tmp_path, 0, {"node-0": "first try\n"}, errors={"node-1": "not read: 500 InternalError: boom"})
    live = [pod("node", 0, 1), pod("node", 1, 1)]
    serve(client, monkeypatch, archived_run(f"file://{tmp_path}", "Running", attempts=[0]), live)
    assert texts(list(client.logs("ddp", attempt=0, follow=True))) == [
        f"! [node-0] pod gone: attempt 0's log from the archive file://{tmp_path}/ddp/logs/attempt-0/node-0.log",
        "[node-0] first try",
        "! [node-1] no archived log of attempt 0: not read: 500 InternalError: boom",
    ]
    # The current attempt, asked by number, is its live pods.
    assert texts(list(client.logs("ddp", attempt=1))) == ["[node-0] live node-0-1", "[node-1] live node-1-1"]
    with pytest.raises(ValidationFailedError, match=r"attempts 0\.\.1, not 2"):
        list(client.logs("ddp", attempt=2))


def test_without_an_archive_a_finished_run_without_pods_yields_nothing_unless_an_attempt_is_asked(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(client, monkeypatch, archived_run(None), [])
    assert list(client.logs("ddp")) == []  # as before archives existed: the CLI says "no pods"
    assert texts(list(client.logs("ddp", attempt=0))) == [
        "! [node-0] no logs of attempt 0: its pods are gone; the run has no artifact store to archive them to",
        "! [node-1] no logs of attempt 0: its pods are gone; the run has no artifact store to archive them to",
    ]
    message = "logs not archived: the operator archives logs to s3:// stores only, not pvc://"
    serve(client, monkeypatch, archived_run("pvc://claim/team", message=message), [])
    assert texts(list(client.logs("ddp", rank=0))) == [f"! [node-0] no logs of attempt 1: its pods are gone; {message}"]


def test_the_archive_of_a_deleted_run_is_found_under_its_store(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_archive(tmp_path, 0, {"node-0": "zero\n", "node-1": "one\n"})
    write_archive(tmp_path, 1, {"node-0": "again\n", "node-1": "again 1\n"})
    serve(client, monkeypatch, None, [])
    with pytest.raises(NotFoundError):
        list(client.logs("ddp"))
    store = f"file://{tmp_path}"
    assert [t for t in texts(list(client.logs("ddp", store=store))) if not t.startswith("!")] == [
        "[node-0] again",
        "[node-1] again 1",
    ]
    assert texts(list(client.logs("ddp", store=store, attempt=0, rank=1)))[-1] == "[node-1] one"
    with pytest.raises(ValidationFailedError, match="attempt 4 is not archived; archived: 0, 1"):
        list(client.logs("ddp", store=store, attempt=4))
    with pytest.raises(NotFoundError, match="holds no log archive"):
        list(client.logs("ddp", store=f"file://{tmp_path}/elsewhere"))
