"""The SDK's public surface: an explicit, sorted `__all__` whose names all resolve, and a light `import runyard`."""

from __future__ import annotations

import subprocess
import sys

import runyard
from runyard import exceptions

EXPECTED = {
    # SDK block
    "AlreadyExistsError",
    "ApiError",
    "Client",
    "ClientError",
    "LocalRunError",
    "LocalRunResult",
    "LogLine",
    "NotFoundError",
    "Phase",
    "Replica",
    "RunEvent",
    "RunFailedError",
    "RunyardError",
    "TrainingRun",
    "ValidationFailedError",
    "WaitTimeoutError",
    "WatchEvent",
    "run_local",
    "__version__",
    # tracking block
    "MetricLogger",
    "RunContext",
    "context",
    "log_metrics",
    # progress block
    "report_progress",
    "set_total_steps",
    # stop block
    "on_stop",
    "should_stop",
}


def test_all_is_explicit_sorted_and_resolves() -> None:
    assert set(runyard.__all__) == EXPECTED
    assert runyard.__all__ == sorted(runyard.__all__)
    for name in runyard.__all__:
        assert getattr(runyard, name) is not None, name


def test_unknown_attribute_raises() -> None:
    try:
        runyard.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_exception_tree() -> None:
    e = exceptions
    for cls in (e.NotFoundError, e.AlreadyExistsError, e.ApiError):
        assert issubclass(cls, e.ClientError)
    for cls in (e.ClientError, e.ValidationFailedError, e.RunFailedError, e.WaitTimeoutError, e.LocalRunError):
        assert issubclass(cls, e.RunyardError)
    assert set(e.__all__) <= set(runyard.__all__)
    assert "RunyardError" in (e.__doc__ or "") and "└── LocalRunError" in (e.__doc__ or "")


def test_import_runyard_stays_light() -> None:
    code = (
        "import sys, runyard; "
        "print([m for m in ('kubernetes', 'torch', 'mlflow', 'pydantic', 'yaml', 'rich') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
