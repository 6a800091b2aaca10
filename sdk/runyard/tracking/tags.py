"""Pure rendering of the Kubernetes metadata a tracked run is tagged with (shared by the operator and local runs)."""

from __future__ import annotations

from collections.abc import Iterable

from runyard import constants as c
from runyard import frameworks
from runyard.api.v1alpha1 import TrainingRun

_GIT_TAGS = {
    c.ANNOTATION_GIT_COMMIT: c.TAG_MLFLOW_GIT_COMMIT,
    c.ANNOTATION_GIT_BRANCH: c.TAG_MLFLOW_GIT_BRANCH,
    c.ANNOTATION_GIT_REPO: c.TAG_MLFLOW_GIT_REPO,
}


def run_tags(run: TrainingRun, uid: str) -> dict[str, str]:
    """Tags set when the run is created: identity, framework, image, replicas, GPUs, git, then `spec.tracking.tags`.

    User tags come last but never replace the identity tags, which idempotent lookups rely on.
    """
    spec = run.spec
    roles = frameworks.roles_of(spec)
    tags: dict[str, str] = {
        c.TAG_K8S_RUN_NAME: run.name,
        c.TAG_K8S_RUN_UID: uid,
        c.TAG_K8S_FRAMEWORK: spec.framework,
        c.TAG_K8S_IMAGE: spec.image or "",
        c.TAG_K8S_REPLICAS: ",".join(f"{r}={spec.replicas[r].replicas}" for r in roles),
        c.TAG_K8S_GPUS_PER_REPLICA: ",".join(f"{r}={spec.replicas[r].resources.gpus}" for r in roles),
    }
    if run.metadata.namespace:
        tags[c.TAG_K8S_NAMESPACE] = run.metadata.namespace
    annotations = run.metadata.annotations or {}
    for annotation, tag in _GIT_TAGS.items():
        if annotations.get(annotation):
            tags[tag] = annotations[annotation]
    user = dict(spec.tracking.tags or {}) if spec.tracking else {}
    protected = {c.TAG_TRAININGRUN_UID, c.TAG_K8S_RUN_UID, c.TAG_K8S_RUN_NAME, c.TAG_K8S_NAMESPACE}
    tags.update({k: v for k, v in user.items() if k not in protected})
    return tags


def node_tags(nodes: Iterable[str], rank_nodes: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """`k8s.nodes` (sorted, comma-separated) and `k8s.node.<role>-<index>` per rank, once the pods ran."""
    tags: dict[str, str] = {}
    names = sorted(set(nodes))
    if names:
        tags[c.TAG_K8S_NODES] = ",".join(names)
    for label, node in rank_nodes:
        if node:
            tags[f"{c.TAG_K8S_NODE_PREFIX}{label}"] = node
    return tags
