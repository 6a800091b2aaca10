"""The framework registry is the one source: CRD enum, rules, reserved env, builders and local runs all follow it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from runyard import constants as c
from runyard import frameworks
from runyard.api import TrainingRun, reserved_env_names, spec_rules
from runyard.api.rules import framework_roles
from runyard.builders import BuildContext, build_children
from runyard.crdgen import build_crd as crd
from runyard.frameworks import registry
from runyard.frameworks.base import EnvList, FrameworkProfile, var
from runyard.validation import validate_manifest
from tests.unit.factories import manifest


@pytest.mark.parametrize("name", frameworks.names())
def test_every_profile_keeps_the_contract(name: str) -> None:
    profile = frameworks.get(name)
    assert profile.name == name and profile.summary and profile.roles
    assert len(set(profile.roles)) == len(profile.roles)
    assert 1024 <= profile.default_port <= 65535
    assert all(n.isupper() or "_" in n for n in profile.env_names), "env names are constants, not prose"
    assert not set(profile.env_names) & set(reserved_env_names("generic")), "RUNYARD_* belong to every framework"


def test_crd_enum_and_rules_come_from_the_registry() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["framework"]["enum"] == list(frameworks.names())
    cel = [r["rule"] for r in spec["x-kubernetes-validations"]]
    for name, roles in framework_roles().items():
        assert any(f"self.framework != '{name}'" in rule and all(f"'{r}'" in rule for r in roles) for rule in cel)


def test_unknown_framework_names_the_field_and_the_choices() -> None:
    problems = [str(p) for p in validate_manifest(manifest("x", {"framework": "caffe", "replicas": {"node": {}}}))]
    assert any("spec.framework" in p and "caffe" in p and "pytorch" in p for p in problems), problems


class _Toy(FrameworkProfile):
    """A framework that exists only in this test: added through the registry, nothing else."""

    name = "toy"
    summary = "a toy framework"
    roles = (c.ROLE_NODE,)
    default_port = 31337
    env_names: ClassVar[tuple[str, ...]] = ("TOY_PEERS",)

    def env(self, run: TrainingRun, role: str, index: int | None, addressing: Any) -> EnvList:
        return [var("TOY_PEERS", run.spec.replicas[role].replicas)]


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(registry.FRAMEWORKS, "toy", f"{__name__}:_Toy")
    for cached in (registry.get, registry.all_roles, spec_rules):
        cached.cache_clear()
    yield
    monkeypatch.undo()
    for cached in (registry.get, registry.all_roles, spec_rules):
        cached.cache_clear()


@pytest.mark.usefixtures("toy_registered")
def test_a_registry_line_is_enough_to_add_a_framework() -> None:
    doc = manifest("toy-run", {"framework": "toy", "command": ["toy"], "replicas": {"node": {"replicas": 3}}})
    assert validate_manifest(doc) == []
    run = TrainingRun.model_validate(doc)
    children = build_children(run, BuildContext())
    job = next(o for o in children if o["kind"] == "Job")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TOY_PEERS"] == "3" and env[c.ENV_FRAMEWORK] == "toy"
    assert job["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 31337
    assert (
        "toy"
        in crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["framework"][
            "enum"
        ]
    )
    bad = manifest(
        "toy-run", {"framework": "toy", "env": [{"name": "TOY_PEERS", "value": "1"}], "replicas": {"node": {}}}
    )
    assert any("TOY_PEERS is reserved" in str(p) for p in validate_manifest(bad))


@pytest.mark.parametrize(
    ("name", "spec", "want"),
    [
        ("tensorflow", {"chief": {}, "worker": {"replicas": 2}, "ps": {}}, ("chief",)),
        ("tensorflow", {"worker": {"replicas": 2}, "ps": {}}, ("worker",)),
        ("mpi", {"launcher": {}, "worker": {"replicas": 2}}, ("launcher",)),
        ("pytorch", {"node": {"replicas": 2}}, ("node",)),
    ],
)
def test_success_roles_are_decided_once(name: str, spec: dict[str, Any], want: tuple[str, ...]) -> None:
    run = TrainingRun.model_validate(manifest("r", {"framework": name, "replicas": spec}))
    profile = frameworks.of(run.spec)
    assert profile.success_roles(run.spec) == want
    assert profile.primary_role(run.spec) == want[0]
