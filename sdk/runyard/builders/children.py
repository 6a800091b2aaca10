"""`build_children`: the Service, Indexed Jobs and MPI objects that realise one TrainingRun."""

from __future__ import annotations

from typing import Any

from runyard import constants as c
from runyard import frameworks
from runyard.api.v1alpha1 import TrainingRun
from runyard.builders.context import BuildContext
from runyard.builders.meta import object_meta, role_labels, run_labels
from runyard.builders.names import job_name, service_name
from runyard.builders.pods import build_pod_template


def build_service(run: TrainingRun) -> dict[str, Any]:
    """Headless Service `<run>`: gives every pod the DNS name `<hostname>.<run>.<ns>.svc`, ready or not."""
    profile = frameworks.of(run.spec)
    port_name, port = profile.port_name, profile.port(run.spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(run, service_name(run.name), run_labels(run)),
        "spec": {
            "clusterIP": "None",
            # Rendezvous happens before any pod is Ready, so peers must resolve unready pods too.
            "publishNotReadyAddresses": True,
            "selector": {c.LABEL_RUN_NAME: run.name},
            "ports": [{"name": port_name, "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def build_job(run: TrainingRun, role: str, ctx: BuildContext) -> dict[str, Any]:
    """Indexed Job `<run>-<role>` with one completion per replica."""
    spec = run.spec
    replicas = spec.replicas[role].replicas
    labels = role_labels(run, role, ctx.restart_attempt)
    if spec.queue_name:
        labels[c.LABEL_KUEUE_QUEUE] = spec.queue_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(run, job_name(run.name, role), labels),
        "spec": {
            "completionMode": "Indexed",
            "completions": replicas,
            "parallelism": replicas,
            # Runyard restarts the whole gang itself: a lone replacement pod cannot rejoin the collective.
            "backoffLimit": 0,
            # The Job records why it failed (the pod's exit code, or that it was disrupted), so the run's decision
            # never depends on the failed pod still being observable (an operator restart, a deleted pod).
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onPodConditions": [{"type": c.POD_CONDITION_DISRUPTION, "status": "True"}]},
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": c.CONTAINER_NAME, "operator": "NotIn", "values": [0]},
                    },
                ]
            },
            # Kueue admits a queued Job by unsuspending it; creating it running would bypass the quota.
            "suspend": bool(spec.run_policy.suspend or spec.queue_name),
            "template": build_pod_template(run, role, ctx),
        },
    }


def build_children(run: TrainingRun, ctx: BuildContext) -> list[dict[str, Any]]:
    """Every object the run needs, in creation order: Service, the framework's own objects, Jobs.

    All replicas of a role share one Indexed Job, so PyTorch/JAX/generic runs are one Job (one Kueue gang).
    An SSH-launched run (MPI) adds its hostfile ConfigMap and, unless `ctx.ssh_secret_name` names the one that
    exists, its SSH Secret (with a generated name). Raises ValueError when the run lacks a name or uid, or a new SSH
    Secret lacks its keypair in `ctx`.
    """
    profile = frameworks.of(run.spec)
    children: list[dict[str, Any]] = [build_service(run), *profile.children(run, ctx)]
    children += [build_job(run, role, ctx) for role in profile.ordered_roles(run.spec)]
    return children
