"""Pure builders: TrainingRun -> Kubernetes objects and env contracts (no I/O, clock or randomness)."""

from runyard.builders.addressing import Addressing, KubernetesAddressing, LocalAddressing
from runyard.builders.children import build_children, build_job, build_service
from runyard.builders.context import BuildContext
from runyard.builders.env import build_env, framework_env, primary_role, total_replicas
from runyard.builders.names import job_name, mpi_config_name, mpi_ssh_secret_name, pod_hostname, service_name
from runyard.builders.pods import build_pod_template, merge_pod_template

__all__ = [
    "Addressing",
    "BuildContext",
    "KubernetesAddressing",
    "LocalAddressing",
    "build_children",
    "build_env",
    "build_job",
    "build_pod_template",
    "build_service",
    "framework_env",
    "job_name",
    "merge_pod_template",
    "mpi_config_name",
    "mpi_ssh_secret_name",
    "pod_hostname",
    "primary_role",
    "service_name",
    "total_replicas",
]
