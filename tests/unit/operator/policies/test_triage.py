"""Failure triage: the category table, ranks, the nodes a restart avoids, when a log is read, and its redaction."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runyard import constants as c
from runyard.api import FailureCategory
from runyard_operator.policies import triage
from runyard_operator.policies.draft import FailureInfo


@dataclass(frozen=True)
class Case:
    name: str
    reason: str
    exit_code: int | None
    want: FailureCategory
    text: str = ""


CASES = [
    Case("oom-137", "OOMKilled", 137, FailureCategory.OOM_KILLED),
    # Torch elastic rewrites the exit code; the container's reason still names the OOM killer.
    Case("oom-any-code", "OOMKilled", 1, FailureCategory.OOM_KILLED),
    Case("program-exit-1", "Error", 1, FailureCategory.USER_CODE),
    Case("program-exit-127", "Error", 127, FailureCategory.USER_CODE),
    Case("sigkill-without-cause", "Error", 137, FailureCategory.INFRASTRUCTURE),
    Case("sigterm", "Error", 143, FailureCategory.INFRASTRUCTURE),
    Case("evicted", "Evicted", None, FailureCategory.EVICTED),
    Case("disrupted-cause-lost", "Disrupted", None, FailureCategory.EVICTED),
    Case("preempted", "Preempted", 143, FailureCategory.PREEMPTED),
    Case("node-lost", "NodeLost", None, FailureCategory.NODE_LOST),
    Case("node-shutdown", "Terminated", None, FailureCategory.NODE_LOST),
    Case("err-image-pull", "ErrImagePull", None, FailureCategory.IMAGE_PULL),
    Case("image-pull-backoff", "ImagePullBackOff", None, FailureCategory.IMAGE_PULL),
    Case("err-image-never-pull", "ErrImageNeverPull", None, FailureCategory.IMAGE_PULL),
    Case("invalid-image-name", "InvalidImageName", None, FailureCategory.IMAGE_PULL),
    Case("rejected", "Rejected", None, FailureCategory.CONFIG),
    Case("name-conflict", "NameConflict", None, FailureCategory.CONFIG),
    Case("policy-violation", "PolicyViolation", None, FailureCategory.CONFIG),
    Case("namespace-refused", "NamespaceNotAllowed", None, FailureCategory.CONFIG),
    Case("failed-create", "FailedCreate", None, FailureCategory.CONFIG),
    Case("container-config", "CreateContainerConfigError", None, FailureCategory.CONFIG),
    # runc could not exec the command: exit 128 is runc's, not a signal.
    Case("start-error", "StartError", 128, FailureCategory.CONFIG),
    Case("cannot-run", "ContainerCannotRun", 128, FailureCategory.CONFIG),
    Case("deadline", "DeadlineExceeded", None, FailureCategory.DEADLINE_EXCEEDED),
    Case("unknown", "Unknown", None, FailureCategory.INFRASTRUCTURE),
    Case("job-deleted", "JobDeleted", None, FailureCategory.INFRASTRUCTURE),
    Case("kubelet-admission", "OutOfnvidia.com/gpu", None, FailureCategory.INFRASTRUCTURE),
    Case("unexpected-admission", "UnexpectedAdmissionError", None, FailureCategory.INFRASTRUCTURE),
    Case("no-exit-code", "Error", None, FailureCategory.INFRASTRUCTURE),
    Case("xid-in-message", "Error", 1, FailureCategory.GPU_ERROR, "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen"),
    Case("ecc-in-log", "Error", 134, FailureCategory.GPU_ERROR, "RuntimeError: CUDA error: uncorrectable ECC error"),
    Case("fallen-off-the-bus", "Error", 137, FailureCategory.GPU_ERROR, "GPU 0000:3b:00.0 has fallen off the bus"),
    # A GPU out of memory is the program's batch size, not the hardware.
    Case("cuda-oom-is-user-code", "Error", 1, FailureCategory.USER_CODE, "torch.OutOfMemoryError: CUDA out of memory"),
    # A reason that names who ended the replica wins over a GPU word in its log.
    Case("evicted-with-xid", "Evicted", None, FailureCategory.EVICTED, "Xid 79"),
    Case("oom-with-ecc", "OOMKilled", 137, FailureCategory.OOM_KILLED, "ECC error"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_category_table(case: Case) -> None:
    assert triage.categorize(case.reason, case.exit_code, case.text) is case.want


def test_every_category_but_stalled_and_gpu_has_a_reason_or_exit_code_that_leads_to_it() -> None:
    reached = {case.want for case in CASES}
    assert reached == set(FailureCategory) - {FailureCategory.STALLED}
    assert triage.categorize("Stalled", None) is FailureCategory.STALLED


def test_category_of_a_recorded_failure_reads_message_and_log_tail() -> None:
    failure = FailureInfo(reason="Error", exitCode=1, message="exit code 1", logTail="NVRM: Xid 48 on GPU 2")
    assert triage.category_of(failure) is FailureCategory.GPU_ERROR
    assert triage.category_of(FailureInfo(reason="Error", exitCode=1)) is FailureCategory.USER_CODE


@pytest.mark.parametrize(
    ("layout", "role", "index", "want"),
    [
        ({"node": (0, 8)}, "node", 3, 24),  # torch: index x nprocPerNode
        ({"chief": (0, 1), "worker": (1, 1)}, "worker", 2, 3),  # canonical order over roles
        ({"worker": (0, 4)}, "launcher", 0, 0),  # a role whose ranks are not fixed: the index
        ({}, "node", 5, 5),
    ],
)
def test_rank_of(layout: dict[str, tuple[int, int]], role: str, index: int, want: int) -> None:
    assert triage.rank_of(layout, role, index) == want


def test_triage_fills_category_and_rank_once() -> None:
    failure = triage.triage(FailureInfo(role="node", index=2, reason="OOMKilled", exitCode=137), {"node": (0, 4)})
    assert (failure["category"], failure["rank"]) == ("OOMKilled", 8)
    # A recorded failure keeps what it was triaged as.
    failure["reason"] = "Error"
    assert triage.triage(failure, {})["category"] == "OOMKilled" and failure["rank"] == 8
    # No replica (a refusal, a deadline): no rank.
    assert "rank" not in triage.triage(FailureInfo(reason="Rejected", message="x"), {})


def test_avoid_nodes_only_for_node_faults_most_recent_last_and_bounded() -> None:
    gpu = FailureInfo(node="gpu-1", category="GPUError")
    assert triage.avoid_nodes([], gpu) == ["gpu-1"]
    assert triage.avoid_nodes(["gpu-1", "gpu-2"], gpu) == ["gpu-2", "gpu-1"]
    assert triage.avoid_nodes(["gpu-2"], FailureInfo(node="gpu-3", category="NodeLost")) == ["gpu-2", "gpu-3"]
    for category in ("UserCode", "OOMKilled", "Evicted", "Preempted", "Infrastructure"):
        assert triage.avoid_nodes(["a"], FailureInfo(node="gpu-1", category=category)) == ["a"]
    assert triage.avoid_nodes(["a"], FailureInfo(category="GPUError")) == ["a"]  # the pod is gone: no node
    many = [f"n{i}" for i in range(c.MAX_AVOID_NODES)]
    assert triage.avoid_nodes(many, gpu) == [*many[1:], "gpu-1"]


def test_a_log_is_read_only_for_a_new_failure_that_may_have_logged() -> None:
    new = {"pod": "r-node-1-b", "category": "UserCode"}
    assert triage.log_tail_pod(None, new) == "r-node-1-b"
    assert triage.log_tail_pod({"pod": "r-node-1-a", "logTail": "x"}, new) == "r-node-1-b"  # a later attempt's
    assert triage.log_tail_pod({"pod": "r-node-1-b"}, new) is None  # already recorded: never read again
    assert triage.log_tail_pod(None, {**new, "logTail": ""}) is None
    assert triage.log_tail_pod(None, {"category": "Infrastructure"}) is None  # no pod (a deleted Job)
    assert triage.log_tail_pod(None, {"pod": "p", "category": "ImagePull"}) is None  # never started
    assert triage.log_tail_pod(None, {"pod": "p", "category": "Config"}) is None
    assert triage.log_tail_pod(None, None) is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("password=hunter2 next", "password=*** next"),
        ("AWS_SECRET_ACCESS_KEY: abc/def+ghi", "AWS_SECRET_ACCESS_KEY: ***"),
        ('{"api_key": "k-123", "lr": 0.1}', '{"api_key": "***", "lr": 0.1}'),
        ("MLFLOW_TRACKING_TOKEN='t0k3n'", "MLFLOW_TRACKING_TOKEN='***'"),
        ("Authorization: Bearer eyJhbGciOi.abc", "Authorization: Bearer ***"),
        ("GET https://bob:pw@host/api", "GET https://***@host/api"),
        ("id AKIAABCDEFGHIJKLMNOP used", "id *** used"),
        ("HF token hf_abcdefghijklmnopqrstuvwx1234", "HF token ***"),
        ("push ghp_abcdefghijklmnopqrstuvwxyz0123456789", "push ***"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\nok", "***\nok"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blb", "***"),  # cut by the tail: still masked
        # Training output that only looks like keys stays readable.
        (
            "tokenizer=bert-base max_tokens=512 epoch 3 loss=0.25",
            "tokenizer=bert-base max_tokens=512 epoch 3 loss=0.25",
        ),
        ("basic training loop finished", "basic training loop finished"),
    ],
)
def test_redact(text: str, want: str) -> None:
    assert triage.redact(text) == want


def test_log_tail_keeps_the_last_lines_within_the_byte_bound() -> None:
    raw = "".join(f"step {i}\r\n" for i in range(100))
    tail = triage.log_tail(raw).split("\n")
    assert tail == [f"step {i}" for i in range(100 - c.FAILURE_LOG_TAIL_LINES, 100)]
    long = triage.log_tail("x" * 10_000 + "\nend")
    assert len(long) == c.FAILURE_LOG_TAIL_BYTES and long.endswith("\nend")
    assert triage.log_tail("password=x\n") == "password=***"


def test_kernel_bugs_are_the_programs_not_the_gpus() -> None:
    text = "RuntimeError: CUDA error: an illegal memory access was encountered\nunspecified launch failure"
    assert triage.categorize("Error", 1, text) is FailureCategory.USER_CODE
