"""Unit-test options and fixtures: `--update-golden` (or UPDATE_GOLDEN=1) rewrites tests/unit/golden/."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    # Only registered when pytest starts in or below tests/unit; UPDATE_GOLDEN=1 works from anywhere.
    parser.addoption("--update-golden", action="store_true", default=False, help="rewrite golden YAML files")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether golden files are to be rewritten instead of compared."""
    return bool(request.config.getoption("--update-golden", default=False)) or os.environ.get("UPDATE_GOLDEN") == "1"
