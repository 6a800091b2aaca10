"""Cluster-tier helpers (runs, waits, an operator process) for the tests here; the fixtures live in tests/operator_fixtures.py."""

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
