"""TrainingRun `runyard.dev/v1alpha1`: the pydantic models that are the single source of the CRD schema."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, WithJsonSchema
from pydantic.alias_generators import to_camel

from runyard import constants as c
from runyard.api.rules import FRAMEWORK_ROLES as _ROLE_TABLE
from runyard.api.rules import spec_schema_extra

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
    )


class _Status(BaseModel):
    """Base of status models: written by the operator, read leniently."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Framework(StrEnum):
    """Distributed training framework whose environment contract Runyard injects."""

    PYTORCH = "pytorch"
    TENSORFLOW = "tensorflow"
    MPI = "mpi"
    JAX = "jax"
    GENERIC = "generic"


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


class Tracker(StrEnum):
    """Experiment trackers Runyard can configure for the training code."""

    MLFLOW = "mlflow"
    WANDB = "wandb"
    COMET = "comet"
    CLEARML = "clearml"
    TENSORBOARD = "tensorboard"
    POLYAXON = "polyaxon"
    NEPTUNE = "neptune"


class ConditionStatus(StrEnum):
    """Kubernetes condition status."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


# Roles each framework accepts (the table in rules.py, keyed by the enum here).
FRAMEWORK_ROLES: dict[Framework, tuple[str, ...]] = {Framework(f): roles for f, roles in _ROLE_TABLE.items()}
# Canonical order of roles in output (Jobs, TF_CONFIG lists, local ports).
ROLE_ORDER: tuple[str, ...] = (
    c.ROLE_NODE,
    c.ROLE_LAUNCHER,
    c.ROLE_CHIEF,
    c.ROLE_WORKER,
    c.ROLE_PS,
    c.ROLE_EVALUATOR,
)
DEFAULT_PORTS: dict[Framework, int] = {
    Framework.PYTORCH: c.DEFAULT_PYTORCH_PORT,
    Framework.TENSORFLOW: c.DEFAULT_TF_PORT,
    Framework.JAX: c.DEFAULT_JAX_PORT,
    Framework.MPI: c.DEFAULT_MPI_SSH_PORT,
    Framework.GENERIC: c.DEFAULT_PYTORCH_PORT,
}


# --- metadata ---------------------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The subset of Kubernetes ObjectMeta Runyard reads; everything else is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

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


class RetryPolicy(_Spec):
    """Which failures restart the whole gang (while `backoffLimit` allows) instead of failing the run."""

    exit_codes: list[StrictInt] | None = Field(
        None,
        max_length=MAX_LIST,
        description=(
            "Exit codes that are retried. Unset means Kubeflow's ExitCode semantics: codes >= 128 (killed by "
            "a signal: preemption, node loss, OOM) are retried, 1-127 (the program's own error) fail the run."
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


# --- spec: tracking and artifacts -------------------------------------------------------------------


class TrackingSpec(_Spec):
    """Experiment tracking: names and values handed to the trackers."""

    experiment: str | None = Field(None, max_length=256, description="Experiment name; defaults to the namespace.")
    run_name: str | None = Field(None, max_length=256, description="Run name in the tracker; defaults to the run.")
    params: dict[str, str] | None = Field(None, description="Hyper-parameters logged with the run.")
    tags: dict[str, str] | None = Field(None, description="Tags logged with the run.")
    trackers: list[Tracker] | None = Field(
        None,
        max_length=7,
        description="Trackers to configure; empty means those the operator enables by default.",
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


class TrainingRunSpec(_Spec):
    """Desired state of a TrainingRun: the program, its roles and replicas, and the policies around it."""

    model_config = ConfigDict(json_schema_extra=spec_schema_extra)

    framework: Framework = Field(
        description="Framework whose env contract is injected: pytorch, tensorflow, mpi, jax or generic."
    )
    image: str = Field(min_length=1, description="Container image of every replica (unless a role overrides it).")
    command: list[str] | None = Field(None, description="Entrypoint; the image's ENTRYPOINT when unset.")
    args: list[str] | None = Field(None, description="Arguments to the entrypoint.")
    env: list[EnvVar] | None = Field(None, max_length=MAX_ENV, description="Extra env variables of every replica.")
    env_from: list[EnvFromSource] | None = Field(
        None, max_length=MAX_LIST, description="ConfigMaps and Secrets imported as env variables."
    )
    replicas: dict[str, ReplicaSpec] = Field(
        min_length=1,
        max_length=4,
        description=(
            "Roles and their replicas. pytorch, jax, generic: `node`; tensorflow: `chief` (at most 1), "
            "`worker`, "
            "`ps`, `evaluator` (at least a chief or a worker); mpi: `launcher` (exactly 1) and `worker`."
        ),
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
        description="Rendezvous port: pytorch 29500, tensorflow 2222, jax 6666, generic 29500 by default.",
    )
    mpi: MPISpec | None = Field(None, description="MPI settings (framework mpi only).")
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

    def roles(self) -> list[str]:
        """The roles of this run in canonical order."""
        return sorted(self.replicas, key=lambda r: ROLE_ORDER.index(r) if r in ROLE_ORDER else len(ROLE_ORDER))

    def default_port(self) -> int:
        """The rendezvous port: `spec.port` or the framework's default."""
        if self.framework is Framework.MPI:
            return self.mpi.ssh_port if self.mpi else c.DEFAULT_MPI_SSH_PORT
        return self.port if self.port is not None else DEFAULT_PORTS[self.framework]


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
    last_sample_time: str | None = Field(
        None, description="When this summary was computed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    allocations: list[GPUAllocation] | None = Field(
        None, description="Allocation intervals (open ones and the most recent closed ones) behind gpuHours."
    )


class ArtifactsStatus(_Status):
    """What the run has stored."""

    store_uri: str | None = Field(None, description="URI of the run's artifacts in the store.")
    files: int | None = Field(None, description="Number of stored files.")
    total_bytes: int | None = Field(None, description="Total size of the stored files.")
    newest_checkpoint: str | None = Field(None, description="Path of the newest checkpoint, used to resume.")
    manifest: str | None = Field(None, description="Path of the manifest listing the stored files.")


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
    ssh_secret: str | None = Field(
        None, description="Name of the MPI SSH Secret the operator generated for the run (framework mpi)."
    )
    gpus: int | None = Field(None, description="GPUs currently allocated to the run's pods.")
    tracking: TrackingStatus | None = Field(None, description="Tracker links and ids.")
    gpu: GPUSummary | None = Field(None, description="GPU usage summary.")
    artifacts: ArtifactsStatus | None = Field(None, description="Stored artifacts.")
    message: str | None = Field(None, description="Human-readable summary of the current state.")


# --- the resource -----------------------------------------------------------------------------------


class TrainingRun(BaseModel):
    """A distributed training run: gang-scheduled Indexed Jobs plus the env contract of its framework."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

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
