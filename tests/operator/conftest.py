"""Operator test helpers re-exported for the tests in this folder; the fixtures live in tests/operator_fixtures.py."""

from tests.operator_fixtures import (
    CRD_FILE,
    OperatorProcess,
    Runs,
    free_port,
    job_failed,
    load_example,
    training_run,
    wait_until,
)

__all__ = [
    "CRD_FILE",
    "OperatorProcess",
    "Runs",
    "free_port",
    "job_failed",
    "load_example",
    "training_run",
    "wait_until",
]
