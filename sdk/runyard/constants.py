"""Every label, annotation, finalizer, env key and API coordinate Runyard uses, as named constants."""

from typing import Final

# --- API coordinates -------------------------------------------------------------------------------
GROUP: Final = "runyard.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TrainingRun"
PLURAL: Final = "trainingruns"
SINGULAR: Final = "trainingrun"
SHORT_NAMES: Final = ("tr",)
CATEGORIES: Final = ("runyard",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# Run templates: defaults and locks a platform sets once (docs/templates.md).
TEMPLATE_KIND: Final = "TrainingRunTemplate"
TEMPLATE_PLURAL: Final = "trainingruntemplates"
TEMPLATE_SINGULAR: Final = "trainingruntemplate"
TEMPLATE_SHORT_NAMES: Final = ("trt",)
CLUSTER_TEMPLATE_KIND: Final = "ClusterTrainingRunTemplate"
CLUSTER_TEMPLATE_PLURAL: Final = "clustertrainingruntemplates"
CLUSTER_TEMPLATE_SINGULAR: Final = "clustertrainingruntemplate"
CLUSTER_TEMPLATE_SHORT_NAMES: Final = ("ctrt",)
# Sweeps: hyperparameter searches whose trials are TrainingRuns (docs/sweeps.md).
SWEEP_KIND: Final = "TrainingRunSweep"
SWEEP_PLURAL: Final = "trainingrunsweeps"
SWEEP_SINGULAR: Final = "trainingrunsweep"
SWEEP_SHORT_NAMES: Final = ("sweep", "trs")
LABEL_SWEEP: Final = f"{GROUP}/sweep"
LABEL_TRIAL_INDEX: Final = f"{GROUP}/trial-index"
ANNOTATION_PRUNED: Final = f"{GROUP}/pruned"
TAG_MLFLOW_PARENT_RUN_ID: Final = "mlflow.parentRunId"
# A ClusterTrainingRunTemplate with this label set to "true" applies to every run (its locks cannot be escaped).
LABEL_DEFAULT_TEMPLATE: Final = f"{GROUP}/default-template"

FIELD_MANAGER: Final = "runyard-operator"
FINALIZER: Final = f"{GROUP}/finalizer"

# --- Labels (on every child object and pod) --------------------------------------------------------
LABEL_PREFIX: Final = f"{GROUP}/"
LABEL_RUN_NAME: Final = f"{GROUP}/run-name"
LABEL_RUN_UID: Final = f"{GROUP}/run-uid"
LABEL_ROLE: Final = f"{GROUP}/role"
LABEL_FRAMEWORK: Final = f"{GROUP}/framework"
LABEL_REPLICA_INDEX: Final = f"{GROUP}/replica-index"
LABEL_RESTART_ATTEMPT: Final = f"{GROUP}/restart-attempt"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "runyard-operator"
LABEL_KUEUE_QUEUE: Final = "kueue.x-k8s.io/queue-name"

# --- Annotations ------------------------------------------------------------------------------------
ANNOTATION_PREFIX: Final = f"{GROUP}/"
ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"
ANNOTATION_GIT_COMMIT: Final = f"{GROUP}/git-commit"
ANNOTATION_GIT_BRANCH: Final = f"{GROUP}/git-branch"
ANNOTATION_GIT_REPO: Final = f"{GROUP}/git-repo"
# Set by the batch/v1 Job controller on every pod of an Indexed Job.
ANNOTATION_JOB_COMPLETION_INDEX: Final = "batch.kubernetes.io/job-completion-index"
# The kubelet's node name label: gang restarts avoid faulty nodes by it (status.avoidNodes).
LABEL_HOSTNAME: Final = "kubernetes.io/hostname"

# --- Roles ------------------------------------------------------------------------------------------
ROLE_NODE: Final = "node"
ROLE_CHIEF: Final = "chief"
ROLE_WORKER: Final = "worker"
ROLE_PS: Final = "ps"
ROLE_EVALUATOR: Final = "evaluator"
ROLE_LAUNCHER: Final = "launcher"

# --- Runyard env contract (every pod / local process) -----------------------------------------------
ENV_RUN_NAME: Final = "RUNYARD_RUN_NAME"
ENV_RUN_UID: Final = "RUNYARD_RUN_UID"
ENV_NAMESPACE: Final = "RUNYARD_NAMESPACE"
ENV_ROLE: Final = "RUNYARD_ROLE"
ENV_REPLICA_INDEX: Final = "RUNYARD_REPLICA_INDEX"
ENV_FRAMEWORK: Final = "RUNYARD_FRAMEWORK"
ENV_RESTART_ATTEMPT: Final = "RUNYARD_RESTART_ATTEMPT"
ENV_OUTPUT_DIR: Final = "RUNYARD_OUTPUT_DIR"
ENV_ARTIFACT_DIR: Final = "RUNYARD_ARTIFACT_DIR"
ENV_RESUME_FROM: Final = "RUNYARD_RESUME_FROM"
ENV_POD_NAME: Final = "RUNYARD_POD_NAME"
ENV_NODE_NAME: Final = "RUNYARD_NODE_NAME"
ENV_TENSORBOARD_DIR: Final = "RUNYARD_TENSORBOARD_DIR"
ENV_NUM_REPLICAS: Final = "RUNYARD_NUM_REPLICAS"
ENV_RUN_COORDINATOR: Final = "RUNYARD_COORDINATOR_ADDRESS"

# Progress reports: ranks POST {step, total} to the operator, authenticated by a projected ServiceAccount token whose
# audience is PROGRESS_AUDIENCE (the operator checks it with a TokenReview and maps the pod to its run).
ENV_PROGRESS_URL: Final = "RUNYARD_PROGRESS_URL"
ENV_PROGRESS_TOKEN_FILE: Final = "RUNYARD_PROGRESS_TOKEN_FILE"
ENV_PROGRESS_INTERVAL: Final = "RUNYARD_PROGRESS_INTERVAL"
PROGRESS_AUDIENCE: Final = f"{GROUP}/progress"
PROGRESS_PATH: Final = "/v1/progress"
PROGRESS_VOLUME: Final = "runyard-progress-token"
PROGRESS_TOKEN_DIR: Final = "/var/run/secrets/runyard.dev/progress"
PROGRESS_TOKEN_FILE: Final = "token"
PROGRESS_TOKEN_SECONDS: Final = 3600  # the kubelet renews a projected token at 80 % of its life
PROGRESS_REPORT_SECONDS: Final = 10.0  # a rank sends at most one report per this many seconds
PROGRESS_WRITE_SECONDS: Final = 30.0
MAX_SILENT_RANKS: Final = 16  # status.progress.silentRanks lists at most this many (the lowest ranks)  # the operator writes status.progress at most once per run per this long

# Artifact store settings: the operator passes its cluster-wide defaults to the builders under these names.
ENV_ARTIFACT_STORE: Final = "RUNYARD_ARTIFACT_STORE"
ENV_ARTIFACT_SYNC_IMAGE: Final = "RUNYARD_ARTIFACT_SYNC_IMAGE"
ENV_ARTIFACT_SYNC_INTERVAL: Final = "RUNYARD_ARTIFACT_SYNC_INTERVAL"
ENV_AWS_ENDPOINT_URL: Final = "AWS_ENDPOINT_URL"
ENV_AWS_REGION: Final = "AWS_REGION"
ENV_AWS_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
ENV_AWS_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"
ENV_AWS_SESSION_TOKEN: Final = "AWS_SESSION_TOKEN"

# --- Framework env contracts ------------------------------------------------------------------------
ENV_PYTHONUNBUFFERED: Final = "PYTHONUNBUFFERED"
# torchrun writes its first worker failure (exit code, signal) here; pointing it at the termination log puts that
# failure into the container's terminated state, where the operator reads it.
ENV_TORCHELASTIC_ERROR_FILE: Final = "TORCHELASTIC_ERROR_FILE"
TERMINATION_LOG_PATH: Final = "/dev/termination-log"
ENV_MASTER_ADDR: Final = "MASTER_ADDR"
ENV_MASTER_PORT: Final = "MASTER_PORT"
ENV_WORLD_SIZE: Final = "WORLD_SIZE"
ENV_RANK: Final = "RANK"
ENV_LOCAL_WORLD_SIZE: Final = "LOCAL_WORLD_SIZE"
ENV_LOCAL_RANK: Final = "LOCAL_RANK"
ENV_PET_MASTER_ADDR: Final = "PET_MASTER_ADDR"
ENV_PET_MASTER_PORT: Final = "PET_MASTER_PORT"
ENV_PET_NNODES: Final = "PET_NNODES"
ENV_PET_NODE_RANK: Final = "PET_NODE_RANK"
ENV_PET_NPROC_PER_NODE: Final = "PET_NPROC_PER_NODE"
ENV_TF_CONFIG: Final = "TF_CONFIG"
ENV_JAX_COORDINATOR_ADDRESS: Final = "JAX_COORDINATOR_ADDRESS"
ENV_JAX_NUM_PROCESSES: Final = "JAX_NUM_PROCESSES"
ENV_JAX_PROCESS_ID: Final = "JAX_PROCESS_ID"
ENV_COORDINATOR_ADDRESS: Final = "COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES: Final = "NUM_PROCESSES"
ENV_PROCESS_ID: Final = "PROCESS_ID"
ENV_COORDINATOR_PORT: Final = "COORDINATOR_PORT"
ENV_K_MPI_JOB_ROLE: Final = "K_MPI_JOB_ROLE"
ENV_OMPI_KEEP_FQDN: Final = "OMPI_MCA_orte_keep_fqdn_hostnames"
ENV_OMPI_DEFAULT_HOSTFILE: Final = "OMPI_MCA_orte_default_hostfile"
ENV_OMPI_RSH_ARGS: Final = "OMPI_MCA_plm_rsh_args"
ENV_OMPI_DEFAULT_SLOTS: Final = "OMPI_MCA_orte_set_default_slots"
ENV_I_MPI_HOST_FILE: Final = "I_MPI_HYDRA_HOST_FILE"
ENV_I_MPI_BOOTSTRAP_ARGS: Final = "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS"
ENV_I_MPI_PERHOST: Final = "I_MPI_PERHOST"
ENV_HYDRA_HOST_FILE: Final = "HYDRA_HOST_FILE"
ENV_HYDRA_LAUNCH_ARGS: Final = "HYDRA_LAUNCH_EXTRA_ARGS"
ENV_NVIDIA_VISIBLE_DEVICES: Final = "NVIDIA_VISIBLE_DEVICES"
ENV_NVIDIA_DRIVER_CAPABILITIES: Final = "NVIDIA_DRIVER_CAPABILITIES"

# --- Defaults ---------------------------------------------------------------------------------------
DEFAULT_PYTORCH_PORT: Final = 29500
DEFAULT_TF_PORT: Final = 2222
DEFAULT_JAX_PORT: Final = 6666
DEFAULT_MPI_SSH_PORT: Final = 2222
DEFAULT_ARTIFACT_DIR: Final = "/runyard/artifacts"
# The run's directory of a pvc:// store, mounted read-only so any rank can read any rank's checkpoints.
RUN_ARTIFACTS_MOUNT: Final = "/runyard/run-artifacts"
# Image of the S3 sync sidecar (python + boto3 + runyard); operators override it with artifacts.sidecarImage.
DEFAULT_ARTIFACT_SYNC_IMAGE: Final = "ghcr.io/runyard/artifact-sync:0.1.0"
DEFAULT_ARTIFACT_SYNC_INTERVAL: Final = 30
ARTIFACT_SYNC_CONTAINER: Final = "artifact-sync"
# Pod grace period when the sync sidecar runs: covers its final pass after the trainer exits or the pod is deleted.
DEFAULT_ARTIFACT_SYNC_GRACE_SECONDS: Final = 120
# Log archive (docs/artifacts.md): what the operator keeps of each rank's log when an attempt ends, and how long the
# whole archive of one attempt may take (a reconcile waits for it, since the pods go right after).
DEFAULT_LOG_ARCHIVE_MAX_BYTES: Final = 8 * 2**20
DEFAULT_LOG_ARCHIVE_TIMEOUT_SECONDS: Final = 60
# Ranks read at once: bounds the operator's memory to this many times the per-rank limit.
LOG_ARCHIVE_CONCURRENCY: Final = 4
# Whole-gang restarts allowed before a run fails (Kubeflow's per-pod backoffLimit has no gang meaning).
DEFAULT_BACKOFF_LIMIT: Final = 3
# How long a replica may stay unable to start (image pull error, invalid container config) before the run fails.
DEFAULT_START_TIMEOUT_SECONDS: Final = 600
# How long a replica stays bound to a NotReady or unreachable node before it is evicted (and the gang restarts):
# the tolerationSeconds Runyard gives pods for those taints, unless the spec tolerates them itself.
DEFAULT_NODE_LOST_SECONDS: Final = 60
NODE_LOST_TAINTS: Final = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
# The pod condition the API server, scheduler and taint manager set on pods they are about to delete.
POD_CONDITION_DISRUPTION: Final = "DisruptionTarget"
# Failure reasons a gang restart retries whatever the exit code: infrastructure, not the program. `Unknown` is a
# failure whose cause nothing recorded (its pod is gone); `JobDeleted` a child Job someone deleted mid-run.
DEFAULT_RETRY_REASONS: Final = ("Evicted", "Preempted", "NodeLost", "Disrupted", "Unknown", "JobDeleted")
# Failure triage (docs/operator.md): the end of the failed rank's log the operator reads once, when it records the
# failure, into status.failure.logTail; bounded so a failure costs one small read and a few KB of status.
FAILURE_LOG_TAIL_LINES: Final = 20
FAILURE_LOG_TAIL_BYTES: Final = 4096
# A node that does not answer pods/log (kwok, a node gone) must not hold the reconcile that records the failure.
FAILURE_LOG_TAIL_TIMEOUT_SECONDS: Final = 5.0
# Nodes a run's gang restarts avoid after a GPU or node fault there (status.avoidNodes, oldest dropped first).
MAX_AVOID_NODES: Final = 8
DEFAULT_BACKOFF_SECONDS: Final = 10
# Bound on how long the MPI launcher's init container waits for every worker's sshd.
DEFAULT_MPI_WAIT_SECONDS: Final = 300
DEFAULT_OUTPUT_DIR: Final = "/runyard/outputs"
MPI_CONFIG_MOUNT: Final = "/etc/mpi"
MPI_HOSTFILE_KEY: Final = "hostfile"
MPI_CONFIG_SUFFIX: Final = "-mpi"
MPI_SSH_SECRET_SUFFIX: Final = "-mpi-ssh"
MPI_SSH_SECRET_MOUNT: Final = "/etc/runyard/ssh-secret"
# Writable copy of the SSH material: ssh and sshd refuse keys that other users can read.
MPI_SSH_DIR: Final = "/runyard/ssh"
SSH_PRIVATE_KEY_KEY: Final = "ssh-privatekey"
SSH_PUBLIC_KEY_KEY: Final = "ssh-publickey"
SHM_MOUNT: Final = "/dev/shm"
# Local runs give each (role, index) its own port: base + role slot * LOCAL_PORTS_PER_ROLE + index.
LOCAL_PORTS_PER_ROLE: Final = 100
GPU_RESOURCE: Final = "nvidia.com/gpu"
CONTAINER_NAME: Final = "trainer"
# Longest run name whose children stay valid DNS labels: "<name>-evaluator-<index up to 9999>" <= 63.
MAX_RUN_NAME_LENGTH: Final = 48
MAX_REPLICAS_PER_ROLE: Final = 9999

# --- Experiment tracking (runyard.tracking, operator tracking plugin) ---------------------------------
# Tag that joins a TrainingRun to its MLflow run; searched before creating one, so retries never duplicate.
TAG_TRAININGRUN_UID: Final = "runyard.trainingrun.uid"
TAG_K8S_NAMESPACE: Final = "k8s.namespace"
TAG_K8S_RUN_NAME: Final = "k8s.trainingrun.name"
TAG_K8S_RUN_UID: Final = "k8s.trainingrun.uid"
TAG_K8S_FRAMEWORK: Final = "k8s.framework"
TAG_K8S_IMAGE: Final = "k8s.image"
TAG_K8S_REPLICAS: Final = "k8s.replicas"
TAG_K8S_GPUS_PER_REPLICA: Final = "k8s.gpus_per_replica"
TAG_K8S_NODES: Final = "k8s.nodes"
TAG_K8S_NODE_PREFIX: Final = "k8s.node."
TAG_K8S_PHASE: Final = "k8s.phase"
# MLflow's own source tags, so the UI shows the commit and branch without any Runyard knowledge.
TAG_MLFLOW_GIT_COMMIT: Final = "mlflow.source.git.commit"
TAG_MLFLOW_GIT_BRANCH: Final = "mlflow.source.git.branch"
TAG_MLFLOW_GIT_REPO: Final = "mlflow.source.git.repoURL"
# ClearML tasks are created by the ClearML server; a run names the one its ranks join with this annotation.
ANNOTATION_CLEARML_TASK_ID: Final = f"{GROUP}/clearml-task-id"

ENV_POD_UID: Final = "RUNYARD_POD_UID"
ENV_POD_IP: Final = "RUNYARD_POD_IP"
ENV_GLOBAL_RANK: Final = "RUNYARD_GLOBAL_RANK"
ENV_RANK_LABEL: Final = "RUNYARD_RANK_LABEL"
ENV_TRACKERS: Final = "RUNYARD_TRACKERS"
# Per-rank W&B primary flag for the in-pod helper: a pod template cannot compute "index == 0" (see tracking/env.py).
ENV_WANDB_PRIMARY_LABEL: Final = "RUNYARD_WANDB_PRIMARY_LABEL"

ENV_MLFLOW_TRACKING_URI: Final = "MLFLOW_TRACKING_URI"
ENV_MLFLOW_EXPERIMENT_ID: Final = "MLFLOW_EXPERIMENT_ID"
ENV_MLFLOW_RUN_ID: Final = "MLFLOW_RUN_ID"
ENV_CUDA_VISIBLE_DEVICES: Final = "CUDA_VISIBLE_DEVICES"
ENV_MLFLOW_TRACKING_USERNAME: Final = "MLFLOW_TRACKING_USERNAME"
ENV_MLFLOW_TRACKING_PASSWORD: Final = "MLFLOW_TRACKING_PASSWORD"
ENV_MLFLOW_TRACKING_TOKEN: Final = "MLFLOW_TRACKING_TOKEN"
ENV_MLFLOW_SYSTEM_METRICS: Final = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
ENV_MLFLOW_SYSTEM_METRICS_NODE_ID: Final = "MLFLOW_SYSTEM_METRICS_NODE_ID"
ENV_MLFLOW_SYSTEM_METRICS_INTERVAL: Final = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"

ENV_WANDB_RUN_ID: Final = "WANDB_RUN_ID"
ENV_WANDB_RUN_GROUP: Final = "WANDB_RUN_GROUP"
ENV_WANDB_PROJECT: Final = "WANDB_PROJECT"
ENV_WANDB_NAME: Final = "WANDB_NAME"
ENV_WANDB_JOB_TYPE: Final = "WANDB_JOB_TYPE"
ENV_WANDB_TAGS: Final = "WANDB_TAGS"
ENV_WANDB_DIR: Final = "WANDB_DIR"
ENV_WANDB_MODE: Final = "WANDB_MODE"
ENV_WANDB_BASE_URL: Final = "WANDB_BASE_URL"
ENV_WANDB_X_LABEL: Final = "WANDB_X_LABEL"
ENV_WANDB_X_PRIMARY: Final = "WANDB_X_PRIMARY"
ENV_WANDB_X_UPDATE_FINISH_STATE: Final = "WANDB_X_UPDATE_FINISH_STATE"
ENV_WANDB_API_KEY: Final = "WANDB_API_KEY"

ENV_COMET_EXPERIMENT_KEY: Final = "COMET_EXPERIMENT_KEY"
ENV_COMET_START_MODE: Final = "COMET_START_MODE"
ENV_COMET_PROJECT_NAME: Final = "COMET_PROJECT_NAME"
ENV_COMET_EXPERIMENT_NAME: Final = "COMET_START_EXPERIMENT_NAME"
ENV_COMET_NODE_IDENTIFIER: Final = "COMET_DISTRIBUTED_NODE_IDENTIFIER"
ENV_COMET_OFFLINE_DIRECTORY: Final = "COMET_OFFLINE_DIRECTORY"
ENV_COMET_API_KEY: Final = "COMET_API_KEY"

ENV_CLEARML_TASK_ID: Final = "CLEARML_TASK_ID"
ENV_CLEARML_MULTI_NODE_SINGLE_TASK: Final = "CLEARML_MULTI_NODE_SINGLE_TASK"
ENV_CLEARML_NODE_ID: Final = "CLEARML_NODE_ID"
ENV_CLEARML_API_ACCESS_KEY: Final = "CLEARML_API_ACCESS_KEY"
ENV_CLEARML_API_SECRET_KEY: Final = "CLEARML_API_SECRET_KEY"

ENV_POLYAXON_RUN_INSTANCE: Final = "POLYAXON_RUN_INSTANCE"
ENV_POLYAXON_COLLECT_RESOURCES: Final = "POLYAXON_COLLECT_RESOURCES"
ENV_POLYAXON_K8S_NODE_NAME: Final = "POLYAXON_K8S_NODE_NAME"
ENV_POLYAXON_K8S_NAMESPACE: Final = "POLYAXON_K8S_NAMESPACE"
ENV_POLYAXON_K8S_POD_ID: Final = "POLYAXON_K8S_POD_ID"
ENV_POLYAXON_AUTH_TOKEN: Final = "POLYAXON_AUTH_TOKEN"

ENV_NEPTUNE_CUSTOM_RUN_ID: Final = "NEPTUNE_CUSTOM_RUN_ID"
ENV_NEPTUNE_PROJECT: Final = "NEPTUNE_PROJECT"
ENV_NEPTUNE_MONITORING_NAMESPACE: Final = "NEPTUNE_MONITORING_NAMESPACE"
ENV_NEPTUNE_API_TOKEN: Final = "NEPTUNE_API_TOKEN"

ENV_VH_OUTPUTS_DIR: Final = "VH_OUTPUTS_DIR"

# Local runs: where the embedded MLflow store lives, relative to the run's state directory.
LOCAL_MLFLOW_DB: Final = "mlflow.db"
LOCAL_MLFLOW_ARTIFACTS: Final = "mlartifacts"
LOCAL_STATE_DIR: Final = ".runyard"
DEFAULT_EXPERIMENT: Final = "default"
