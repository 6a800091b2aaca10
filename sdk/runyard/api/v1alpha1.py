"""TrainingRun `runyard.dev/v1alpha1`: the pydantic models that are the single source of the CRD schema."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, WithJsonSchema
from pydantic.alias_generators import to_camel

from runyard import constants as c
from runyard.api.rules import spec_schema_extra
from runyard.frameworks import registry as frameworks

# --- shared building blocks -------------------------------------------------------------------------

# Kubernetes resource.Quantity, as controller-gen writes it, without the minus sign: resources are never negative.
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_1035_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
ARTIFACT_STORE_PATTERN = r"^(pvc|s3|file)://"
MAX_ENV = 256
MAX_LIST = 64


def _int_to_str(value: Any) -> Any:
    # YAML users write `cpu: 2`; Kubernetes accepts ints for quantities, and Runyard keeps them as strings.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


INT_OR_STRING_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
}

Quantity = Annotated[
    str,
    BeforeValidator(_int_to_str),
    Field(pattern=QUANTITY_PATTERN),
    WithJsonSchema({**INT_OR_STRING_SCHEMA, "pattern": QUANTITY_PATTERN}),
]


def _nproc(value: Any) -> Any:
    # Checked by hand: a plain `int | Literal[...]` union reports one error per branch.
    valid_int = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if valid_int or value in ("auto", "gpu", "cpu"):
        return value
    raise ValueError("must be an integer >= 1 or one of auto, gpu, cpu")


NprocPerNode = Annotated[
    int | str,
    BeforeValidator(_nproc),
    WithJsonSchema(INT_OR_STRING_SCHEMA),
]


class _Spec(BaseModel):
    """Base of every user-written model: camelCase on the wire and unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        defer_build=True,
    )


class _Status(BaseModel):
    """Base of status models: written by the operator, read leniently."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", defer_build=True)


def _known_framework(value: str) -> str:
    if value not in frameworks.names():
        raise ValueError(f"unknown framework {value!r}: one of {', '.join(frameworks.names())}")
    return value


def _framework_schema(schema: dict[str, Any]) -> None:
    # Enum and description come from the registry when the CRD is generated: adding a framework never edits this file.
    schema["enum"] = list(frameworks.names())
    schema["description"] = "Framework whose env contract is injected: " + "; ".join(
        f"`{p.name}`: {p.summary}" for p in frameworks.profiles()
    )


def _replicas_schema(schema: dict[str, Any]) -> None:
    schema["description"] = "Roles and their replicas (each role is one Indexed Job). " + "; ".join(
        f"{p.name}: {', '.join(f'`{r}`' for r in p.roles)}" for p in frameworks.profiles()
    )


def _port_schema(schema: dict[str, Any]) -> None:
    schema["description"] = "Rendezvous port; the framework's default when unset: " + ", ".join(
        f"{p.name} {p.default_port}" for p in frameworks.profiles() if "mpi" not in p.settings
    )


FrameworkName = Annotated[str, AfterValidator(_known_framework), Field(json_schema_extra=_framework_schema)]


class MPIImplementation(StrEnum):
    """MPI flavour; decides the hostfile syntax and the launcher's env."""

    OPENMPI = "OpenMPI"
    MPICH = "MPICH"
    INTEL = "Intel"


class CleanPodPolicy(StrEnum):
    """Which pods to delete when a run finishes."""

    ALL = "All"
    RUNNING = "Running"
    NONE = "None"


class Phase(StrEnum):
    """Coarse lifecycle state of a TrainingRun."""

    PENDING = "Pending"
    QUEUED = "Queued"
    STARTING = "Starting"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class FailureCategory(StrEnum):
    """Why a replica failed, in words a user acts on (status.failure.category, runPolicy.retryOn.categories)."""

    USER_CODE = "UserCode"  # the program exited 1-127 on its own
    OOM_KILLED = "OOMKilled"  # the container went over its memory limit
    GPU_ERROR = "GPUError"  # the termination message or log names a GPU fault (Xid, ECC, fallen off the bus)
    STALLED = "Stalled"  # reserved for stall detection (no progress report from a rank); nothing sets it yet
    NODE_LOST = "NodeLost"  # the node stopped reporting or shut down (taint manager, pod GC)
    EVICTED = "Evicted"  # eviction API (drain), kubelet pressure, another disruption
    PREEMPTED = "Preempted"  # the scheduler made room for a higher-priority pod
    IMAGE_PULL = "ImagePull"  # the image cannot be pulled or its name is invalid
    CONFIG = "Config"  # refused by the API server, admission or the platform; the container could not be created
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # runPolicy.activeDeadlineSeconds passed
    INFRASTRUCTURE = "Infrastructure"  # a signal without another cause, a deleted Job, a cause nothing recorded


class ConditionStatus(StrEnum):
    """Kubernetes condition status."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


# --- metadata ---------------------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The subset of Kubernetes ObjectMeta Runyard reads; everything else is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", defer_build=True)

    name: str | None = Field(None, description="Name of the run; becomes the prefix of every child object.")
    namespace: str | None = Field(None, description="Namespace of the run and of its children.")
    uid: str | None = Field(None, description="UID assigned by the API server; used in owner references.")
    generation: int | None = Field(None, description="Spec generation assigned by the API server.")
    labels: dict[str, str] | None = Field(None, description="Labels of the run.")
    annotations: dict[str, str] | None = Field(None, description="Annotations of the run.")


# --- spec: containers -------------------------------------------------------------------------------


class KeyRef(_Spec):
    """A key of a Secret or ConfigMap in the run's namespace."""

    name: str = Field(description="Name of the Secret or ConfigMap.", min_length=1, max_length=253)
    key: str = Field(description="Key inside it.", min_length=1, max_length=253)
    optional: bool | None = Field(None, description="Do not fail the pod when the object or key is missing.")


class FieldRef(_Spec):
    """A field of the pod, via the downward API."""

    field_path: str = Field(description="Path of the pod field, e.g. `status.podIP`.", min_length=1)
    api_version: str | None = Field(None, description="API version of the path; defaults to `v1`.")


class EnvVarSource(_Spec):
    """Where an env value comes from; exactly one source."""

    secret_key_ref: KeyRef | None = Field(None, description="Read the value from a Secret key.")
    config_map_key_ref: KeyRef | None = Field(None, description="Read the value from a ConfigMap key.")
    field_ref: FieldRef | None = Field(None, description="Read the value from a pod field (downward API).")


class EnvVar(_Spec):
    """An environment variable of the training container. Names Runyard injects are reserved."""

    name: str = Field(
        description="Variable name; must not be one Runyard injects for the framework.",
        pattern=ENV_NAME_PATTERN,
        min_length=1,
        max_length=256,
    )
    value: str | None = Field(None, description="Literal value; `$(VAR)` references are expanded by Kubernetes.")
    value_from: EnvVarSource | None = Field(None, description="Take the value from a Secret, ConfigMap or pod field.")


class LocalObjectRef(_Spec):
    """A Secret or ConfigMap in the run's namespace."""

    name: str = Field(description="Object name.", min_length=1, max_length=253)
    optional: bool | None = Field(None, description="Do not fail the pod when the object is missing.")


class EnvFromSource(_Spec):
    """Import every key of a ConfigMap or Secret as env variables."""

    prefix: str | None = Field(None, description="Prefix added to every imported name.")
    config_map_ref: LocalObjectRef | None = Field(None, description="ConfigMap to import.")
    secret_ref: LocalObjectRef | None = Field(None, description="Secret to import.")


class Resources(_Spec):
    """Compute resources of one replica (one pod)."""

    gpus: StrictInt = Field(
        0,
        ge=0,
        le=64,
        description=f"Whole GPUs per replica, requested as the `{c.GPU_RESOURCE}` limit; 0: CPU only.",
    )
    cpu: Quantity | None = Field(
        None, description="CPU request and limit, a Kubernetes quantity such as `4` or `500m`."
    )
    memory: Quantity | None = Field(None, description="Memory request and limit, a Kubernetes quantity such as `16Gi`.")
    shared_memory: Quantity | None = Field(
        None,
        description=(
            f"Size of a memory-backed emptyDir mounted at {c.SHM_MOUNT}; PyTorch DataLoader workers and NCCL "
            "need more than the container runtime's 64 MiB default."
        ),
    )


class ReplicaSpec(_Spec):
    """One role of the run: how many pods, their resources and optional per-role overrides."""

    replicas: StrictInt = Field(
        1,
        ge=1,
        le=c.MAX_REPLICAS_PER_ROLE,
        description="Number of pods of this role (the role's Indexed Job completions).",
    )
    resources: Resources = Field(default_factory=Resources, description="Resources of each pod of this role.")
    image: str | None = Field(None, description="Image for this role instead of `spec.image`.", min_length=1)
    command: list[str] | None = Field(None, description="Command for this role instead of `spec.command`.")
    args: list[str] | None = Field(None, description="Arguments for this role instead of `spec.args`.")


class MPISpec(_Spec):
    """MPI settings (framework `mpi`)."""

    slots_per_worker: StrictInt = Field(
        1,
        ge=1,
        le=1024,
        description="Processes (slots) per worker in the hostfile; usually the GPUs per worker.",
    )
    implementation: MPIImplementation = Field(
        MPIImplementation.OPENMPI, description="MPI implementation: OpenMPI, MPICH or Intel."
    )
    ssh_port: StrictInt = Field(
        c.DEFAULT_MPI_SSH_PORT,
        ge=1024,
        le=65535,
        description="Port the workers' sshd listens on; above 1023 because sshd runs as non-root.",
    )


# --- spec: pod placement ----------------------------------------------------------------------------


class Toleration(_Spec):
    """A pod toleration (Kubernetes `Toleration`)."""

    key: str | None = Field(None, description="Taint key; empty with operator Exists matches every taint.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default Equal).")
    value: str | None = Field(None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; empty means all effects."
    )
    toleration_seconds: int | None = Field(None, description="How long a NoExecute taint is tolerated.")


class VolumeMount(_Spec):
    """Mount of one of `spec.volumes` into the training container."""

    name: str = Field(description="Name of the volume in `spec.volumes`.", min_length=1)
    mount_path: str = Field(description="Absolute path in the container.", min_length=1)
    sub_path: str | None = Field(None, description="Sub-path of the volume to mount.")
    read_only: bool | None = Field(None, description="Mount read-only.")


class SecurityOptions(_Spec):
    """Pod security settings: Kubernetes' `restricted` profile by default; loosen only what you must."""

    run_as_non_root: bool = Field(True, description="Refuse to start containers whose user is root.")
    run_as_user: int | None = Field(None, ge=0, description="UID of the container processes.")
    run_as_group: int | None = Field(None, ge=0, description="GID of the container processes.")
    fs_group: int | None = Field(None, ge=0, description="Group owning mounted volumes, so a non-root user can write.")
    read_only_root_filesystem: bool = Field(False, description="Mount the container's root filesystem read-only.")


# --- spec: policies ---------------------------------------------------------------------------------


def _unique(values: list[Any]) -> list[Any]:
    # The CRD's `x-kubernetes-list-type: set` refuses repeats too: `runyard validate` says so before the API server.
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"must not repeat {', '.join(repeated)}")
    return values


class RetryPolicy(_Spec):
    """Which failures restart the whole gang (while `backoffLimit` allows) instead of failing the run."""

    exit_codes: list[StrictInt] | None = Field(
        None,
        max_length=MAX_LIST,
        description=(
            "Exit codes that are retried. Unset means Kubeflow's ExitCode semantics: codes >= 128 (killed by "
            "a signal: preemption, node loss, OOM) are retried, 1-127 (the program's own error) fail the run. A "
            "container that never started (StartError, ContainerCannotRun: runc's exit code 128) is never retried by "
            "its code, only when `reasons` names it."
        ),
    )
    reasons: list[str] | None = Field(
        None,
        max_length=MAX_LIST,
        description=(
            "Container or pod termination reasons that are retried whatever the exit code, e.g. `OOMKilled`, "
            "`Evicted`, `DeadlineExceeded`. Unset means infrastructure failures: `[Evicted, Preempted, NodeLost, "
            "Disrupted, Unknown, JobDeleted]` (`Unknown`: the failed pod is gone and nothing recorded why)."
        ),
    )
    categories: Annotated[list[FailureCategory], AfterValidator(_unique)] | None = Field(
        None,
        max_length=len(FailureCategory),
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description=(
            "Failure categories (`status.failure.category`) that are retried, e.g. `[NodeLost, GPUError, Preempted]`. "
            "A failure is retried when its category, exit code or reason is listed. Once set, `exitCodes` and "
            "`reasons` count only where they are set themselves (their defaults no longer apply). Unset means the "
            "defaults of `exitCodes` and `reasons`: infrastructure is retried, the program's own errors are not."
        ),
    )


class RunPolicy(_Spec):
    """Restart, deadline, clean-up and suspension policy of the whole run."""

    backoff_limit: StrictInt = Field(
        c.DEFAULT_BACKOFF_LIMIT,
        ge=0,
        le=1000,
        description=(
            "How many times the whole gang (every pod of every role) is restarted after a retryable "
            "failure before the run fails. Runyard never restarts single pods."
        ),
    )
    retry_on: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="Which failures are retryable; see its fields for the defaults.",
    )
    backoff_seconds: StrictInt = Field(
        c.DEFAULT_BACKOFF_SECONDS,
        ge=0,
        le=3600,
        description="Delay before a gang restart, doubled per attempt.",
    )
    start_timeout_seconds: StrictInt = Field(
        c.DEFAULT_START_TIMEOUT_SECONDS,
        ge=1,
        le=86400,
        description=(
            "How long a replica may stay unable to start for a reason that does not resolve itself (ErrImagePull, "
            "ImagePullBackOff, CreateContainerConfigError, ...) before the run fails with that reason. Waiting "
            "for a node (Unschedulable) is not counted: queueing for GPUs is normal."
        ),
    )
    active_deadline_seconds: StrictInt | None = Field(
        None, ge=1, description="Fail the run when it has been running longer than this, restarts included."
    )
    ttl_seconds_after_finished: StrictInt | None = Field(
        None, ge=0, description="Delete the run this long after it finished; unset keeps it."
    )
    clean_pod_policy: CleanPodPolicy = Field(
        CleanPodPolicy.RUNNING,
        description=(
            "Pods deleted when the run finishes: `Running` (default; stops stragglers and frees quota, keeps "
            "finished pods and their logs), `All`, or `None`."
        ),
    )
    suspend: bool = Field(
        False,
        description="Suspend the run: its Jobs are suspended and their pods deleted; false resumes.",
    )
    stop_grace_period_seconds: StrictInt | None = Field(
        None,
        ge=0,
        le=86400,
        description=(
            "Seconds each replica gets between SIGTERM and SIGKILL when the run is suspended, preempted, deleted or "
            "past its deadline, to save a checkpoint (`runyard.context().should_stop()`, `runyard.on_stop`); the "
            "pods' terminationGracePeriodSeconds. Unset: Kubernetes' 30 s (or the artifact sidecar's, if longer)."
        ),
    )
    stall_timeout_seconds: StrictInt | None = Field(
        None,
        ge=30,
        le=604800,
        description=(
            "A rank that has reported progress (runyard.log_metrics(step=...)) and then stays silent this long while "
            "its pod runs makes the run Stalled (condition Stalled=True naming the silent ranks and their nodes; "
            "status.progress.silentRanks); a report clears it. Unset: no stall detection. Needs the operator's "
            "progress endpoint."
        ),
    )
    restart_on_stall: bool = Field(
        False,
        description=(
            "Restart the whole gang when the run is Stalled (a hung collective: the replicas resume from the newest "
            "checkpoint), as a failure of category Stalled counted against `backoffLimit`; past it the run fails."
        ),
    )


# --- spec: tracking and artifacts -------------------------------------------------------------------


# Tracker names come from the tracker registry (runyard.trackers), imported inside these functions: the tracker
# profiles build on these models, so this module must not load them at import time.


def _known_tracker(value: str) -> str:
    from runyard.trackers import registry

    if value not in registry.names():
        raise ValueError(f"unknown tracker: one of {', '.join(registry.names())}")
    return value


def _at_most_every_tracker(value: list[str]) -> list[str]:
    from runyard.trackers import registry

    if len(value) > len(registry.names()):
        raise ValueError(f"at most {len(registry.names())} trackers (one of each)")
    return value


def _tracker_schema(schema: dict[str, Any]) -> None:
    from runyard.trackers import registry

    schema["enum"] = list(registry.names())


def _trackers_schema(schema: dict[str, Any]) -> None:
    from runyard.trackers import registry

    # The field is optional: pydantic wraps the array in anyOf [array, null], and the CRD keeps only the array.
    for node in (schema, *schema.get("anyOf", ())):
        if node.get("type") == "array":
            node["maxItems"] = len(registry.names())


TrackerName = Annotated[
    str,
    AfterValidator(_known_tracker),
    Field(description="Experiment trackers Runyard can configure for the training code."),
    Field(json_schema_extra=_tracker_schema),
]


class TrackingSpec(_Spec):
    """Experiment tracking: names and values handed to the trackers."""

    experiment: str | None = Field(None, max_length=256, description="Experiment name; defaults to the namespace.")
    run_name: str | None = Field(None, max_length=256, description="Run name in the tracker; defaults to the run.")
    params: dict[str, str] | None = Field(None, description="Hyper-parameters logged with the run.")
    tags: dict[str, str] | None = Field(None, description="Tags logged with the run.")
    trackers: Annotated[list[TrackerName], AfterValidator(_at_most_every_tracker)] | None = Field(
        None,
        description="Trackers to configure; empty means those the operator enables by default.",
        json_schema_extra=_trackers_schema,
    )


class S3Spec(_Spec):
    """S3 (or compatible) connection details for `artifacts.store`."""

    endpoint: str | None = Field(None, description="Endpoint URL for S3-compatible stores such as MinIO.")
    region: str | None = Field(None, description="Region of the bucket.")
    credentials_secret: str | None = Field(
        None,
        max_length=253,
        description="Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, imported into the pods.",
    )


class ArtifactsSpec(_Spec):
    """Where the training code writes artifacts and where Runyard keeps them."""

    path: str = Field(
        c.DEFAULT_ARTIFACT_DIR,
        min_length=1,
        description=f"Directory in the container for artifacts and checkpoints ({c.ENV_ARTIFACT_DIR})",
    )
    store: str | None = Field(
        None,
        pattern=ARTIFACT_STORE_PATTERN,
        description=(
            "Persistent store: `pvc://<claim>[/<sub-path>]` (mounted at `path`), `s3://<bucket>/<prefix>` or "
            "`file://<path>` (local runs). Unset keeps artifacts in a pod-local emptyDir."
        ),
    )
    s3: S3Spec | None = Field(None, description="Connection details for `s3://` stores.")
    sync_interval_seconds: StrictInt | None = Field(
        None, ge=1, description="How often artifacts are synced to the store while the run is running."
    )
    delete_on_run_deletion: bool = Field(False, description="Delete the stored artifacts when the run is deleted.")


class TemplateRef(_Spec):
    """The TrainingRunTemplate (same namespace) or ClusterTrainingRunTemplate whose defaults and locks apply."""

    kind: Literal["TrainingRunTemplate", "ClusterTrainingRunTemplate"] = Field(
        "TrainingRunTemplate", description="TrainingRunTemplate (the run's namespace) or ClusterTrainingRunTemplate."
    )
    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_1123_SUBDOMAIN_PATTERN, description="Name of the template."
    )


class TrainingRunSpec(_Spec):
    """Desired state of a TrainingRun: the program, its roles and replicas, and the policies around it."""

    model_config = ConfigDict(json_schema_extra=spec_schema_extra)

    framework: FrameworkName = Field(description="Framework whose env contract is injected.")
    template_ref: TemplateRef | None = Field(
        None,
        description=(
            "Template whose defaults fill what the run leaves unset and whose locks it must keep "
            "(docs/templates.md); default templates (label runyard.dev/default-template=true) apply to every run."
        ),
    )
    image: str | None = Field(
        None,
        min_length=1,
        description="Container image of every replica (unless a role overrides it); may come from the template.",
    )
    command: list[str] | None = Field(None, description="Entrypoint; the image's ENTRYPOINT when unset.")
    args: list[str] | None = Field(None, description="Arguments to the entrypoint.")
    env: list[EnvVar] | None = Field(None, max_length=MAX_ENV, description="Extra env variables of every replica.")
    env_from: list[EnvFromSource] | None = Field(
        None, max_length=MAX_LIST, description="ConfigMaps and Secrets imported as env variables."
    )
    replicas: dict[str, ReplicaSpec] = Field(
        min_length=1,
        max_length=4,
        json_schema_extra=_replicas_schema,
    )
    nproc_per_node: NprocPerNode | None = Field(
        None,
        description=(
            "Processes per node (pytorch): an integer >= 1, or `auto`/`gpu`/`cpu` as torchrun reads them. "
            "Unset means the node's GPU count, or 1 on CPU-only nodes, so WORLD_SIZE is always known."
        ),
    )
    port: StrictInt | None = Field(
        None,
        ge=1024,
        le=65535,
        json_schema_extra=_port_schema,
    )
    mpi: MPISpec | None = Field(
        None,
        description="Launcher-over-SSH settings (hostfile slots, implementation, sshd port) of MPI-style frameworks.",
    )
    node_selector: dict[str, str] | None = Field(None, description="Node labels every pod must match.")
    affinity: dict[str, Any] | None = Field(None, description="Kubernetes `Affinity` of every pod.")
    tolerations: list[Toleration] | None = Field(None, max_length=MAX_LIST, description="Tolerations of every pod.")
    priority_class_name: str | None = Field(None, description="PriorityClass of every pod (also Kueue's priority).")
    service_account_name: str | None = Field(
        None, pattern=DNS_1123_SUBDOMAIN_PATTERN, description="ServiceAccount the pods run as."
    )
    volumes: list[dict[str, Any]] | None = Field(
        None,
        max_length=MAX_LIST,
        description="Kubernetes `Volume`s added to every pod.",
        # Each Volume passes through as is, but its name is declared, so CEL rules can check mounts against it.
        json_schema_extra={
            "items": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 63, "description": "Volume name."}
                },
            }
        },
    )
    volume_mounts: list[VolumeMount] | None = Field(
        None, max_length=MAX_LIST, description="Mounts of `volumes` into the training container."
    )
    security_context: SecurityOptions | None = Field(
        None, description="Pod security settings; unset means the `restricted` profile with the image's user."
    )
    pod_template: dict[str, Any] | None = Field(
        None,
        description=(
            "A partial PodTemplateSpec merged over the generated one (maps merged, containers and volumes "
            "merged "
            "by name, other lists replaced); the escape hatch for anything the spec does not model."
        ),
    )
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Restart, deadline and clean-up policy.")
    queue_name: str | None = Field(
        None,
        max_length=63,
        pattern=DNS_1123_SUBDOMAIN_PATTERN,
        description="Kueue LocalQueue; the Jobs are created suspended and Kueue admits them.",
    )
    tracking: TrackingSpec | None = Field(None, description="Experiment-tracking settings.")
    artifacts: ArtifactsSpec = Field(default_factory=ArtifactsSpec, description="Artifact directory and store.")


# --- status -----------------------------------------------------------------------------------------


class Condition(_Status):
    """A Kubernetes-style condition."""

    type: str = Field(description="Condition type, e.g. Running, Succeeded, Failed, Suspended, Restarting.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str | None = Field(None, description="CamelCase reason for the last transition.")
    message: str | None = Field(None, description="Human-readable details.")
    last_transition_time: str | None = Field(
        None,
        description="When the status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(None, description="Spec generation the condition was computed for.")


class FailureInfo(_Status):
    """The first failure that decided the run's fate."""

    role: str | None = Field(None, description="Role of the failed replica.")
    index: int | None = Field(None, description="Index of the failed replica.")
    pod: str | None = Field(None, description="Name of the failed pod.")
    container: str | None = Field(None, description="Container that failed.")
    exit_code: int | None = Field(None, description="Exit code of the container.")
    reason: str | None = Field(None, description="Termination reason, e.g. OOMKilled, Error, Evicted.")
    message: str | None = Field(None, description="Termination message or log tail.")
    category: FailureCategory | None = Field(None, description="What kind of failure it was (the retry policy's unit).")
    node: str | None = Field(None, description="Node the failed pod ran on.")
    rank: int | None = Field(
        None,
        description=(
            "Global rank of the failed replica's first process where the framework fixes it (torch nodes: index x "
            "nprocPerNode), else the replica's index."
        ),
    )
    log_tail: str | None = Field(
        None,
        description=(
            f"The last lines (at most {c.FAILURE_LOG_TAIL_LINES}, {c.FAILURE_LOG_TAIL_BYTES} bytes) of the failed "
            "replica's trainer log, read once when the failure was recorded; credentials redacted."
        ),
    )


class MLflowIds(_Status):
    """MLflow identifiers of the run."""

    experiment_id: str | None = Field(None, description="MLflow experiment id.")
    run_id: str | None = Field(None, description="MLflow run id.")


class TrackingStatus(_Status):
    """Where the run can be found in the trackers."""

    url: str | None = Field(None, description="Link to the run in the primary tracker.")
    mlflow: MLflowIds | None = Field(None, description="MLflow ids.")
    ids: dict[str, str] | None = Field(None, description="Run ids in other trackers, keyed by tracker name.")
    message: str | None = Field(None, description="Why tracking is degraded (e.g. the tracking server is unreachable).")


class GPUAllocation(_Status):
    """One GPU (or MIG instance) held by one of the run's pods over an interval."""

    pod: str | None = Field(None, description="Name of the pod holding the GPU.")
    pod_uid: str | None = Field(None, description="UID of that pod.")
    node: str | None = Field(None, description="Node of the GPU.")
    device: str | None = Field(
        None, description="GPU UUID, or UUID/gi<N> for a MIG instance; empty while no sample has named it yet."
    )
    index: str | None = Field(None, description="GPU index on the node.")
    mig_profile: str | None = Field(None, description="MIG profile, e.g. 1g.10gb (GPU-hours count its slice share).")
    start: str | None = Field(
        None, description="Start of the allocation (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    end: str | None = Field(
        None,
        description="End of the allocation, unset while held (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    energy_mj: float | None = Field(
        None, description="Last energy-counter reading (mJ) of an open allocation, to resume after a restart."
    )


class GPUSummary(_Status):
    """GPU usage of the run so far."""

    gpu_hours: float | None = Field(None, description="GPU-hours allocated (GPUs x wall-clock hours).")
    avg_utilization: float | None = Field(None, description="Mean GPU utilisation in percent.")
    peak_utilization: float | None = Field(None, description="Highest sampled GPU utilisation in percent.")
    peak_memory_bytes: float | None = Field(None, description="Highest GPU memory used by any GPU, in bytes.")
    avg_power_watts: float | None = Field(None, description="Mean power draw per GPU in watts.")
    energy_kwh: float | None = Field(None, alias="energyKWh", description="Energy used by the run's GPUs in kWh.")
    idle_gpu_hours: float | None = Field(None, description="GPU-hours with utilisation below 5 percent.")
    samples: int | None = Field(None, description="Number of metric samples the summary is based on.")
    sampled_gpu_hours: float | None = Field(
        None, description="GPU-hours covered by utilisation samples (the weight of avgUtilization; gaps excluded)."
    )
    energy_estimated: bool | None = Field(
        None, description="True when energy includes a share of a GPU's counter split by MIG slices (an estimate)."
    )
    estimated: bool | None = Field(
        None,
        description=(
            "True when utilisation, idle time or power came from point gauges read once per scrape (a source without "
            "Runyard's counters, such as a plain DCGM exporter, or MIG instances): they depend on the scrape interval."
        ),
    )
    last_sample_time: str | None = Field(
        None, description="When this summary was computed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    allocations: list[GPUAllocation] | None = Field(
        None, description="Allocation intervals (open ones and the most recent closed ones) behind gpuHours."
    )


class StoppedLogs(_Status):
    """Logs of replicas a suspension or a Kueue preemption stopped, archived while they stopped."""

    attempt: int = Field(description="The attempt whose replicas were stopped (it goes on when the run resumes).")
    segment: str = Field(description="Directory inside `<uri>/attempt-<n>/` holding `<role>-<index>.log`.")
    reason: str | None = Field(None, description="Suspended (runPolicy.suspend) or Preempted (Kueue).")
    time: str | None = Field(
        None,
        description="When the suspension began (the Jobs' Suspended condition).",
        json_schema_extra={"format": "date-time"},
    )
    message: str | None = Field(None, description="Why some ranks' logs are missing or incomplete.")


class LogArchiveStatus(_Status):
    """Where the run's rank logs were archived when its attempts ended (s3:// stores)."""

    uri: str | None = Field(None, description="Directory of the archive: `<storeUri>/logs`.")
    attempts: list[int] | None = Field(
        None, description="Attempts whose logs are archived, each at `<uri>/attempt-<n>/<role>-<index>.log`."
    )
    message: str | None = Field(
        None, description="Why logs of the last archived attempt are missing or incomplete, or why none are archived."
    )
    stops: list[StoppedLogs] | None = Field(
        None,
        description="Logs of replicas stopped by suspensions and preemptions (the most recent ones), oldest first.",
    )


class ArtifactsStatus(_Status):
    """What the run has stored."""

    store_uri: str | None = Field(None, description="URI of the run's artifacts in the store.")
    files: int | None = Field(None, description="Number of stored files.")
    total_bytes: int | None = Field(None, description="Total size of the stored files.")
    newest_checkpoint: str | None = Field(None, description="Path of the newest checkpoint, used to resume.")
    manifest: str | None = Field(None, description="Path of the manifest listing the stored files.")
    logs: LogArchiveStatus | None = Field(None, description="Archived logs of the run's ranks, per attempt.")


class CheckpointStatus(_Status):
    """The newest complete checkpoint in the run's store, from the artifact manifest."""

    uri: str = Field(description="Store URI of the checkpoint (a file, or a directory with a completion marker).")
    step: int | None = Field(None, description="Step number in its name (None when the name has none).")
    time: str | None = Field(None, description="When it was written.", json_schema_extra={"format": "date-time"})
    sha256: str | None = Field(
        None,
        description="sha256 of the file; of a directory checkpoint, of its sorted `<sha256>  <path>` listing.",
    )
    bytes: int | None = Field(None, description="Its size.")
    attempt: int | None = Field(None, description="The attempt (restarts) whose replicas wrote it, as last seen.")


class ResumeStatus(_Status):
    """Where the current replicas resume from: a gang restart, or replicas recreated after a suspension."""

    attempt: int = Field(description="The attempt the resumed replicas belong to.")
    step: int | None = Field(None, description="Step of the checkpoint they were handed (None when unknown).")
    uri: str | None = Field(None, description="The checkpoint, when the operator could read the store.")
    time: str | None = Field(None, description="When they were created.", json_schema_extra={"format": "date-time"})


class StopStatus(_Status):
    """Replicas stopped by a suspension or a Kueue preemption, not by a failure: they resume when the run does."""

    attempt: int = Field(description="The attempt whose replicas were stopped.")
    reason: str = Field(description="Suspended (runPolicy.suspend) or Preempted (Kueue evicted the workload).")
    time: str | None = Field(None, description="When the stop was seen.", json_schema_extra={"format": "date-time"})


class SilentRank(_Status):
    """A rank that reported progress once and has been silent for longer than `runPolicy.stallTimeoutSeconds`."""

    rank: int = Field(description="Global rank of the silent process.")
    pod: str = Field(description="Its pod.")
    node: str | None = Field(None, description="The node the pod runs on.")
    last_report_time: str | None = Field(
        None, description="Its last report.", json_schema_extra={"format": "date-time"}
    )


class ProgressStatus(_Status):
    """How far the run got, from its ranks' progress reports (runyard.log_metrics(step=...), set_total_steps)."""

    step: int = Field(description="Newest step reported by global rank 0 (by the furthest rank if rank 0 is silent).")
    total_steps: int | None = Field(None, description="Steps the run will take, as its code reported.")
    percent: int | None = Field(None, ge=0, le=100, description="step / totalSteps, in percent.")
    steps_per_second: float | None = Field(None, description="Recent rate (steps per second) over this attempt.")
    eta: str | None = Field(
        None,
        description="When the run should reach totalSteps at that rate.",
        json_schema_extra={"format": "date-time"},
    )
    remaining: str | None = Field(None, description="Time left at that rate, as of lastReportTime (e.g. 12m30s).")
    summary: str | None = Field(
        None,
        description="One-line progress for `kubectl get`, e.g. 45%(4500/10000), or 4500/? without a total (no spaces: one column field).",
    )
    last_report_time: str | None = Field(
        None, description="When the newest report arrived.", json_schema_extra={"format": "date-time"}
    )
    reporting_ranks: int | None = Field(None, description="Ranks that reported in the current attempt.")
    attempt: int | None = Field(None, description="Attempt (status.restarts) the reports came from.")
    silent_ranks: list[SilentRank] | None = Field(
        None,
        max_length=c.MAX_SILENT_RANKS,
        description=f"Ranks silent for longer than runPolicy.stallTimeoutSeconds (the {c.MAX_SILENT_RANKS} lowest).",
    )


class AppliedTemplate(_Status):
    """A template as it was when the run was first seen: the run keeps these defaults and locks for its whole life."""

    kind: str = Field(description="TrainingRunTemplate or ClusterTrainingRunTemplate.")
    name: str = Field(description="Name of the template.")
    uid: str | None = Field(None, description="UID of the template object.")
    generation: int | None = Field(None, description="Generation of the template that was applied.")
    defaults: dict[str, Any] | None = Field(None, description="The template's defaults.")
    locks: dict[str, Any] | None = Field(None, description="The template's locks.")


class TemplateStatus(_Status):
    """Which templates shaped the run: default templates first, then `spec.templateRef`."""

    name: str | None = Field(None, description="The most specific template applied (shown by `kubectl get tr`).")
    applied: list[AppliedTemplate] | None = Field(None, description="Every template applied, outermost first.")


class TrainingRunStatus(_Status):
    """Observed state of a TrainingRun, written by the operator."""

    phase: Phase | None = Field(None, description="Coarse state of the run.")
    conditions: list[Condition] | None = Field(
        None,
        description="Detailed conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(None, description="Spec generation the status was computed for.")
    ready_replicas: int | None = Field(None, description="Pods that are ready.")
    total_replicas: int | None = Field(None, description="Pods the run needs, over all roles.")
    restarts: int | None = Field(None, description="Whole-gang restarts so far.")
    start_time: str | None = Field(
        None, description="When the run started (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    completion_time: str | None = Field(
        None, description="When the run finished (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    failure: FailureInfo | None = Field(None, description="The failure that failed or restarted the run.")
    scheduling_message: str | None = Field(None, description="Why pods are not scheduled yet, if they are not.")
    nodes: list[str] | None = Field(None, description="Nodes the run's pods run on.")
    avoid_nodes: list[str] | None = Field(
        None,
        max_length=c.MAX_AVOID_NODES,
        description=(
            "Nodes where a replica failed with a GPU error or was lost: the run's gang restarts are not scheduled "
            f"there (required node anti-affinity). The {c.MAX_AVOID_NODES} most recent."
        ),
    )
    ssh_secret: str | None = Field(
        None, description="Name of the MPI SSH Secret the operator generated for the run (framework mpi)."
    )
    gpus: int | None = Field(None, description="GPUs currently allocated to the run's pods.")
    tracking: TrackingStatus | None = Field(None, description="Tracker links and ids.")
    gpu: GPUSummary | None = Field(None, description="GPU usage summary.")
    artifacts: ArtifactsStatus | None = Field(None, description="Stored artifacts.")
    progress: ProgressStatus | None = Field(None, description="How far the run got and when it should end.")
    last_checkpoint: CheckpointStatus | None = Field(
        None, description="The newest complete checkpoint, from the artifact manifest (s3:// stores)."
    )
    resumed_from: ResumeStatus | None = Field(None, description="The checkpoint the current replicas resumed from.")
    stopped: StopStatus | None = Field(
        None, description="Set while stopped replicas wait to resume (suspension or Kueue preemption)."
    )
    template: TemplateStatus | None = Field(None, description="Templates applied to the run.")
    message: str | None = Field(None, description="Human-readable summary of the current state.")


# --- the resource -----------------------------------------------------------------------------------


class TrainingRun(BaseModel):
    """A distributed training run: gang-scheduled Indexed Jobs plus the env contract of its framework."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)

    api_version: Literal["runyard.dev/v1alpha1"] = Field(
        "runyard.dev/v1alpha1", description="API version of the object."
    )
    kind: Literal["TrainingRun"] = Field("TrainingRun", description="Kind of the object.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: TrainingRunSpec = Field(description="Desired state.")
    status: TrainingRunStatus | None = Field(None, description="Observed state.")

    @property
    def name(self) -> str:
        """The run's name; raises when the manifest has none."""
        if not self.metadata.name:
            raise ValueError("metadata.name is required")
        return self.metadata.name

    def to_manifest(self) -> dict[str, Any]:
        """Serialise to the wire form (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
