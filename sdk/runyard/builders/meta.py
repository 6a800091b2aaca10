"""Labels, namespace and owner references every child object of a run carries."""

from __future__ import annotations

from typing import Any

from runyard import constants as c
from runyard.api.v1alpha1 import TrainingRun

DEFAULT_NAMESPACE = "default"


def namespace_of(run: TrainingRun) -> str:
    """The run's namespace, `default` when the manifest has none (as kubectl would)."""
    return run.metadata.namespace or DEFAULT_NAMESPACE


def run_labels(run: TrainingRun) -> dict[str, str]:
    """Labels identifying the run's children; the Service selects on the run name."""
    labels = {c.LABEL_RUN_NAME: run.name}
    if run.metadata.uid:
        labels[c.LABEL_RUN_UID] = run.metadata.uid
    labels |= {c.LABEL_FRAMEWORK: run.spec.framework, c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE}
    return labels


def role_labels(run: TrainingRun, role: str, restart_attempt: int) -> dict[str, str]:
    """Labels of a role's Job and pods."""
    return {**run_labels(run), c.LABEL_ROLE: role, c.LABEL_RESTART_ATTEMPT: str(restart_attempt)}


def owner_reference(run: TrainingRun) -> dict[str, Any]:
    """Controller reference to the run, so garbage collection deletes the children with it."""
    if not run.metadata.uid:
        raise ValueError(f"run {run.name} has no metadata.uid: children need it for their owner reference")
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": run.name,
        "uid": run.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(run: TrainingRun, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """metadata of a child object."""
    return {
        "name": name,
        "namespace": namespace_of(run),
        "labels": labels,
        "ownerReferences": [owner_reference(run)],
    }
