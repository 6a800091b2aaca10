"""Experiment tracking: env rendering over the tracker registry, local-run tracking, in-pod logger and recipes (lazy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runyard.tracking.local import LocalTracking, start_local_tracking
    from runyard.tracking.logger import MetricLogger, log_metrics

__all__ = ["LocalTracking", "MetricLogger", "log_metrics", "start_local_tracking"]

# Lazy attributes: `import runyard.tracking` must not import mlflow (or anything heavy) before it is used.
_LAZY = {
    "LocalTracking": "runyard.tracking.local",
    "start_local_tracking": "runyard.tracking.local",
    "MetricLogger": "runyard.tracking.logger",
    "log_metrics": "runyard.tracking.logger",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
