"""The pydantic API models: camelCase wire format, snake_case Python, defaults, and strictness."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runyard import constants as c
from runyard.api import CleanPodPolicy, Framework, Phase, ReplicaSpec, TrainingRun, TrainingRunSpec
from tests.unit.factories import SPECS, make_run, manifest


def test_wire_format_is_camel_case_and_sparse() -> None:
    run = make_run("mpi-large")
    wire = run.to_manifest()
    assert wire["spec"]["mpi"] == {"slotsPerWorker": 8, "implementation": "Intel", "sshPort": 2022}
    assert wire["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    assert "status" not in wire and "queueName" not in wire["spec"]
    assert TrainingRun.model_validate(wire) == run


def test_python_side_is_snake_case_with_defaults() -> None:
    spec = TrainingRunSpec(framework=Framework.JAX, image="img", replicas={"node": ReplicaSpec(replicas=2)})
    assert spec.run_policy.backoff_limit == c.DEFAULT_BACKOFF_LIMIT
    assert spec.run_policy.clean_pod_policy is CleanPodPolicy.RUNNING
    assert spec.run_policy.retry_on.exit_codes is None
    assert spec.artifacts.path == c.DEFAULT_ARTIFACT_DIR
    assert spec.default_port() == c.DEFAULT_JAX_PORT
    assert spec.roles() == ["node"]


def test_status_is_lenient() -> None:
    doc = manifest("s", SPECS["generic-small"])
    doc["status"] = {
        "phase": "Running",
        "readyReplicas": 1,
        "somethingNew": True,
        "gpu": {"gpuHours": 1.5, "energyKWh": 0.2},
    }
    run = TrainingRun.model_validate(doc)
    assert run.status is not None and run.status.phase is Phase.RUNNING
    assert run.status.gpu is not None and run.status.gpu.gpu_hours == 1.5
    assert run.to_manifest()["status"] == {
        "phase": "Running",
        "readyReplicas": 1,
        "gpu": {"gpuHours": 1.5, "energyKWh": 0.2},
    }


def test_spec_is_strict() -> None:
    doc = manifest("s", {**SPECS["generic-small"], "replicas": {"node": {"replicas": "2"}}})
    with pytest.raises(ValidationError):
        TrainingRun.model_validate(doc)


def test_roles_come_out_in_canonical_order() -> None:
    run = make_run("tensorflow-large")
    assert run.spec.roles() == ["chief", "worker", "ps", "evaluator"]
