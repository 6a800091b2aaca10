"""Property tests: every valid spec renders DNS-valid names (hostnames included) and deterministic output."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runyard import constants as c
from runyard import frameworks
from runyard.builders import BuildContext, build_children, pod_hostname
from runyard.validation import dump_manifests, parse_run, validate_manifest
from tests.unit.factories import CTX, manifest

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
names = st.from_regex(r"\A[a-z]([-a-z0-9]{0,46}[a-z0-9])?\Z")
counts = st.integers(1, c.MAX_REPLICAS_PER_ROLE)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    framework = draw(st.sampled_from(list(frameworks.names())))
    allowed = frameworks.get(framework).roles
    replicas: dict[str, Any] = {}
    if allowed == ("launcher", "worker"):
        replicas = {"launcher": {"replicas": 1}, "worker": {"replicas": draw(counts)}}
    elif framework == "tensorflow":
        roles = draw(st.sets(st.sampled_from(allowed), min_size=1).filter(lambda s: {"chief", "worker"} & s))
        replicas = {r: {"replicas": 1 if r == "chief" else draw(st.integers(1, 300))} for r in roles}
    else:
        replicas = {"node": {"replicas": draw(counts), "resources": {"gpus": draw(st.integers(0, 8))}}}
    spec: dict[str, Any] = {"framework": framework, "replicas": replicas}
    if draw(st.booleans()):
        spec["queueName"] = "q"
    return spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, spec=specs(), attempt=st.integers(0, 1000))
def test_children_names_are_dns_labels_and_output_is_deterministic(
    name: str, spec: dict[str, Any], attempt: int
) -> None:
    doc = manifest(name, spec)
    assert validate_manifest(doc) == []
    run = parse_run(doc)
    ctx = BuildContext(restart_attempt=attempt, ssh_private_key=CTX.ssh_private_key, ssh_public_key=CTX.ssh_public_key)
    children = build_children(run, ctx)
    for obj in children:
        # A generated name (the MPI Secret) is the prefix plus 5 characters; the API server truncates the prefix.
        obj_name = obj["metadata"].get("name") or obj["metadata"]["generateName"][:58] + "x2k9q"
        assert len(obj_name) <= 63 and DNS_LABEL.match(obj_name), obj_name
        if obj["kind"] == "Job":
            last = obj["spec"]["completions"] - 1
            role = obj["metadata"]["labels"][c.LABEL_ROLE]
            hostname = pod_hostname(name, role, last)
            assert len(hostname) <= 63 and DNS_LABEL.match(hostname), hostname
            for value in obj["metadata"]["labels"].values():
                assert len(value) <= 63
    assert dump_manifests(children) == dump_manifests(build_children(parse_run(manifest(name, spec)), ctx))
