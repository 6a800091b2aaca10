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

# --- Framework env contracts ------------------------------------------------------------------------
ENV_PYTHONUNBUFFERED: Final = "PYTHONUNBUFFERED"
ENV_MASTER_ADDR: Final = "MASTER_ADDR"
ENV_MASTER_PORT: Final = "MASTER_PORT"
ENV_WORLD_SIZE: Final = "WORLD_SIZE"
ENV_RANK: Final = "RANK"
ENV_LOCAL_WORLD_SIZE: Final = "LOCAL_WORLD_SIZE"
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
# Whole-gang restarts allowed before a run fails (Kubeflow's per-pod backoffLimit has no gang meaning).
DEFAULT_BACKOFF_LIMIT: Final = 3
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
