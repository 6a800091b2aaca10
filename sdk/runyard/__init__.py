"""Runyard SDK: TrainingRun API models, pure builders, client and CLI."""

__version__ = "0.1.0"

# The exceptions and the in-pod `context` are plain and load eagerly; everything else resolves on first attribute
# access, so `import runyard` (and `runyard --help`) never imports kubernetes, mlflow or torch.
# `context` must be eager: the submodule runyard.context shares the function's name, and a lazy lookup would leave the
# module, not the function, as the package attribute once the submodule is imported.
import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from runyard.context import RunContext, context
from runyard.exceptions import (
    AlreadyExistsError,
    ApiError,
    ClientError,
    LocalRunError,
    NotFoundError,
    RunFailedError,
    RunyardError,
    ValidationFailedError,
    WaitTimeoutError,
)

if _TYPE_CHECKING:
    from runyard.api import Phase, TrainingRun
    from runyard.client import Client, LogLine, Replica, RunEvent, WatchEvent
    from runyard.local import LocalRunResult, run_local
    from runyard.progress import report_progress, set_total_steps
    from runyard.stopping import on_stop, should_stop
    from runyard.tracking.logger import MetricLogger, log_metrics

_LAZY_EXPORTS = {
    "Client": "runyard.client",
    "LogLine": "runyard.client",
    "Replica": "runyard.client",
    "RunEvent": "runyard.client",
    "WatchEvent": "runyard.client",
    "LocalRunResult": "runyard.local",
    "run_local": "runyard.local",
    "TrainingRun": "runyard.api",
    "Phase": "runyard.api",
    "MetricLogger": "runyard.tracking.logger",
    "log_metrics": "runyard.tracking.logger",
    "report_progress": "runyard.progress",
    "set_total_steps": "runyard.progress",
    "on_stop": "runyard.stopping",
    "should_stop": "runyard.stopping",
}


def __getattr__(name: str) -> _Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'runyard' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module_name), name)
    globals()[name] = value  # resolve once
    return value


__all__ = [
    "AlreadyExistsError",
    "ApiError",
    "Client",
    "ClientError",
    "LocalRunError",
    "LocalRunResult",
    "LogLine",
    "MetricLogger",
    "NotFoundError",
    "Phase",
    "Replica",
    "RunContext",
    "RunEvent",
    "RunFailedError",
    "RunyardError",
    "TrainingRun",
    "ValidationFailedError",
    "WaitTimeoutError",
    "WatchEvent",
    "__version__",
    "context",
    "log_metrics",
    "on_stop",
    "report_progress",
    "run_local",
    "set_total_steps",
    "should_stop",
]
