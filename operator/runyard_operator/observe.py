"""Pure summaries of child Jobs and Pods: the few fields reconcile needs, small enough to cache for 10k runs."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runyard import constants as c


@dataclass(frozen=True, slots=True)
class Termination:
    """Why a container stopped (from the pod's containerStatuses)."""

    container: str
    exit_code: int
    reason: str
    message: str
    finished_at: str = ""

    @property
    def signalled(self) -> bool:
        """Killed by a signal (SIGKILL from the OOM killer, a node agent, a preemption): exit code 128 + signal."""
        return self.exit_code >= 128


@dataclass(frozen=True, slots=True)
class JobView:
    """What reconcile needs to know about one child Job."""

    name: str
    uid: str
    run_uid: str
    role: str
    attempt: int
    suspended: bool
    active: int
    ready: int
    succeeded: int
    failed: int
    complete: bool
    failed_condition: bool
    failure_reason: str
    failure_message: str
    deleting: bool
    owned: bool = True  # controlled by the run it is labelled for (owner reference UID), not only labelled so
    created: str = ""
    namespace: str = ""
    # Its replicas ended while it was suspended (runPolicy.suspend, a Kueue eviction): stopped, not failed or done.
    stopped: bool = False
    # When its Suspended condition turned True (RFC 3339), while it is suspended.
    suspended_since: str = ""

    @property
    def recorded_failure(self) -> tuple[int | None, str, str]:
        """(exit code, reason, pod) the Job's podFailurePolicy wrote into its Failed condition, when it did.

        This survives the failed pod: whoever deleted it, and whatever the operator's cache missed.
        """
        exit_match = _JOB_EXIT.search(self.failure_message)
        if exit_match:
            return int(exit_match.group(2)), "Error", exit_match.group(1)
        disrupted = _JOB_DISRUPTED.search(self.failure_message)
        if disrupted:
            return None, "Disrupted", disrupted.group(1)
        return None, "", ""


@dataclass(frozen=True, slots=True)
class PodView:
    """What reconcile needs to know about one child Pod."""

    name: str
    uid: str
    run_uid: str
    role: str
    attempt: int
    index: int
    phase: str
    node: str
    ready: bool
    unschedulable_message: str
    termination: Termination | None
    gpus: int
    deleting: bool
    start_time: str
    reason: str
    message: str
    # Why the main container is not running yet (ErrImagePull, CreateContainerConfigError...), when it says.
    waiting_reason: str = ""
    waiting_message: str = ""
    # DisruptionTarget's reason (EvictionByEvictionAPI, PreemptionByScheduler, DeletionByTaintManager...), if set.
    disruption: str = ""
    owner_uid: str = ""  # the controlling Job's UID
    namespace: str = ""
    created: str = ""


# podFailurePolicy messages of the Job controller (pkg/controller/job/pod_failure_policy.go).
_JOB_EXIT = re.compile(r"for pod [^/\s]+/(\S+) failed with exit code (\d+)")
_JOB_DISRUPTED = re.compile(r"Pod [^/\s]+/(\S+) has condition DisruptionTarget")


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _labels(body: Mapping[str, Any]) -> Mapping[str, str]:
    return body.get("metadata", {}).get("labels") or {}


def summarize_job(body: Mapping[str, Any]) -> JobView:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status") or {}
    labels = _labels(body)
    conditions = {cond.get("type"): cond for cond in status.get("conditions") or [] if cond.get("status") == "True"}
    failed = conditions.get("Failed") or conditions.get("FailureTarget") or {}
    complete = "Complete" in conditions or "SuccessCriteriaMet" in conditions
    return JobView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        run_uid=labels.get(c.LABEL_RUN_UID, ""),
        role=labels.get(c.LABEL_ROLE, ""),
        attempt=_int(labels.get(c.LABEL_RESTART_ATTEMPT)),
        suspended=bool(spec.get("suspend")),
        active=_int(status.get("active")),
        ready=_int(status.get("ready")),
        succeeded=_int(status.get("succeeded")),
        failed=_int(status.get("failed")),
        # SuccessCriteriaMet/FailureTarget arrive before Complete/Failed (the Job controller first cleans up pods).
        complete=complete,
        failed_condition=bool(failed),
        failure_reason=str(failed.get("reason", "")),
        failure_message=str(failed.get("message", "")),
        deleting=bool(meta.get("deletionTimestamp")),
        owned=any(o.get("uid") == labels.get(c.LABEL_RUN_UID) for o in meta.get("ownerReferences") or []),
        created=str(meta.get("creationTimestamp") or ""),
        namespace=str(meta.get("namespace") or ""),
        stopped=_stopped(
            bool(spec.get("suspend")), conditions, bool(failed) or complete, _int(status.get("succeeded"))
        ),
        suspended_since=str((conditions.get("Suspended") or {}).get("lastTransitionTime") or "")
        if spec.get("suspend")
        else "",
    )


def _stopped(suspended: bool, conditions: Mapping[str, Mapping[str, Any]], finished: bool, succeeded: int) -> bool:
    """Whether a suspended Job's replicas ended because of the suspension (the Job's own conditions say when).

    Suspending a Job deletes its pods; a trainer stopped that way exits non-zero (SIGTERM, or torchrun's 1), which
    the podFailurePolicy turns into a Failed Job, and one that exits 0 completes its index. Either way the Job cannot
    resume: it ended after (or in the second of) its Suspended condition, so it is replaced, not counted as a failure.
    """
    since = conditions.get("Suspended")
    if not suspended or since is None or not (finished or succeeded):
        return False
    ended = [
        str(conditions[t].get("lastTransitionTime") or "")
        for t in ("Failed", "FailureTarget", "Complete", "SuccessCriteriaMet")
        if t in conditions
    ]
    # RFC 3339 UTC times of one clock compare as strings; a Job with only a succeeded count ended while suspended.
    return not ended or min(ended) >= str(since.get("lastTransitionTime") or "")


# torchrun (the PyTorch launch) exits 1 whatever killed its worker, and ends its output with a summary of the first
# failure ("Root Cause (first observed failure)", "exitcode  : -9" for SIGKILL). The summary reaches the termination
# message either as torchrun's error file (TORCHELASTIC_ERROR_FILE, JSON, when the worker recorded its error) or as
# the log tail (terminationMessagePolicy FallbackToLogsOnError).
_ELASTIC_ROOT_CAUSE = "Root Cause (first observed failure)"
_ELASTIC_EXITCODE = re.compile(r"exitcode\s*:\s*(-?\d+)")
_ELASTIC_RANK = re.compile(r"rank\s*:\s*(\d+)")


def elastic_failure(message: str) -> tuple[int, str] | None:
    """(the worker's exit code as a shell reports it, a one-line summary) from torchrun's failure summary, if any.

    A worker killed by signal N reports -N; as a container exit code that is 128 + N, so the retry policy treats a
    rank killed by the OOM killer or a preemption under torchrun like one killed without it.
    """
    text = message
    if message.lstrip().startswith("{"):
        try:
            text = str((json.loads(message).get("message") or {}).get("message") or "")
        except (ValueError, AttributeError):
            return None
    if _ELASTIC_ROOT_CAUSE not in text and "ChildFailedError" not in text:
        return None
    summary = text[text.rfind(_ELASTIC_ROOT_CAUSE) :] if _ELASTIC_ROOT_CAUSE in text else text
    found = _ELASTIC_EXITCODE.search(summary)
    if not found:
        return None
    code = int(found.group(1))
    exit_code = 128 - code if code < 0 else code
    rank = _ELASTIC_RANK.search(summary)
    where = f"rank {rank.group(1)}" if rank else "a worker"
    detail = f"signal {-code}" if code < 0 else f"exit code {code}"
    return exit_code, f"torchrun: {where} failed with {detail}"


def _termination(status: Mapping[str, Any]) -> Termination | None:
    """The first container that ended badly, else the first that ended at all."""
    found: Termination | None = None
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if not term:
            continue
        exit_code = _int(term.get("exitCode"))
        message = str(term.get("message", ""))
        elastic = elastic_failure(message) if exit_code != 0 else None
        if elastic:
            # The worker's own exit code, the summary first, then as much of the log tail as fits.
            exit_code, summary = elastic
            message = f"{summary}\n{message[-(1023 - len(summary)) :]}"
        view = Termination(
            container=str(cs.get("name", "")),
            exit_code=exit_code,
            reason=str(term.get("reason", "")),
            message=message[-1024:],
            finished_at=str(term.get("finishedAt") or ""),
        )
        if view.exit_code != 0:
            return view
        found = found or view
    return found


def _waiting(status: Mapping[str, Any]) -> tuple[str, str]:
    """The first container (init containers first) waiting with a reason other than plain ContainerCreating."""
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason and reason not in ("ContainerCreating", "PodInitializing"):
            return reason, f"{cs.get('name', '')}: {waiting.get('message') or reason}"[:1024]
    return "", ""


def _gpus(spec: Mapping[str, Any]) -> int:
    total = 0
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or resources.get("requests") or {}
        total += _int(limits.get(c.GPU_RESOURCE))
    return total


def summarize_pod(body: Mapping[str, Any]) -> PodView:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status") or {}
    labels = _labels(body)
    annotations = meta.get("annotations") or {}
    conditions = {cond.get("type"): cond for cond in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    unschedulable = ""
    if scheduled.get("status") == "False":
        unschedulable = f"{scheduled.get('reason', 'Unschedulable')}: {scheduled.get('message', '')}".strip()
    index = annotations.get(c.ANNOTATION_JOB_COMPLETION_INDEX, labels.get(c.LABEL_REPLICA_INDEX))
    waiting = _waiting(status)
    disruption = conditions.get(c.POD_CONDITION_DISRUPTION) or {}
    controller: Mapping[str, Any] = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), {})
    return PodView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        run_uid=labels.get(c.LABEL_RUN_UID, ""),
        role=labels.get(c.LABEL_ROLE, ""),
        attempt=_int(labels.get(c.LABEL_RESTART_ATTEMPT)),
        index=_int(index, -1),
        phase=str(status.get("phase", "Pending")),
        node=str(spec.get("nodeName") or ""),
        ready=(conditions.get("Ready") or {}).get("status") == "True",
        unschedulable_message=unschedulable[:1024],
        termination=_termination(status),
        gpus=_gpus(spec),
        deleting=bool(meta.get("deletionTimestamp")),
        start_time=str(status.get("startTime") or ""),
        reason=str(status.get("reason") or ""),
        message=str(status.get("message") or "")[:1024],
        waiting_reason=waiting[0],
        waiting_message=waiting[1],
        disruption=str(disruption.get("reason") or "Disrupted") if disruption.get("status") == "True" else "",
        owner_uid=str(controller.get("uid") or "") if controller.get("kind") == "Job" else "",
        namespace=str(meta.get("namespace") or ""),
        created=str(meta.get("creationTimestamp") or ""),
    )
