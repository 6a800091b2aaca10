"""Golden YAML of build_children per framework at two sizes; regenerate with UPDATE_GOLDEN=1 or --update-golden."""

from __future__ import annotations

from dataclasses import replace
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


def test_restart_avoiding_faulty_nodes_matches_golden(update_golden: bool) -> None:
    """A gang restart after a GPU or node fault: the spec's node affinity keeps its terms, each excludes the nodes."""
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]}]
            }
        }
    }
    run = make_run("pytorch-small", affinity=affinity)
    ctx = replace(CTX, restart_attempt=2, avoid_nodes=("gpu-7", "gpu-3"))
    rendered = dump_manifests(build_children(run, ctx))
    path = GOLDEN / "pytorch-restart-avoid-nodes.yaml"
    if update_golden:
        path.write_text(rendered)
    assert path.exists(), f"{path} missing: run pytest tests/unit --update-golden"
    assert rendered == path.read_text(), f"{path.name} differs: review the diff, then run with UPDATE_GOLDEN=1"
