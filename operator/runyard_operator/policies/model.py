"""The lifecycle's vocabulary: phases, reasons, the run's facts, the retry policy, a rule's verdict and the decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from runyard import constants as c
from runyard.api import Phase

# The API's Phase enum is the one list of phases; plain str aliases keep status dicts JSON-ready.
PENDING: str = Phase.PENDING.value
QUEUED: str = Phase.QUEUED.value
STARTING: str = Phase.STARTING.value
RUNNING: str = Phase.RUNNING.value
RESTARTING: str = Phase.RESTARTING.value
SUSPENDED: str = Phase.SUSPENDED.value
SUCCEEDED: str = Phase.SUCCEEDED.value
FAILED: str = Phase.FAILED.value
TERMINAL = frozenset({SUCCEEDED, FAILED})

REASON_DEADLINE = "DeadlineExceeded"
REASON_BACKOFF = "BackoffLimitExceeded"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_INVALID = "InvalidSpec"
REASON_TEMPLATE_LOCKED = "TemplateLocked"
REASON_TEMPLATE_NOT_FOUND = "TemplateNotFound"
REASON_EVICTED = "Evicted"
REASON_PREEMPTED = "Preempted"
REASON_NODE_LOST = "NodeLost"
REASON_DISRUPTED = "Disrupted"
REASON_UNKNOWN = "Unknown"
REASON_JOB_DELETED = "JobDeleted"
REASON_FAILED_CREATE = "FailedCreate"
# Refusals that end a run before it runs: the API server rejected a child, a child's name is someone else's, the
# platform's namespace or pod policy refuses it.
REASON_REJECTED = "Rejected"
REASON_NAME_CONFLICT = "NameConflict"
REASON_NAMESPACE_REFUSED = "NamespaceNotAllowed"
REASON_POLICY = "PolicyViolation"


# The container never ran (runc could not exec its command: a missing binary, a bad mount): exit code 128 is runc's,
# not a signal, and a gang restart would fail the same way. Retried only when retryOn.reasons names the reason.
NOT_STARTED_REASONS = frozenset({"StartError", "ContainerCannotRun"})


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures restart the gang. Without explicit exit codes, Kubeflow's ExitCode rule: >= 128 retries.

    A failure is retried when its category, its reason or its exit code is allowed (`retryOn` of the spec).
    """

    exit_codes: frozenset[int] | None = None
    reasons: frozenset[str] = frozenset(c.DEFAULT_RETRY_REASONS)
    categories: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls, exit_codes: Sequence[int] | None, reasons: Sequence[str] | None, categories: Sequence[str] | None
    ) -> RetryPolicy:
        """The policy `spec.runPolicy.retryOn` asks for.

        Naming categories replaces the defaults of the other two (infrastructure by exit code and by reason), so
        `categories: [NodeLost]` retries node loss only; exit codes and reasons still count where they are set.
        """
        if categories is None:
            return cls(
                exit_codes=frozenset(exit_codes) if exit_codes is not None else None,
                **({"reasons": frozenset(reasons)} if reasons is not None else {}),
            )
        return cls(frozenset(exit_codes or ()), frozenset(reasons or ()), frozenset(categories))

    def allows(self, exit_code: int | None, reason: str, category: str | None = None) -> bool:
        if reason in self.reasons or (category is not None and category in self.categories):
            return True
        if exit_code is None or reason in NOT_STARTED_REASONS:
            return False
        return exit_code in self.exit_codes if self.exit_codes is not None else exit_code >= 128


@dataclass(frozen=True)
class RunFacts:
    """The parts of a TrainingRun the lifecycle depends on, already validated."""

    name: str
    generation: int
    framework: str
    replicas: Mapping[str, int]
    success_roles: tuple[str, ...]
    backoff_limit: int = 0
    backoff_seconds: float = 0.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    active_deadline_seconds: int | None = None
    start_timeout_seconds: int = c.DEFAULT_START_TIMEOUT_SECONDS
    ttl_seconds_after_finished: int | None = None
    clean_pod_policy: str = "Running"
    suspend: bool = False
    queue_name: str | None = None
    # role -> (global rank of replica 0's first process, processes per replica), where the framework fixes ranks.
    rank_layout: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    stall_timeout_seconds: int | None = None
    restart_on_stall: bool = False

    @property
    def total_replicas(self) -> int:
        return sum(self.replicas.values())


class Verdict(NamedTuple):
    """What one rule concluded: the phase and the reason and message its conditions carry."""

    phase: str
    reason: str
    message: str


@dataclass
class Decision:
    """What reconcile should do next. Executed by the controller; nothing here talks to the API.

    `status` is filled from the typed draft at the end of `lifecycle.decide`: a dict, ready to diff and patch.
    """

    status: dict[str, Any] = field(default_factory=dict)
    create_children: bool = False
    delete_jobs: list[str] = field(default_factory=list)
    suspend_jobs: dict[str, bool] = field(default_factory=dict)
    delete_run: bool = False
    requeue_at: datetime | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    # The decision waits on children the caches show: read them from the API and decide again (a watch that relisted
    # after an apiserver restart never reports what was deleted meanwhile, so a gone Job can linger in a cache).
    confirm_children: bool = False
    # The children to create replace replicas a suspension stopped: they get RUNYARD_RESUME_FROM like a restart's.
    resume: bool = False
    # The new status only reports progress on the way in (replicas being created or started, counts moving): nobody
    # needs it within a second, so the controller writes it only if it lasts (bench/RESULTS.md, writes per run).
    quiet: bool = False

    def requeue_by(self, when: datetime | None) -> None:
        """Wake up at `when` unless an earlier wake-up is already planned."""
        if when is not None:
            self.requeue_at = min(filter(None, [self.requeue_at, when]))
