"""DeepSpeed: its `deepspeed` launcher on a `launcher` pod starts every rank over SSH through its OpenMPI runner."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from runyard import constants as c
from runyard.builders.addressing import KubernetesAddressing
from runyard.builders.meta import namespace_of
from runyard.frameworks.base import EnvList, Launch, var
from runyard.frameworks.ssh import SSHLauncherProfile, launcher_rules, mpi_settings, ssh_options

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRun
    from runyard.builders.addressing import Addressing

# DeepSpeed's runner reads its hostfile from here unless told otherwise (DLTS_HOSTFILE in deepspeed/launcher/runner.py).
HOSTFILE_PATH: Final = "/job/hostfile"
LAUNCHER_NAMES: Final = frozenset({"deepspeed", "ds"})


def _has_flag(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(f"{flag}=") for a in argv)


def with_launcher_flags(command: list[str], args: list[str], flags: list[tuple[str, str | None]]) -> list[str]:
    """`command` (a `deepspeed ...` command) with each flag that neither it nor `args` sets inserted after its name."""
    argv = [*command, *args]
    extra = [flag if value is None else f"{flag}={value}" for flag, value in flags if not _has_flag(argv, flag)]
    return [command[0], *extra, *command[1:]]


class DeepSpeed(SSHLauncherProfile):
    """`deepspeed train.py` on the launcher, ranks on the workers (mpi-operator's and Kubeflow Trainer's DeepSpeed design).

    In a pod, a `deepspeed` command gets the flags that make it work without anything else: the hostfile Runyard
    mounts, its OpenMPI runner (`mpirun` reaches the workers through the ssh options in OMPI_MCA_plm_rsh_args; the
    default pdsh runner is not in common images), multi-node mode even with one worker, no plain-`ssh` reachability
    check and worker 0's host as master address (both would otherwise `ssh` without the run's port and key). Each rank then finds its rank, world size
    and master through `deepspeed.init_distributed` (mpi4py discovery under mpirun). Flags the spec already sets win.
    A local run keeps DeepSpeed's single-host launch (`deepspeed.launcher.launch` forks every rank, no SSH).
    """

    name = "deepspeed"
    summary = "DeepSpeed launcher (hostfile at /job/hostfile, OpenMPI runner over SSH to sshd workers)"
    hostfile_path = HOSTFILE_PATH
    env_names = (
        c.ENV_OMPI_KEEP_FQDN,
        c.ENV_OMPI_RSH_ARGS,
        c.ENV_NVIDIA_VISIBLE_DEVICES,
        c.ENV_NVIDIA_DRIVER_CAPABILITIES,
    )
    rules = launcher_rules("deepspeed")

    def env(self, run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> EnvList:
        if role != c.ROLE_LAUNCHER:
            return []
        return [
            var(c.ENV_OMPI_KEEP_FQDN, "true"),
            var(c.ENV_OMPI_RSH_ARGS, ssh_options(mpi_settings(run.spec).ssh_port)),
            # The launcher only starts processes: hide any GPU the node's runtime would expose to it.
            var(c.ENV_NVIDIA_VISIBLE_DEVICES, ""),
            var(c.ENV_NVIDIA_DRIVER_CAPABILITIES, ""),
        ]

    def launch(self, run: TrainingRun, role: str, command: list[str] | None, args: list[str] | None) -> Launch:
        if role != c.ROLE_LAUNCHER or not command or Path(command[0]).name not in LAUNCHER_NAMES:
            return super().launch(run, role, command, args)
        master = KubernetesAddressing(run.name, namespace_of(run)).host(c.ROLE_WORKER, 0)
        flags: list[tuple[str, str | None]] = [
            ("--hostfile", HOSTFILE_PATH),
            ("--launcher", "openmpi"),
            # A one-host hostfile would otherwise run every rank on the launcher itself.
            ("--force_multi", None),
            ("--no_ssh_check", None),
            ("--master_addr", master),
        ]
        return Launch(with_launcher_flags(command, args or [], flags), args)

    def local_argv(
        self, run: TrainingRun, role: str, argv: list[str], run_dir: Path, addressing: Addressing
    ) -> list[str]:
        if Path(argv[0]).name not in LAUNCHER_NAMES:
            return argv
        # One host: DeepSpeed's runner forks every rank itself (slots from the run's own localhost hostfile). It would
        # still `ssh` to that host to check it and to learn its address, unless told both. The rendezvous port is
        # worker 0's local slot (no worker process starts locally), so concurrent local runs never share 29500.
        flags: list[tuple[str, str | None]] = [
            ("--hostfile", str(self.local_hostfile(run_dir))),
            ("--no_ssh_check", None),
            ("--master_addr", "127.0.0.1"),
            ("--master_port", str(addressing.port(c.ROLE_WORKER, 0, self.port(run.spec)))),
        ]
        return with_launcher_flags(argv[:1], argv[1:], flags) + argv[1:]

    def local_env(self, run: TrainingRun, env: dict[str, str], run_dir: Path) -> None:
        super().local_env(run, env, run_dir)
        env.pop(c.ENV_OMPI_RSH_ARGS, None)
