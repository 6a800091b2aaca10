"""Pure platform policy over what a run may create: the namespaces it may run in and what its pods may ask for.

A run's `spec.podTemplate` and `spec.volumes` pass Kubernetes fields through to its pods. The platform decides
which host-level powers those may request (privileged containers, host namespaces, hostPath volumes, added
capabilities, privilege escalation); everything else stays the run's own business. A refusal names the field and
the setting that would allow it, and ends the run before anything is created.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PodPolicy:
    """What the platform lets pod templates request; everything False/empty is Kubernetes' restricted profile."""

    allow_privileged: bool = False
    allow_host_namespaces: bool = False
    allow_privilege_escalation: bool = False
    allowed_host_paths: tuple[str, ...] = ()
    allowed_capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamespacePolicy:
    """Namespaces the operator never acts in, and the labels a namespace must carry to opt in (if any)."""

    excluded: frozenset[str] = frozenset({"kube-system", "kube-public", "kube-node-lease"})
    match_labels: Mapping[str, str] = field(default_factory=dict)


def namespace_refusal(namespace: str, labels: Mapping[str, str] | None, policy: NamespacePolicy) -> str | None:
    """Why runs may not run in `namespace`, or None. `labels` None means they are not known (no selector needed)."""
    if namespace in policy.excluded:
        return f"namespace {namespace} is excluded by the operator's namespace policy (namespaces.exclude)"
    missing = {k: v for k, v in policy.match_labels.items() if (labels or {}).get(k) != v}
    if missing:
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
        return f"namespace {namespace} has not opted in: it lacks the label(s) {wanted} (namespaces.matchLabels)"
    return None


def _containers(spec: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(kind) or []:
            if isinstance(container, Mapping):
                yield f"{kind}[{container.get('name', '?')}]", container


def _under(path: str, prefixes: Iterable[str]) -> bool:
    clean = "/" + path.strip("/")
    return any(clean == p.rstrip("/") or clean.startswith(p.rstrip("/") + "/") for p in prefixes if p)


def pod_violations(template: Mapping[str, Any], policy: PodPolicy) -> list[str]:
    """Every field of a built pod template that the policy does not allow, as `path: why (how to allow it)`."""
    spec = template.get("spec") or {}
    problems: list[str] = []
    if not policy.allow_host_namespaces:
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key) is True:
                problems.append(f"spec.{key}: host namespaces are not allowed (podPolicy.allowHostNamespaces)")
    for volume in spec.get("volumes") or []:
        host = (volume or {}).get("hostPath") if isinstance(volume, Mapping) else None
        if host is not None and not _under(str(host.get("path", "")), policy.allowed_host_paths):
            problems.append(
                f"spec.volumes[{volume.get('name', '?')}].hostPath: {host.get('path')} is not under an allowed "
                f"host path (podPolicy.allowedHostPaths)"
            )
    allowed_caps = {c.upper().removeprefix("CAP_") for c in policy.allowed_capabilities}
    for where, container in _containers(spec):
        security = container.get("securityContext") or {}
        if security.get("privileged") is True and not policy.allow_privileged:
            problems.append(f"spec.{where}.securityContext.privileged: not allowed (podPolicy.allowPrivileged)")
        if security.get("allowPrivilegeEscalation") is True and not policy.allow_privilege_escalation:
            problems.append(
                f"spec.{where}.securityContext.allowPrivilegeEscalation: not allowed "
                f"(podPolicy.allowPrivilegeEscalation)"
            )
        added = ((security.get("capabilities") or {}).get("add")) or []
        extra = sorted({str(cap).upper().removeprefix("CAP_") for cap in added} - allowed_caps)
        if extra:
            problems.append(
                f"spec.{where}.securityContext.capabilities.add: {', '.join(extra)} not allowed "
                f"(podPolicy.allowedCapabilities)"
            )
        if security.get("procMount") == "Unmasked":
            problems.append(f"spec.{where}.securityContext.procMount: Unmasked is not allowed")
    return problems
