"""The platform's pod and namespace policy: what pod templates may request, where runs may run."""

from __future__ import annotations

from typing import Any

import pytest

from runyard.builders import BuildContext, build_pod_template
from runyard_operator.policies.admission import NamespacePolicy, PodPolicy, namespace_refusal, pod_violations
from tests.unit.factories import make_run


def template(**pod_template: Any) -> dict[str, Any]:
    run = make_run("pytorch-small", podTemplate=pod_template) if pod_template else make_run("pytorch-small")
    return build_pod_template(run, "node", BuildContext())


CASES = [
    ("privileged", {"spec": {"containers": [{"name": "trainer", "securityContext": {"privileged": True}}]}},
     "containers[trainer].securityContext.privileged", PodPolicy(allow_privileged=True)),
    ("hostPID", {"spec": {"hostPID": True}}, "spec.hostPID", PodPolicy(allow_host_namespaces=True)),
    ("hostNetwork", {"spec": {"hostNetwork": True}}, "spec.hostNetwork", PodPolicy(allow_host_namespaces=True)),
    ("hostPath /", {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}},
     "volumes[root].hostPath: / is not under", PodPolicy(allowed_host_paths=("/",))),
    ("added capability", {"spec": {"containers": [{"name": "trainer",
                                                   "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}},
     "capabilities.add: SYS_ADMIN", PodPolicy(allowed_capabilities=("CAP_SYS_ADMIN",))),
    ("privilege escalation", {"spec": {"containers": [{"name": "trainer",
                                                       "securityContext": {"allowPrivilegeEscalation": True}}]}},
     "allowPrivilegeEscalation", PodPolicy(allow_privilege_escalation=True)),
    ("init container", {"spec": {"initContainers": [{"name": "x", "image": "i", "securityContext": {"privileged": True}}]}},
     "initContainers[x].securityContext.privileged", PodPolicy(allow_privileged=True)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "override", "field", "allowing"), CASES, ids=[c[0] for c in CASES])
def test_host_powers_are_refused_by_default_and_allowed_by_the_platform(
    name: str, override: dict[str, Any], field: str, allowing: PodPolicy
) -> None:
    problems = pod_violations(template(**override), PodPolicy())
    assert any(field in p for p in problems), problems
    assert "podPolicy" in " ".join(problems) or "Unmasked" in " ".join(problems)
    assert pod_violations(template(**override), allowing) == []


def test_runyards_own_pods_pass_the_default_policy() -> None:
    assert pod_violations(template(), PodPolicy()) == []


def test_host_path_prefixes_do_not_match_siblings() -> None:
    mounts = {"spec": {"volumes": [{"name": "d", "hostPath": {"path": "/datasets-secret"}}]}}
    assert pod_violations(template(**mounts), PodPolicy(allowed_host_paths=("/datasets",)))
    ok = {"spec": {"volumes": [{"name": "d", "hostPath": {"path": "/datasets/imagenet"}}]}}
    assert pod_violations(template(**ok), PodPolicy(allowed_host_paths=("/datasets",))) == []


def test_namespace_policy() -> None:
    policy = NamespacePolicy(frozenset({"kube-system", "runyard-system"}), {"runyard.dev/enabled": "true"})
    assert "excluded" in (namespace_refusal("kube-system", None, policy) or "")
    assert "runyard.dev/enabled=true" in (namespace_refusal("team-a", {"x": "y"}, policy) or "")
    assert namespace_refusal("team-a", {"runyard.dev/enabled": "true"}, policy) is None
    assert namespace_refusal("team-a", None, NamespacePolicy()) is None
