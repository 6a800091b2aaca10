"""`build_children`: the Service, Indexed Jobs and MPI objects that realise one TrainingRun."""

from __future__ import annotations

from typing import Any

from runyard import constants as c
from runyard.api.v1alpha1 import Framework, TrainingRun
from runyard.builders.context import BuildContext
from runyard.builders.meta import object_meta, role_labels, run_labels
from runyard.builders.mpi import build_mpi_configmap, build_mpi_ssh_secret
from runyard.builders.names import job_name, service_name
from runyard.builders.pods import build_pod_template


def build_service(run: TrainingRun) -> dict[str, Any]:
    """Headless Service `<run>`: gives every pod the DNS name `<hostname>.<run>.<ns>.svc`, ready or not."""
    port_name = "ssh" if run.spec.framework is Framework.MPI else "rendezvous"
    port = run.spec.default_port()
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
    """Every object the run needs, in creation order: Service, MPI ConfigMap and Secret, Jobs.

    All replicas of a role share one Indexed Job, so PyTorch/JAX/generic runs are one Job (one Kueue gang).
    An MPI run's SSH Secret is included (with a generated name) unless `ctx.ssh_secret_name` names the one that
    exists. Raises ValueError when the run lacks a name or uid, or a new MPI Secret lacks its keypair in `ctx`.
    """
    children: list[dict[str, Any]] = [build_service(run)]
    if run.spec.framework is Framework.MPI:
        children.append(build_mpi_configmap(run, ctx))
        if ctx.ssh_secret_name is None:
            children.append(build_mpi_ssh_secret(run, ctx))
    children += [build_job(run, role, ctx) for role in run.spec.roles()]
    return children
