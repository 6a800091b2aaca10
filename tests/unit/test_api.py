"""The pydantic API models: camelCase wire format, snake_case Python, defaults, and strictness."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runyard import constants as c
from runyard import frameworks
from runyard.api import CleanPodPolicy, FailureCategory, Phase, ReplicaSpec, TrainingRun, TrainingRunSpec
from runyard.validation import validate_manifest
from tests.unit.factories import SPECS, make_run, manifest


def test_wire_format_is_camel_case_and_sparse() -> None:
    run = make_run("mpi-large")
    wire = run.to_manifest()
    assert wire["spec"]["mpi"] == {"slotsPerWorker": 8, "implementation": "Intel", "sshPort": 2022}
    assert wire["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    assert "status" not in wire and "queueName" not in wire["spec"]
    assert TrainingRun.model_validate(wire) == run


def test_python_side_is_snake_case_with_defaults() -> None:
    spec = TrainingRunSpec(framework="jax", image="img", replicas={"node": ReplicaSpec(replicas=2)})
    assert spec.run_policy.backoff_limit == c.DEFAULT_BACKOFF_LIMIT
    assert spec.run_policy.clean_pod_policy is CleanPodPolicy.RUNNING
    assert spec.run_policy.retry_on.exit_codes is None
    assert spec.artifacts.path == c.DEFAULT_ARTIFACT_DIR
    assert frameworks.port_of(spec) == c.DEFAULT_JAX_PORT
    assert frameworks.roles_of(spec) == ["node"]


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
    assert frameworks.roles_of(run.spec) == ["chief", "worker", "ps", "evaluator"]


@pytest.mark.parametrize(
    ("categories", "problem"),
    [
        (["NodeLost", "GPUError"], None),
        (["NodeLost", "NodeLost"], "must not repeat NodeLost"),
        (["Flaky"], "UserCode"),  # the enum's values are listed
    ],
)
def test_retry_categories_are_checked_by_runyard_validate(categories: list[str], problem: str | None) -> None:
    doc = manifest("r", {**SPECS["generic-small"], "runPolicy": {"retryOn": {"categories": categories}}})
    problems = [str(p) for p in validate_manifest(doc)]
    if problem is None:
        assert problems == []
        retry_on = TrainingRun.model_validate(doc).spec.run_policy.retry_on
        assert retry_on.categories == [FailureCategory.NODE_LOST, FailureCategory.GPU_ERROR]
    else:
        assert len(problems) == 1 and "spec.runPolicy.retryOn.categories" in problems[0] and problem in problems[0]
