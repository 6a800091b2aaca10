"""Loads a bench/gpu script as a module for its CI tests (bench/ is not a package; its scripts run by path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]
BENCH_GPU = ROOT / "bench" / "gpu"


def load(name: str) -> ModuleType:
    """bench/gpu/<name>.py, registered under `name`: dataclasses resolve their annotations through sys.modules, and
    a script importing a sibling (hardware_check -> accounting_check) gets the same module object."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH_GPU / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
