"""Golden YAML of build_children per framework at two sizes; regenerate with UPDATE_GOLDEN=1 or --update-golden."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard.builders import build_children
from runyard.validation import dump_manifests
from tests.unit.factories import CTX, SPECS, make_run

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("case", sorted(SPECS))
def test_children_match_golden(case: str, update_golden: bool) -> None:
    rendered = dump_manifests(build_children(make_run(case), CTX))
    path = GOLDEN / f"{case}.yaml"
    if update_golden:
        path.write_text(rendered)
    assert path.exists(), f"{path} missing: run pytest tests/unit --update-golden"
    assert rendered == path.read_text(), f"{path.name} differs: review the diff, then run with UPDATE_GOLDEN=1"
