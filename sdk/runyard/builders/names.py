"""Names of a run's child objects, shared by the builders and the operator that looks the children up."""

from __future__ import annotations

from runyard import constants as c


def service_name(run_name: str) -> str:
    """The headless Service; also every pod's subdomain."""
    return run_name


def job_name(run_name: str, role: str) -> str:
    """The Indexed Job of one role; its pods' hostnames are `<job>-<index>`."""
    return f"{run_name}-{role}"


def pod_hostname(run_name: str, role: str, index: int) -> str:
    """Hostname the Job controller gives replica `index` of `role`."""
    return f"{job_name(run_name, role)}-{index}"


def mpi_config_name(run_name: str) -> str:
    """The ConfigMap holding the MPI hostfile."""
    return f"{run_name}{c.MPI_CONFIG_SUFFIX}"


def mpi_ssh_secret_name(run_name: str) -> str:
    """The kubernetes.io/ssh-auth Secret shared by the MPI launcher and workers."""
    return f"{run_name}{c.MPI_SSH_SECRET_SUFFIX}"
