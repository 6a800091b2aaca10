"""Every TrainingRun in examples/ is accepted by the CRD and reaches Succeeded on the local cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, Cluster
from tests.operator.conftest import Runs

EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_succeeds_on_the_cluster(path: Path, cluster: Cluster, runs: Runs) -> None:
    import yaml

    manifest = yaml.safe_load(path.read_text())
    manifest["metadata"]["namespace"] = runs.namespace
    # kwok runs no containers: each pod "succeeds" after a second, which is what the operator acts on.
    template = manifest["spec"].setdefault("podTemplate", {}).setdefault("metadata", {})
    template.setdefault("annotations", {})["sim.runyard.dev/duration"] = "1s"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    status = runs.wait_phase(manifest["metadata"]["name"], "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status
