"""MPI (OpenMPI, Intel MPI, MPICH): the launcher's hostfile and SSH settings in each implementation's own env names."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runyard import constants as c
from runyard.api.v1alpha1 import MPIImplementation
from runyard.frameworks.base import EnvList, var
from runyard.frameworks.ssh import SSHLauncherProfile, launcher_rules, mpi_settings, ssh_options

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRun
    from runyard.builders.addressing import Addressing

# The env name each implementation reads its hostfile from, and the one carrying extra ssh arguments.
_HOSTFILE_ENV = {
    MPIImplementation.OPENMPI: c.ENV_OMPI_DEFAULT_HOSTFILE,
    MPIImplementation.INTEL: c.ENV_I_MPI_HOST_FILE,
    MPIImplementation.MPICH: c.ENV_HYDRA_HOST_FILE,
}
_SSH_ARGS_ENV = (c.ENV_OMPI_RSH_ARGS, c.ENV_I_MPI_BOOTSTRAP_ARGS, c.ENV_HYDRA_LAUNCH_ARGS)


class MPI(SSHLauncherProfile):
    """mpirun in the `launcher` pod starts `slotsPerWorker` ranks on each `worker` over SSH (as mpi-operator v2)."""

    name = "mpi"
    summary = "MPI (OpenMPI, Intel MPI, MPICH): a launcher running mpirun, workers running sshd"
    env_names = (
        c.ENV_K_MPI_JOB_ROLE,
        c.ENV_OMPI_KEEP_FQDN,
        c.ENV_OMPI_DEFAULT_HOSTFILE,
        c.ENV_OMPI_RSH_ARGS,
        c.ENV_OMPI_DEFAULT_SLOTS,
        c.ENV_I_MPI_HOST_FILE,
        c.ENV_I_MPI_BOOTSTRAP_ARGS,
        c.ENV_I_MPI_PERHOST,
        c.ENV_HYDRA_HOST_FILE,
        c.ENV_HYDRA_LAUNCH_ARGS,
        c.ENV_NVIDIA_VISIBLE_DEVICES,
        c.ENV_NVIDIA_DRIVER_CAPABILITIES,
    )
    rules = launcher_rules("mpi")

    def env(self, run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> EnvList:
        env = [var(c.ENV_K_MPI_JOB_ROLE, role)]
        if role != c.ROLE_LAUNCHER:
            return env
        mpi = mpi_settings(run.spec)
        ssh = ssh_options(mpi.ssh_port)
        if mpi.implementation is MPIImplementation.OPENMPI:
            env += [
                var(c.ENV_OMPI_KEEP_FQDN, "true"),
                var(c.ENV_OMPI_DEFAULT_HOSTFILE, self.hostfile_path),
                var(c.ENV_OMPI_RSH_ARGS, ssh),
                var(c.ENV_OMPI_DEFAULT_SLOTS, mpi.slots_per_worker),
            ]
        elif mpi.implementation is MPIImplementation.INTEL:
            env += [
                var(c.ENV_I_MPI_HOST_FILE, self.hostfile_path),
                var(c.ENV_I_MPI_BOOTSTRAP_ARGS, ssh),
                var(c.ENV_I_MPI_PERHOST, mpi.slots_per_worker),
            ]
        else:
            env += [var(c.ENV_HYDRA_HOST_FILE, self.hostfile_path), var(c.ENV_HYDRA_LAUNCH_ARGS, ssh)]
        # The launcher only starts processes: hide any GPU the node's runtime would expose to it.
        return [*env, var(c.ENV_NVIDIA_VISIBLE_DEVICES, ""), var(c.ENV_NVIDIA_DRIVER_CAPABILITIES, "")]

    def local_env(self, run: TrainingRun, env: dict[str, str], run_dir: Path) -> None:
        super().local_env(run, env, run_dir)
        for name in _SSH_ARGS_ENV:
            env.pop(name, None)  # ssh options point at the cluster's key; local ranks need no ssh
        env[_HOSTFILE_ENV[mpi_settings(run.spec).implementation]] = str(self.local_hostfile(run_dir))
        if mpi_settings(run.spec).implementation is not MPIImplementation.OPENMPI:
            for name in (
                "OMPI_MCA_rmaps_base_oversubscribe",
                "OMPI_ALLOW_RUN_AS_ROOT",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
            ):
                env.pop(name, None)
