"""Pod templates of a run's roles: container, env, resources, volumes, security context, user overrides."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from runyard import constants as c
from runyard import frameworks
from runyard.api.v1alpha1 import TrainingRun
from runyard.builders.addressing import KubernetesAddressing
from runyard.builders.artifacts import add_env, build_artifacts
from runyard.builders.context import BuildContext
from runyard.builders.env import build_env
from runyard.builders.meta import namespace_of, role_labels
from runyard.builders.names import service_name

SHM_VOLUME = "runyard-shm"


def merge_pod_template(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge `override` into `base`: maps recursively, lists of named items by name, other lists replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = merge_pod_template(current, value)
        elif isinstance(current, list) and isinstance(value, list) and _named(current) and _named(value):
            by_name = {item["name"]: i for i, item in enumerate(current)}
            result = list(current)
            for item in value:
                if item["name"] in by_name:
                    result[by_name[item["name"]]] = merge_pod_template(result[by_name[item["name"]]], item)
                else:
                    result.append(copy.deepcopy(item))
            merged[key] = result
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def _resources(run: TrainingRun, role: str) -> dict[str, Any]:
    res = run.spec.replicas[role].resources
    requests: dict[str, str] = {}
    if res.cpu is not None:
        requests["cpu"] = res.cpu
    if res.memory is not None:
        requests["memory"] = res.memory
    limits = dict(requests)
    if res.gpus:
        limits[c.GPU_RESOURCE] = str(res.gpus)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _pod_security(run: TrainingRun) -> dict[str, Any]:
    opts = run.spec.security_context
    security: dict[str, Any] = {
        "runAsNonRoot": opts.run_as_non_root if opts else True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if opts:
        for key, value in (
            ("runAsUser", opts.run_as_user),
            ("runAsGroup", opts.run_as_group),
            ("fsGroup", opts.fs_group),
        ):
            if value is not None:
                security[key] = value
    return security


def _container_security(run: TrainingRun) -> dict[str, Any]:
    opts = run.spec.security_context
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": bool(opts and opts.read_only_root_filesystem),
    }


def _tolerations(run: TrainingRun) -> list[dict[str, Any]]:
    """The spec's tolerations, plus a bounded stay on a NotReady/unreachable node (then eviction, then a restart).

    Without it the DefaultTolerationSeconds admission plugin gives 300 s, during which a gang whose node is gone
    still shows Running.
    """
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in run.spec.tolerations or ()]
    own = {t.get("key") for t in tolerations}
    for key in c.NODE_LOST_TAINTS:
        if key not in own and None not in own:
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": c.DEFAULT_NODE_LOST_SECONDS,
                }
            )
    return tolerations


def avoid_nodes_affinity(affinity: dict[str, Any] | None, nodes: tuple[str, ...]) -> dict[str, Any] | None:
    """`affinity` with a required `kubernetes.io/hostname NotIn nodes`; the spec's own node affinity is kept.

    Required terms are ORed: the exclusion goes into every term, so no term can still select an avoided node.
    """
    if not nodes:
        return affinity
    merged = copy.deepcopy(affinity) if affinity else {}
    required = merged.setdefault("nodeAffinity", {}).setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    avoid = {"key": c.LABEL_HOSTNAME, "operator": "NotIn", "values": sorted(set(nodes))}
    terms = required.get("nodeSelectorTerms") or [{}]
    for term in terms:
        term["matchExpressions"] = [*(term.get("matchExpressions") or []), copy.deepcopy(avoid)]
    required["nodeSelectorTerms"] = terms
    return merged


def _env_from(run: TrainingRun) -> list[dict[str, Any]]:
    spec = run.spec
    env_from = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env_from or ()]
    s3 = spec.artifacts.s3
    if s3 and s3.credentials_secret:
        env_from.append({"secretRef": {"name": s3.credentials_secret}})
    return env_from


@dataclass(frozen=True)
class _Channel:
    env: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]


def _progress_channel(url: str) -> _Channel:
    """Env and a projected ServiceAccount token (audience runyard.dev/progress) for progress reports.

    The token proves which pod is reporting (the operator reviews it with the API server); it is bound to the pod, so it
    dies with it, and it grants nothing else: its audience is not the API server's.
    """
    token = {
        "audience": c.PROGRESS_AUDIENCE,
        "expirationSeconds": c.PROGRESS_TOKEN_SECONDS,
        "path": c.PROGRESS_TOKEN_FILE,
    }
    return _Channel(
        env=[
            {"name": c.ENV_PROGRESS_URL, "value": url},
            {"name": c.ENV_PROGRESS_TOKEN_FILE, "value": f"{c.PROGRESS_TOKEN_DIR}/{c.PROGRESS_TOKEN_FILE}"},
        ],
        volumes=[{"name": c.PROGRESS_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}],
        mounts=[{"name": c.PROGRESS_VOLUME, "mountPath": c.PROGRESS_TOKEN_DIR, "readOnly": True}],
    )


def build_pod_template(run: TrainingRun, role: str, ctx: BuildContext) -> dict[str, Any]:
    """The PodTemplateSpec of `role`'s Indexed Job, with `spec.podTemplate` merged over it."""
    spec = run.spec
    replica = spec.replicas[role]
    profile = frameworks.of(spec)
    addressing = KubernetesAddressing(run.name, namespace_of(run), ctx.cluster_domain)

    container: dict[str, Any] = {"name": c.CONTAINER_NAME, "image": replica.image or spec.image}
    launch = profile.launch(
        run,
        role,
        replica.command if replica.command is not None else spec.command,
        replica.args if replica.args is not None else spec.args,
    )
    if launch.command is not None:
        container["command"] = list(launch.command)
    if launch.args is not None:
        container["args"] = list(launch.args)
    artifacts = build_artifacts(run, role, ctx)
    container["env"] = add_env(build_env(run, role, None, addressing, ctx), artifacts.env)
    if launch.error_file and not any(e["name"] == c.ENV_TORCHELASTIC_ERROR_FILE for e in container["env"]):
        container["env"].append({"name": c.ENV_TORCHELASTIC_ERROR_FILE, "value": c.TERMINATION_LOG_PATH})
    env_from = _env_from(run)
    if env_from:
        container["envFrom"] = env_from
    port = profile.container_port(run, role)
    if port is not None:
        container["ports"] = [port]
    probe = profile.readiness_probe(run, role)
    if probe is not None:
        container["readinessProbe"] = probe
    resources = _resources(run, role)
    if resources:
        container["resources"] = resources
    container["securityContext"] = _container_security(run)
    # A crash without a termination message still leaves its reason in the status: the log's last lines.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"

    volumes: list[dict[str, Any]] = list(artifacts.volumes)
    mounts: list[dict[str, Any]] = list(artifacts.mounts)
    if replica.resources.shared_memory is not None:
        volumes.append(
            {
                "name": SHM_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": replica.resources.shared_memory},
            }
        )
        mounts.append({"name": SHM_VOLUME, "mountPath": c.SHM_MOUNT})
    init_containers: list[dict[str, Any]] = list(artifacts.init_containers)
    extra = profile.pod_additions(run, role, ctx, container["image"], _container_security(run))
    volumes += extra.volumes
    mounts += extra.mounts
    init_containers += extra.init_containers
    if ctx.progress_url:
        progress = _progress_channel(ctx.progress_url)
        container["env"] = add_env(container["env"], progress.env)
        volumes += progress.volumes
        mounts += progress.mounts
    volumes += list(spec.volumes or ())
    mounts += [m.model_dump(by_alias=True, exclude_none=True) for m in spec.volume_mounts or ()]
    container["volumeMounts"] = mounts

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "subdomain": service_name(run.name),
        # Service links add env vars per Service of the namespace to every container: noise, slow at scale.
        "enableServiceLinks": False,
        "securityContext": _pod_security(run),
    }
    graces = [g for g in (artifacts.termination_grace_period_seconds, spec.run_policy.stop_grace_period_seconds) if g]
    if graces or spec.run_policy.stop_grace_period_seconds == 0:
        # The longer need wins: the trainer's checkpoint and the sidecar's last upload happen in the same window.
        pod_spec["terminationGracePeriodSeconds"] = max(graces, default=0)
    if init_containers:
        pod_spec["initContainers"] = init_containers
    pod_spec["containers"] = [container]
    pod_spec["volumes"] = volumes
    optional = {
        "serviceAccountName": spec.service_account_name,
        "priorityClassName": spec.priority_class_name,
        "nodeSelector": spec.node_selector,
        "affinity": spec.affinity,
        "tolerations": _tolerations(run),
    }
    pod_spec.update({k: v for k, v in optional.items() if v is not None})

    labels = role_labels(run, role, ctx.restart_attempt)
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": pod_spec}
    if spec.pod_template:
        template = merge_pod_template(template, spec.pod_template)
        # The Service selector and the operator's bookkeeping rely on these labels: keep them.
        template["metadata"]["labels"] = {**template["metadata"].get("labels", {}), **labels}
    if ctx.avoid_nodes:
        # After the merge, so a podTemplate affinity cannot drop the exclusion of a node that failed this run.
        template["spec"]["affinity"] = avoid_nodes_affinity(template["spec"].get("affinity"), ctx.avoid_nodes)
    return template
