"""Runyard SDK: TrainingRun API models, pure builders, client and CLI."""

__version__ = "0.1.0"

# --- tracking & in-pod helpers (owned by the tracking feature; mlflow stays unimported until first use) ---------
# `context` is imported eagerly (stdlib only): the submodule runyard.context shares the function's name, and a lazy
# lookup would leave the module, not the function, as the package attribute once the submodule is imported.
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from runyard.context import RunContext, context

if _TYPE_CHECKING:
    from runyard.tracking.logger import MetricLogger, log_metrics

_TRACKING_EXPORTS = {"MetricLogger": "runyard.tracking.logger", "log_metrics": "runyard.tracking.logger"}


def __getattr__(name: str) -> _Any:
    module_name = _TRACKING_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'runyard' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


__all__ = ["MetricLogger", "RunContext", "__version__", "context", "log_metrics"]
# --- end tracking block -----------------------------------------------------------------------------------------

# --- SDK: client, errors, local runs (owned by the SDK feature; kubernetes and torch stay unimported until used) --
# The exceptions are plain classes and load eagerly; everything else resolves on first attribute access, chaining to
# the tracking block's lookup for its names, so `import runyard` (and `runyard --help`) stays fast.
from runyard.exceptions import (  # noqa: E402 - after the tracking block by design
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
    from runyard.client import Client, LogLine, RunEvent, WatchEvent
    from runyard.local import LocalRunResult, run_local

_SDK_EXPORTS = {
    "Client": "runyard.client",
    "LogLine": "runyard.client",
    "RunEvent": "runyard.client",
    "WatchEvent": "runyard.client",
    "LocalRunResult": "runyard.local",
    "run_local": "runyard.local",
    "TrainingRun": "runyard.api",
    "Phase": "runyard.api",
}
_tracking_getattr = __getattr__


def __getattr__(name: str) -> _Any:  # type: ignore[no-redef]  # extends the tracking block's lookup
    module_name = _SDK_EXPORTS.get(name)
    if module_name is None:
        return _tracking_getattr(name)
    import importlib

    value = getattr(importlib.import_module(module_name), name)
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
    "run_local",
]
# --- end SDK block ----------------------------------------------------------------------------------------------
