"""Restarts avoid faulty nodes: a required `kubernetes.io/hostname NotIn` merged with whatever affinity the run has."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runyard import constants as c
from runyard.builders import build_pod_template
from runyard.builders.pods import avoid_nodes_affinity
from tests.unit.factories import CTX, make_run

AVOID = {"key": c.LABEL_HOSTNAME, "operator": "NotIn", "values": ["a", "b"]}


def required(affinity: dict[str, Any] | None) -> list[dict[str, Any]]:
    assert affinity is not None
    terms: list[dict[str, Any]] = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    return terms


def test_no_nodes_to_avoid_changes_nothing() -> None:
    assert avoid_nodes_affinity(None, ()) is None
    spec = {"podAffinity": {"x": 1}}
    assert avoid_nodes_affinity(spec, ()) is spec


def test_without_affinity_one_term_excludes_the_nodes() -> None:
    assert required(avoid_nodes_affinity(None, ("b", "a", "b"))) == [{"matchExpressions": [AVOID]}]


def test_every_ored_term_gets_the_exclusion_and_the_rest_is_kept() -> None:
    spec = {
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}],
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]},
                ]
            },
        },
    }
    merged = avoid_nodes_affinity(spec, ("a", "b"))
    assert merged is not None and merged["podAntiAffinity"] == spec["podAntiAffinity"]
    assert merged["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == [
        {"weight": 1, "preference": {}}
    ]
    assert required(merged) == [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}, AVOID]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["x"]}], "matchExpressions": [AVOID]},
    ]
    assert (
        "matchExpressions"
        not in spec["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][1]
    ), "the spec itself is not changed"


def test_a_pod_template_affinity_cannot_drop_the_exclusion() -> None:
    override = {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}}  # fmt: skip
    run = make_run("pytorch-small", podTemplate=override)
    template = build_pod_template(run, "node", replace(CTX, avoid_nodes=("a", "b")))
    assert required(template["spec"]["affinity"]) == [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}, AVOID]}
    ]
    first_attempt = build_pod_template(run, "node", CTX)["spec"]["affinity"]
    assert required(first_attempt) == [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]
