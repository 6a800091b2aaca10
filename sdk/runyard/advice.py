"""Warnings about valid TrainingRun manifests (plain dicts, no models): allowed, but known to fail at run time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Public images whose user is root (their Dockerfiles set no USER): the default restricted security context refuses
# them. Library images (`python:3.11`, `ubuntu`) have no registry or organisation in their name.
_ROOT_IMAGE_PREFIXES = (
    "pytorch/pytorch",
    "tensorflow/tensorflow",
    "nvcr.io/nvidia/",
    "ghcr.io/nvidia/jax",
    "horovod/",
    "mpioperator/",
    "continuumio/",
    "huggingface/",
)


def _runs_as_root(image: str) -> bool:
    name = image.split("@", 1)[0]
    library = "/" not in name or name.startswith(("docker.io/library/", "library/"))
    return library or name.startswith(_ROOT_IMAGE_PREFIXES)


def advisories(doc: Mapping[str, Any]) -> list[str]:
    """Warnings about a valid manifest: allowed, but known to fail at run time, with how to avoid it."""
    spec = doc.get("spec") if isinstance(doc, Mapping) else None
    if not isinstance(spec, Mapping):
        return []
    notes = []
    security = spec.get("securityContext") or {}
    images = {str(spec.get("image") or "")} | {
        str(r.get("image")) for r in (spec.get("replicas") or {}).values() if isinstance(r, Mapping) and r.get("image")
    }
    root = sorted(i for i in images if i and _runs_as_root(i))
    if root and security.get("runAsNonRoot", True) and security.get("runAsUser") is None:
        notes.append(
            f"spec.securityContext: {', '.join(root)} runs as root, which the default security context "
            "(runAsNonRoot) refuses at start (CreateContainerConfigError): set spec.securityContext.runAsUser "
            "(e.g. 1000) or runAsNonRoot: false"
        )
    return notes
