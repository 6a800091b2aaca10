"""The exceptions the Runyard SDK raises; catch `RunyardError` to catch them all.

```
RunyardError                      base of everything the SDK raises on purpose
├── ClientError                   talking to the Kubernetes API failed
│   ├── NotFoundError             the run (or its namespace) does not exist          CLI exit 3
│   ├── AlreadyExistsError        a run with that name already exists                CLI exit 5
│   └── ApiError                  any other API answer, the API server unreachable,  CLI exit 5
│                                 or no usable kubeconfig (file, context)
├── ValidationFailedError         invalid input: the manifest (client- or server-    CLI exit 2
│                                 side), its file, a run name or a namespace
├── RunFailedError                the run ended Failed; carries status.failure       CLI exit 1
├── WaitTimeoutError              the run did not reach the wanted phase in time     CLI exit 4
└── LocalRunError                 a local run could not be started                   CLI exit 1
```

Every message is one line that names the file, field or object and says what is wrong (`ValidationFailedError`
also lists its problems in `.problems`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runyard.api import FailureInfo, TrainingRun

__all__ = [
    "AlreadyExistsError",
    "ApiError",
    "ClientError",
    "LocalRunError",
    "NotFoundError",
    "RunFailedError",
    "RunyardError",
    "ValidationFailedError",
    "WaitTimeoutError",
]


class RunyardError(Exception):
    """Base class of every error the Runyard SDK raises on purpose."""


class ClientError(RunyardError):
    """A Kubernetes API call failed; `status` is the HTTP status (None for connection problems)."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFoundError(ClientError):
    """The TrainingRun (or its namespace) does not exist."""


class AlreadyExistsError(ClientError):
    """A TrainingRun with this name already exists in the namespace."""


class ApiError(ClientError):
    """Any other failure of the API server or of the connection to it, or no usable configuration to reach it:
    a kubeconfig that is missing, not YAML or not a kubeconfig, or lacks the wanted context (`status` None)."""


class ValidationFailedError(RunyardError):
    """Invalid input: the manifest is not a valid TrainingRun (`problems` lists each as `path: message`), its file
    cannot be read as YAML (missing, a directory, not UTF-8, malformed), or a run name or namespace is not a valid
    Kubernetes name."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class RunFailedError(RunyardError):
    """The run ended in phase Failed.

    Attributes:
        run: the run as last seen.
        failure: `status.failure` (role, index, pod, container, exitCode, reason, message), when the operator set it.
    """

    def __init__(self, run: TrainingRun) -> None:
        self.run = run
        self.failure: FailureInfo | None = run.status.failure if run.status else None
        super().__init__(describe_failure(run))

    @property
    def exit_code(self) -> int | None:
        """Exit code of the failed container, when known."""
        return self.failure.exit_code if self.failure else None


class WaitTimeoutError(RunyardError):
    """The run did not reach the wanted phase before the timeout; `run` is the run as last seen (if any)."""

    def __init__(self, message: str, run: TrainingRun | None = None) -> None:
        super().__init__(message)
        self.run = run


class LocalRunError(RunyardError):
    """A local run could not be started (missing launcher, unsupported spec, no free ports...)."""


def describe_failure(run: TrainingRun) -> str:
    """One line saying why a failed run failed: which replica, exit code, reason and message."""
    status = run.status
    failure = status.failure if status else None
    name = run.metadata.name or "<unnamed>"
    if failure is None:
        detail = (status.message if status else None) or "no failure details in status"
        return f"run {name} failed: {detail}"
    who = failure.pod or (f"{failure.role}-{failure.index}" if failure.role is not None else "a replica")
    parts = [f"run {name} failed: {who}"]
    if failure.exit_code is not None:
        parts.append(f"exit code {failure.exit_code}")
    if failure.reason:
        parts.append(f"reason {failure.reason}")
    text = ", ".join(parts)
    return f"{text}: {failure.message}" if failure.message else text
