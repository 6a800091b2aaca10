"""validate_manifest: every invalid example is rejected naming its field; valid examples pass; rules and updates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runyard.api import TrainingRun
from runyard.validation import (
    ManifestError,
    Problem,
    load_manifests,
    parse_run,
    validate_manifest,
    validate_update,
)
from tests.unit.factories import SPECS, manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
VALID = sorted(EXAMPLES.glob("*.yaml"))


def expected_path(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <field path>'"
    return first.removeprefix("# expect: ").strip()


def paths(problems: list[Problem]) -> list[str]:
    return [p.path for p in problems]


def test_there_are_invalid_examples() -> None:
    assert len(INVALID) >= 7 and len(VALID) >= 5


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_example_is_rejected_naming_the_field(path: Path) -> None:
    (doc,) = load_manifests(path)
    problems = validate_manifest(doc)
    assert paths(problems) == [expected_path(path)], problems
    assert all(p.message for p in problems)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_example_passes_and_round_trips(path: Path) -> None:
    (doc,) = load_manifests(path)
    assert validate_manifest(doc) == []
    run = TrainingRun.model_validate(doc)
    assert TrainingRun.model_validate(run.to_manifest()) == run


def case(spec: dict[str, Any], name: str = "r") -> list[Problem]:
    return validate_manifest(manifest(name, spec))


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        (
            {"framework": "tensorflow", "replicas": {"chief": {"replicas": 2}, "worker": {}}},
            "spec.replicas.chief.replicas",
        ),
        ({"framework": "tensorflow", "replicas": {"ps": {"replicas": 1}}}, "spec.replicas"),
        ({"framework": "mpi", "replicas": {"worker": {"replicas": 2}}}, "spec.replicas.launcher"),
        ({"framework": "mpi", "replicas": {"launcher": {}}}, "spec.replicas"),
        ({"framework": "mpi", "replicas": {"launcher": {}, "node": {}, "worker": {}}}, "spec.replicas.node"),
        ({"framework": "jax", "mpi": {}, "replicas": {"node": {}}}, "spec.mpi"),
        ({"framework": "jax", "nprocPerNode": 2, "replicas": {"node": {}}}, "spec.nprocPerNode"),
        ({"framework": "pytorch", "nprocPerNode": 0, "replicas": {"node": {}}}, "spec.nprocPerNode"),
        ({"framework": "pytorch", "nprocPerNode": "many", "replicas": {"node": {}}}, "spec.nprocPerNode"),
        ({"framework": "pytorch", "replicas": {"node": {}}, "colour": "red"}, "spec.colour"),
        ({"framework": "pytorch", "replicas": {}}, "spec.replicas"),
        ({"framework": "pytorch", "replicas": {"node": {"replicas": 10000}}}, "spec.replicas.node.replicas"),
        (
            {"framework": "pytorch", "replicas": {"node": {"resources": {"cpu": "lots"}}}},
            "spec.replicas.node.resources.cpu",
        ),
        ({"framework": "pytorch", "replicas": {"node": {}}, "artifacts": {"store": "gs://b"}}, "spec.artifacts.store"),
        (
            {"framework": "pytorch", "replicas": {"node": {}}, "runPolicy": {"cleanPodPolicy": "Some"}},
            "spec.runPolicy.cleanPodPolicy",
        ),
        (
            {"framework": "pytorch", "replicas": {"node": {}}, "tracking": {"trackers": ["tensorbored"]}},
            "spec.tracking.trackers[0]",
        ),
        (
            {"framework": "tensorflow", "env": [{"name": "TF_CONFIG", "value": "{}"}], "replicas": {"worker": {}}},
            "spec.env[0].name",
        ),
        (
            {"framework": "generic", "env": [{"name": "RUNYARD_ROLE", "value": "x"}], "replicas": {"node": {}}},
            "spec.env[0].name",
        ),
        (
            {
                "framework": "generic",
                "env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
                "replicas": {"node": {}},
            },
            "spec.env[0]",
        ),
        # What the API server would refuse in the Jobs (an adversarial pass found each one stuck a run).
        (
            {"framework": "generic", "replicas": {"node": {"resources": {"cpu": "-1"}}}},
            "spec.replicas.node.resources.cpu",
        ),
        (
            {"framework": "generic", "replicas": {"node": {}},
             "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}, "secretKeyRef": {"name": "s", "key": "k"}}}]},
            "spec.env[0].valueFrom",
        ),
        ({"framework": "generic", "replicas": {"node": {}}, "env": [{"name": "A", "valueFrom": {}}]}, "spec.env[0].valueFrom"),
        ({"framework": "generic", "replicas": {"node": {}}, "envFrom": [{"prefix": "P_"}]}, "spec.envFrom[0]"),
        (
            {"framework": "generic", "replicas": {"node": {}},
             "tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]},
            "spec.tolerations[0].tolerationSeconds",
        ),
        (
            {"framework": "generic", "replicas": {"node": {}}, "volumeMounts": [{"name": "data", "mountPath": "/d"}]},
            "spec.volumeMounts[0].name",
        ),
    ],
)  # fmt: skip
def test_rules(spec: dict[str, Any], want: str) -> None:
    assert paths(case(spec)) == [want]


def test_framework_env_names_are_free_for_other_frameworks() -> None:
    spec = {"framework": "generic", "env": [{"name": "WORLD_SIZE", "value": "2"}], "replicas": {"node": {}}}
    assert case(spec) == []


@pytest.mark.parametrize("name", ["Upper", "1starts-with-digit", "ends-with-dash-", "has.dot", "a" * 49])
def test_bad_names(name: str) -> None:
    problems = case(SPECS["generic-small"], name=name)
    assert paths(problems) and set(paths(problems)) == {"metadata.name"}


def test_missing_name_and_wrong_kind() -> None:
    doc = manifest("x", SPECS["generic-small"])
    del doc["metadata"]["name"]
    doc["kind"] = "PyTorchJob"
    assert paths(validate_manifest(doc)) == ["metadata.name", "kind"]


def test_quantities_accept_numbers() -> None:
    run = parse_run(
        manifest("q", {"framework": "generic", "replicas": {"node": {"resources": {"cpu": 2, "memory": "1Gi"}}}})
    )
    assert run.spec.replicas["node"].resources.cpu == "2"


def test_parse_run_raises_with_problems() -> None:
    with pytest.raises(ManifestError) as err:
        parse_run(manifest("x", {"framework": "mpi", "replicas": {"launcher": {}}}))
    assert paths(err.value.problems) == ["spec.replicas"]


def test_validate_update_flags_immutable_fields_only() -> None:
    old = manifest("u", SPECS["pytorch-small"])
    assert validate_update(old, old) == []
    suspended = manifest("u", {**SPECS["pytorch-small"], "runPolicy": {"suspend": True}})
    assert validate_update(old, suspended) == []
    grown = manifest("u", {**SPECS["pytorch-small"], "replicas": {"node": {"replicas": 3}}})
    assert paths(validate_update(old, grown)) == ["spec.replicas"]


def test_load_manifests_multi_doc_and_errors(tmp_path: Path) -> None:
    text = "---\na: 1\n---\n---\nb: 2\n"
    assert load_manifests(text) == [{"a": 1}, {"b": 2}]
    f = tmp_path / "runs.yaml"
    f.write_text(text)
    assert load_manifests(f) == load_manifests(str(f)) == [{"a": 1}, {"b": 2}]
    with pytest.raises(ValueError, match="not a mapping"):
        load_manifests("- 1\n- 2\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_manifests("a: [\n")
