"""Fixtures for tracking tests: a TrainingRun factory and a helper that starts rank processes with rendered env."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from runyard.api import TrainingRun
from tests.unit.factories import UID, manifest

RANK_MAIN = Path(__file__).parent / "rank_main.py"
# Parent env without any tracker configuration of the machine running the tests.
_DROP = ("MLFLOW_", "WANDB_", "COMET_", "RUNYARD_", "NEPTUNE_", "CLEARML_", "POLYAXON_")
QUIET = {
    "WANDB_SILENT": "true",
    "COMET_AUTO_LOG_GIT_METADATA": "false",
    "COMET_AUTO_LOG_GIT_PATCH": "false",
    "COMET_AUTO_LOG_ENV_DETAILS": "false",
    "COMET_AUTO_LOG_CODE": "false",
    "COMET_DISABLE_AUTO_LOGGING": "1",
    "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1",
    "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING": "1",
}


def make_tracked_run(name: str = "demo", uid: str = UID, **tracking: Any) -> TrainingRun:
    spec = {
        "framework": "pytorch",
        "command": ["python", "train.py"],
        "replicas": {"node": {"replicas": 2, "resources": {"gpus": 1}}},
        "tracking": tracking or None,
    }
    body = manifest(name, spec, uid=uid)
    body["metadata"]["annotations"] = {"runyard.dev/git-commit": "abc123", "runyard.dev/git-branch": "main"}
    return TrainingRun.model_validate(body)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_DROP)}


def run_ranks(envs: list[Mapping[str, str]], cwd: Path, timeout: float = 240) -> list[str]:
    """Start one rank_main.py process per env (concurrently), wait, and return their outputs; fails on non-zero exit."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(RANK_MAIN)],
            env={**clean_env(), **QUIET, "RANK_TMP": str(cwd), **env},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for env in envs
    ]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        outputs.append(out)
    return outputs


@pytest.fixture
def tracked_run() -> Callable[..., TrainingRun]:
    return make_tracked_run


# The real clients (mlflow -> sqlalchemy, alembic, wandb, comet) emit deprecation noise that is not ours to fix.
THIRD_PARTY_WARNINGS = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]
