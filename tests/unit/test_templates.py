"""Templates, pure: how layers merge into a run's spec, which locks a run breaks, and the template CRDs."""

from __future__ import annotations

from typing import Any

import pytest

from runyard import constants as c
from runyard.api.templates import LOCKABLE_FIELDS, TrainingRunTemplateSpec
from runyard.crdgen import build_template_crd, crd_files
from runyard.templating import (
    TemplateLayer,
    effective_manifest,
    layers_from_status,
    lock_problems,
    merge_spec,
    order_layers,
    template_status,
)

PLATFORM = TemplateLayer(
    kind=c.CLUSTER_TEMPLATE_KIND,
    name="platform",
    uid="u-1",
    generation=2,
    defaults={
        "tracking": {"trackers": ["mlflow"], "tags": {"team": "platform"}},
        "artifacts": {"store": "s3://runs/platform", "s3": {"endpoint": "http://minio:9000"}},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"pool": "gpu"},
        "env": [{"name": "HF_HOME", "value": "/cache/hf"}, {"name": "NCCL_DEBUG", "value": "WARN"}],
        "runPolicy": {"backoffLimit": 1, "activeDeadlineSeconds": 86400},
    },
    locked=("artifacts.store", "tolerations", "podTemplate", "tracking.trackers"),
    image_prefixes=("registry.corp/",),
)
TEAM = TemplateLayer(
    kind=c.TEMPLATE_KIND,
    name="team-a",
    defaults={
        "image": "registry.corp/team-a/train:1",
        "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
        "runPolicy": {"backoffLimit": 3},
        "priorityClassName": "team-a",
    },
)


def _run(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": {"framework": "pytorch", "replicas": {"node": {"replicas": 2}}, **spec},
    }


def test_layers_merge_objects_by_key_lists_whole_and_env_by_name() -> None:
    spec = {
        "framework": "pytorch",
        "replicas": {"node": {"replicas": 2}},
        "env": [{"name": "LR", "value": "0.1"}, {"name": "HF_HOME", "value": "/data/hf"}],
        "runPolicy": {"activeDeadlineSeconds": 600},
        "tracking": {"params": {"lr": "0.1"}},
    }
    merged = merge_spec([PLATFORM, TEAM], spec)
    assert merged["image"] == "registry.corp/team-a/train:1"
    # env: the platform's order, a later layer's entry replacing one of the same name in place, new names appended
    assert merged["env"] == [
        {"name": "HF_HOME", "value": "/data/hf"},
        {"name": "NCCL_DEBUG", "value": "INFO"},
        {"name": "LR", "value": "0.1"},
    ]
    assert merged["runPolicy"] == {"backoffLimit": 3, "activeDeadlineSeconds": 600}
    assert merged["tracking"] == {"trackers": ["mlflow"], "tags": {"team": "platform"}, "params": {"lr": "0.1"}}
    assert merged["tolerations"] == PLATFORM.defaults["tolerations"]
    assert merged["replicas"] == {"node": {"replicas": 2}} and merged["framework"] == "pytorch"


def test_framework_replicas_and_template_ref_come_from_the_run_only() -> None:
    sneaky = TemplateLayer(kind=c.TEMPLATE_KIND, name="x", defaults={"framework": "mpi", "replicas": {"worker": {}}})
    merged = merge_spec([sneaky], {"framework": "pytorch", "replicas": {"node": {}}})
    assert merged == {"framework": "pytorch", "replicas": {"node": {}}}


def test_run_that_keeps_or_omits_locked_fields_is_accepted() -> None:
    same = {"tolerations": PLATFORM.defaults["tolerations"], "artifacts": {"store": "s3://runs/platform"}}
    assert lock_problems([PLATFORM], {"image": "registry.corp/x:1", **same}) == []
    assert lock_problems([PLATFORM], {"image": "registry.corp/x:1", "artifacts": {"syncIntervalSeconds": 30}}) == []


def test_each_broken_lock_names_the_field_and_the_template() -> None:
    spec = {
        "image": "docker.io/evil/miner:latest",
        "artifacts": {"store": "s3://elsewhere/x"},
        "tolerations": [{"operator": "Exists"}],
        "podTemplate": {"spec": {"hostNetwork": True}},
        "replicas": {"node": {"image": "registry.corp/ok:1"}},
    }
    problems = {p.path: p.message for p in lock_problems([PLATFORM], spec)}
    assert set(problems) == {"spec.artifacts.store", "spec.tolerations", "spec.podTemplate", "spec.image"}
    assert problems["spec.artifacts.store"].startswith(
        'locked by ClusterTrainingRunTemplate platform to "s3://runs/platform"'
    )
    assert "locked by ClusterTrainingRunTemplate platform to unset" in problems["spec.podTemplate"]
    assert "docker.io/evil/miner:latest is not allowed" in problems["spec.image"]
    assert "registry.corp/" in problems["spec.image"]


def test_a_default_templates_locks_hold_against_the_template_a_run_names() -> None:
    escape = TemplateLayer(
        kind=c.TEMPLATE_KIND,
        name="escape",
        defaults={"artifacts": {"store": "s3://mine/x"}, "image": "quay.io/x:1"},
    )
    layers = order_layers([PLATFORM], escape)
    assert [t.name for t in layers] == ["platform", "escape"]
    problems = {p.path: p.message for p in lock_problems(layers, {})}
    assert "(TrainingRunTemplate escape sets it)" in problems["spec.artifacts.store"]
    assert "quay.io/x:1 is not allowed" in problems["spec.image"]


def test_default_templates_order_by_name_and_a_named_default_applies_once() -> None:
    b = TemplateLayer(kind=c.CLUSTER_TEMPLATE_KIND, name="b")
    a = TemplateLayer(kind=c.CLUSTER_TEMPLATE_KIND, name="a")
    assert [t.name for t in order_layers([b, a], None)] == ["a", "b"]
    assert [t.name for t in order_layers([b, a], TemplateLayer(kind=c.CLUSTER_TEMPLATE_KIND, name="b"))] == ["a", "b"]
    assert [t.name for t in order_layers([a], TemplateLayer(kind=c.TEMPLATE_KIND, name="a"))] == ["a", "a"]


def test_effective_manifest_validates_the_merged_spec() -> None:
    doc, problems = effective_manifest(_run(templateRef={"name": "team-a"}), [PLATFORM, TEAM])
    assert problems == []
    assert doc["spec"]["image"] == "registry.corp/team-a/train:1"
    # Without an image anywhere the run cannot start: the problem names the templates it looked in.
    _, problems = effective_manifest(_run(templateRef={"name": "p"}), [PLATFORM])
    assert [str(p) for p in problems] == [
        "spec.image: required: neither the run nor its templates (ClusterTrainingRunTemplate platform) set it"
    ]
    # A template's default the merged spec rejects (a reserved env name) is reported at its path.
    bad = TemplateLayer(kind=c.TEMPLATE_KIND, name="bad", defaults={"env": [{"name": "RANK", "value": "0"}]})
    _, problems = effective_manifest(_run(image="i:1"), [bad])
    assert [p.path for p in problems] == ["spec.env[0].name"]


def test_status_records_the_layers_and_gives_them_back_unchanged() -> None:
    status = template_status([PLATFORM, TEAM])
    assert status is not None and status["name"] == "team-a"
    assert status["applied"][0]["locks"] == {
        "fields": list(PLATFORM.locked),
        "imagePrefixes": ["registry.corp/"],
    }
    assert layers_from_status({"template": status}) == [PLATFORM, TEAM]
    assert template_status([]) is None and layers_from_status({}) is None


def test_template_object_is_validated_and_read() -> None:
    obj = {
        "kind": c.TEMPLATE_KIND,
        "metadata": {"name": "t", "uid": "u", "generation": 4},
        "spec": {"defaults": {"nodeSelector": {"pool": "a"}}, "locks": {"fields": ["nodeSelector"]}},
    }
    layer = TemplateLayer.from_object(obj)
    assert (layer.name, layer.generation, layer.locked) == ("t", 4, ("nodeSelector",))
    with pytest.raises(ValueError, match=r"TrainingRunTemplate t is invalid: locks.fields.0"):
        TemplateLayer.from_object({**obj, "spec": {"locks": {"fields": ["replicas"]}}})
    with pytest.raises(ValueError, match=r"defaults.framework: Extra inputs are not permitted"):
        TemplateLayer.from_object({**obj, "spec": {"defaults": {"framework": "jax"}}})


def test_defaults_model_takes_any_spec_field_but_the_runs_own() -> None:
    spec = TrainingRunTemplateSpec.model_validate(
        {"defaults": {"image": "x:1", "runPolicy": {"backoffLimit": 0}, "queueName": "gpu"}}
    )
    assert spec.defaults is not None
    assert spec.defaults.model_dump(exclude_unset=True, by_alias=True) == {
        "image": "x:1",
        "runPolicy": {"backoffLimit": 0},
        "queueName": "gpu",
    }


def test_template_crds_are_structural_scoped_and_shipped() -> None:
    namespaced, cluster = build_template_crd(cluster=False), build_template_crd(cluster=True)
    assert (namespaced["spec"]["scope"], cluster["spec"]["scope"]) == ("Namespaced", "Cluster")
    assert cluster["spec"]["names"]["shortNames"] == ["ctrt"]
    spec = cluster["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaults = spec["properties"]["defaults"]["properties"]
    assert "framework" not in defaults and "replicas" not in defaults and "image" in defaults
    assert "required" not in spec["properties"]["defaults"]
    assert spec["properties"]["locks"]["properties"]["fields"]["items"]["enum"] == list(LOCKABLE_FIELDS)
    assert set(crd_files()) == {
        "runyard.dev_trainingruns.yaml",
        "runyard.dev_trainingruntemplates.yaml",
        "runyard.dev_clustertrainingruntemplates.yaml",
        "runyard.dev_trainingrunsweeps.yaml",
    }
