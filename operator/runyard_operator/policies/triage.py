"""Failure triage: the category of a recorded failure, its rank, the nodes to avoid, and a log tail safe to store.

Pure: the category comes from what `status.failure` already holds (reason, exit code, message), so a failure read
back from the status after an operator restart gets the same category as when it was recorded. The operator watches
no Nodes and no node Events: `GPUError` is recognised from the termination message and the log tail only (an Xid,
an ECC error, a GPU fallen off the bus).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from runyard import constants as c
from runyard.api import FailureCategory
from runyard.tracking.mlflow_ops import redact as redact_urls
from runyard_operator.policies.draft import FailureInfo
from runyard_operator.policies.model import (
    NOT_STARTED_REASONS,
    REASON_DEADLINE,
    REASON_DISRUPTED,
    REASON_EVICTED,
    REASON_FAILED_CREATE,
    REASON_INVALID,
    REASON_JOB_DELETED,
    REASON_NAME_CONFLICT,
    REASON_NAMESPACE_REFUSED,
    REASON_NODE_LOST,
    REASON_POLICY,
    REASON_PREEMPTED,
    REASON_REJECTED,
    REASON_TEMPLATE_LOCKED,
    REASON_TEMPLATE_NOT_FOUND,
    REASON_UNKNOWN,
)

Category = FailureCategory

# `status.failure.reason` -> category, before any exit code is looked at: these reasons say who ended the replica.
# Disruptions arrive already named by failure.DISRUPTIONS (DisruptionTarget reasons); waiting reasons are those
# starting.STUCK_REASONS fails a run with; pod-level reasons are the kubelet's for pods that end without a container.
REASON_CATEGORIES: Mapping[str, FailureCategory] = {
    "OOMKilled": Category.OOM_KILLED,
    REASON_EVICTED: Category.EVICTED,
    # A DisruptionTarget whose reason the Job's record did not keep (podFailurePolicy): Kubernetes took the pod.
    REASON_DISRUPTED: Category.EVICTED,
    REASON_PREEMPTED: Category.PREEMPTED,
    REASON_NODE_LOST: Category.NODE_LOST,
    # Graceful node shutdown (kubelet): the node is going away under the pod.
    "Shutdown": Category.NODE_LOST,
    "Terminated": Category.NODE_LOST,
    "ErrImagePull": Category.IMAGE_PULL,
    "ImagePullBackOff": Category.IMAGE_PULL,
    "ErrImageNeverPull": Category.IMAGE_PULL,
    "InvalidImageName": Category.IMAGE_PULL,
    REASON_REJECTED: Category.CONFIG,
    REASON_NAME_CONFLICT: Category.CONFIG,
    REASON_POLICY: Category.CONFIG,
    REASON_NAMESPACE_REFUSED: Category.CONFIG,
    REASON_INVALID: Category.CONFIG,
    REASON_TEMPLATE_LOCKED: Category.CONFIG,
    REASON_TEMPLATE_NOT_FOUND: Category.CONFIG,
    REASON_FAILED_CREATE: Category.CONFIG,
    "CreateContainerConfigError": Category.CONFIG,
    "CreateContainerError": Category.CONFIG,
    **dict.fromkeys(sorted(NOT_STARTED_REASONS), Category.CONFIG),  # StartError, ContainerCannotRun
    REASON_DEADLINE: Category.DEADLINE_EXCEEDED,
    "Stalled": Category.STALLED,
    REASON_UNKNOWN: Category.INFRASTRUCTURE,
    REASON_JOB_DELETED: Category.INFRASTRUCTURE,
    # The kubelet refused the pod on admission (device plugin, node affinity changed, resources gone).
    "UnexpectedAdmissionError": Category.INFRASTRUCTURE,
    "NodeAffinity": Category.INFRASTRUCTURE,
}

# Hardware faults as the NVIDIA driver, NVML and CUDA word them. Not "CUDA out of memory" (the program's batch size)
# nor "illegal memory access"/"unspecified launch failure" (usually a kernel's bug): UserCode; not plain "GPU", which
# any traceback mentions.
GPU_FAULT = re.compile(r"\bXid\b|\bECC error|uncorrectable ECC|fallen off the bus|GPU is lost|GPU_IS_LOST")

# Categories whose restart goes elsewhere: the node itself was the fault.
FAULTY_NODE_CATEGORIES = frozenset({Category.GPU_ERROR, Category.NODE_LOST})
# A container that never started has no log to read.
NO_LOG_CATEGORIES = frozenset({Category.IMAGE_PULL, Category.CONFIG})


def categorize(reason: str, exit_code: int | None, text: str = "") -> FailureCategory:
    """The category of a failure from its reason, exit code and any text it left (message, log tail).

    Order: a reason that names who ended the replica (OOM killer, disruption, image, refusal, deadline), then a GPU
    fault named in `text`, then the exit code (1-127: the program; a signal without another cause: infrastructure).
    """
    named = REASON_CATEGORIES.get(reason)
    if named is None and reason.startswith("OutOf"):  # OutOfcpu, OutOfnvidia.com/gpu: kubelet admission
        named = Category.INFRASTRUCTURE
    if named is not None:
        return named
    if text and GPU_FAULT.search(text):
        return Category.GPU_ERROR
    if exit_code is not None and 0 < exit_code < 128:
        return Category.USER_CODE
    return Category.INFRASTRUCTURE


def category_of(failure: FailureInfo) -> FailureCategory:
    """The category of a recorded `status.failure` (its message and log tail are the text searched)."""
    text = "\n".join(t for t in (failure.get("message"), failure.get("logTail")) if t)
    return categorize(failure.get("reason") or "", failure.get("exitCode"), text)


def rank_of(layout: Mapping[str, tuple[int, int]], role: str, index: int) -> int:
    """The global rank of replica `index`'s first process where the framework fixes it, else the index."""
    if role in layout:
        first, per_replica = layout[role]
        return first + index * per_replica
    return index


def triage(failure: FailureInfo, layout: Mapping[str, tuple[int, int]]) -> FailureInfo:
    """`failure` with its category and rank filled in (kept when already there: a failure is triaged once)."""
    if "category" not in failure:
        failure["category"] = category_of(failure).value
    if "rank" not in failure and "role" in failure and failure.get("index", -1) >= 0:
        failure["rank"] = rank_of(layout, failure["role"], failure["index"])
    return failure


def avoid_nodes(previous: Sequence[str], failure: FailureInfo) -> list[str]:
    """The nodes the run's restarts avoid: `previous` plus the failure's node when the node was the fault, bounded."""
    node = failure.get("node")
    if not node or failure.get("category") not in FAULTY_NODE_CATEGORIES:
        return list(previous)
    kept = [n for n in previous if n != node] + [node]
    return kept[-c.MAX_AVOID_NODES :]


def log_tail_pod(previous: Mapping[str, object] | None, failure: Mapping[str, object] | None) -> str | None:
    """The pod whose log to read: only for a newly recorded failure (another pod than the previous status') of a
    container that may have logged; None otherwise, so reconciles that record nothing new read nothing."""
    if not failure or not failure.get("pod") or "logTail" in failure:
        return None
    if failure.get("category") in NO_LOG_CATEGORIES:
        return None
    if previous and previous.get("pod") == failure.get("pod"):
        return None
    return str(failure["pod"])


# Credentials a training log may print: `password=...`, `"api_key": "..."`, Authorization headers, well-known token
# formats, private keys. A false positive costs a few masked characters; a false negative leaks a secret into status.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?P<key>[\w.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)"
    r"[\"']?\s*[=:]\s*)(?P<quote>[\"']?)[^\s\"',;}]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|authorization[\"']?\s*[=:]\s*[\"']?basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_TOKENS = re.compile(
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}"  # GitHub
    r"|\bhf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|\bsk-[A-Za-z0-9_-]{20,}"  # OpenAI-style API keys
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs (service account tokens)
)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL)
REDACTED = "***"


def redact(text: str) -> str:
    """`text` with anything that looks like a credential replaced by `***` (URL passwords as mlflow_ops does)."""
    text = _PRIVATE_KEY.sub(REDACTED, text)
    text = redact_urls(text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group('key')}{m.group('quote')}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _TOKENS.sub(REDACTED, text)


def log_tail(raw: str) -> str:
    """What `status.failure.logTail` keeps of a container log's end: the last lines, bounded, credentials redacted."""
    lines = raw.replace("\r\n", "\n").rstrip("\n").split("\n")[-c.FAILURE_LOG_TAIL_LINES :]
    return redact("\n".join(lines))[-c.FAILURE_LOG_TAIL_BYTES :]
