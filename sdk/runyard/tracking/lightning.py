"""Lightning recipe: an `MLFlowLogger` that logs into the Runyard run instead of creating a second, untagged one.

Lightning's `MLFlowLogger()` ignores MLFLOW_RUN_ID: without `run_id` it creates a run of its own (in experiment
`lightning_logs`), so the run Runyard created, tagged and finishes stays empty. `mlflow_logger()` passes the run
Runyard injected. Lightning logs from global rank 0 only (`rank_zero_only`), so one process writes the metrics;
at the end of `fit` its `finalize()` marks the run FINISHED, and Runyard sets the TrainingRun's final status
afterwards (the operator's `finished()` and sweep, or the local runner), so a later failure still shows FAILED.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from runyard import constants as c

# `lightning` (the unified package) first, then the standalone `pytorch_lightning` distribution.
_LOGGER_MODULES = ("lightning.pytorch.loggers", "pytorch_lightning.loggers")


def logger_kwargs(environ: Mapping[str, str], **kwargs: Any) -> dict[str, Any]:
    """`MLFlowLogger` arguments that join the run `environ` names; explicit `kwargs` win.

    Outside Runyard (no MLFLOW_RUN_ID) `kwargs` are returned unchanged, so the same script runs anywhere.
    """
    run_id = environ.get(c.ENV_MLFLOW_RUN_ID)
    if not run_id:
        return dict(kwargs)
    joined: dict[str, Any] = {"run_id": run_id}
    # Passed explicitly: MLFlowLogger reads MLFLOW_TRACKING_URI once, when Lightning is imported, not when built.
    if environ.get(c.ENV_MLFLOW_TRACKING_URI):
        joined["tracking_uri"] = environ[c.ENV_MLFLOW_TRACKING_URI]
    return {**joined, **kwargs}


def mlflow_logger(**kwargs: Any) -> Any:
    """A `lightning.pytorch.loggers.MLFlowLogger` (or `pytorch_lightning`'s) that logs into the Runyard run.

    Example:
        trainer = lightning.Trainer(logger=runyard.tracking.lightning.mlflow_logger(log_model=False))
    """
    # Imported by name: Lightning is optional (and pulls in torch), so neither the SDK nor its type check needs it.
    for module_name in _LOGGER_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.MLFlowLogger(**logger_kwargs(os.environ, **kwargs))
    raise ImportError("runyard.tracking.lightning.mlflow_logger needs Lightning: pip install lightning")
