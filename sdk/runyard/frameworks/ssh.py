"""Launcher-over-SSH frameworks (MPI, DeepSpeed): hostfile ConfigMap, SSH Secret, sshd workers and a waiting launcher."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from runyard import constants as c
from runyard.api.rules import Rule, fail_if
from runyard.api.v1alpha1 import MPIImplementation, MPISpec
from runyard.builders.addressing import KubernetesAddressing
from runyard.builders.meta import namespace_of, object_meta, run_labels
from runyard.builders.names import mpi_config_name, mpi_ssh_secret_name
from runyard.frameworks.base import FrameworkProfile, Launch, LocalReplica, PodAdditions

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRun, TrainingRunSpec
    from runyard.builders.addressing import Addressing
    from runyard.builders.context import BuildContext

SSH_KEY_PATH = f"{c.MPI_SSH_DIR}/id_key"
SSH_SECRET_VOLUME = "runyard-ssh-secret"
# The worker's environment as `export -p` wrote it, sourced by every SSH session (see sshd_script).
ENV_FILE = "environment.sh"
SSH_DIR_VOLUME = "runyard-ssh"
MPI_CONFIG_VOLUME = "runyard-mpi"
MPIRUN_NAMES = frozenset({"mpirun", "mpiexec", "orterun"})

# ssh and sshd refuse key files other users can read, while a non-root user without fsGroup can only read a
# Secret volume if it is world-readable: so the Secret is mounted 0444 and both sides copy the keys (0400).
# The umask stays inside the subshell: sshd, and the ranks it starts, must keep the image's (files the trainer writes
# are read by the artifact sidecar, which runs as another user).
_COPY_KEYS = (
    "set -eu\n"
    f"(umask 077; cp {c.MPI_SSH_SECRET_MOUNT}/{c.SSH_PRIVATE_KEY_KEY} {SSH_KEY_PATH}; "
    f"cp {c.MPI_SSH_SECRET_MOUNT}/{c.SSH_PUBLIC_KEY_KEY} {c.MPI_SSH_DIR}/authorized_keys)\n"
)


def mpi_settings(spec: TrainingRunSpec) -> MPISpec:
    """`spec.mpi`, or its defaults."""
    return spec.mpi or MPISpec()


def ssh_options(port: int) -> str:
    """ssh client options the launcher uses to reach workers.

    Workers' sshd listens on a non-default port with per-run keys and fresh host keys (so no known_hosts);
    ConnectionAttempts rides out DNS records that appear a little after the pods, as in mpi-operator.
    """
    return (
        "-o ConnectionAttempts=10 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        f"-o LogLevel=ERROR -p {port} -i {SSH_KEY_PATH}"
    )


def build_hostfile(run: TrainingRun, addressing: Addressing) -> str:
    """The hostfile: one line per worker host, `host slots=N` (OpenMPI, DeepSpeed) or `host:N` (MPICH, Intel).

    Workers that share a host (local runs) become one line with their slots summed.
    """
    spec = run.spec
    mpi = mpi_settings(spec)
    workers = spec.replicas[c.ROLE_WORKER].replicas if c.ROLE_WORKER in spec.replicas else 0
    slots: dict[str, int] = {}
    for i in range(workers):
        host = addressing.host(c.ROLE_WORKER, i)
        slots[host] = slots.get(host, 0) + mpi.slots_per_worker
    if mpi.implementation is MPIImplementation.OPENMPI:
        lines = [f"{host} slots={n}" for host, n in slots.items()]
    else:
        lines = [f"{host}:{n}" for host, n in slots.items()]
    return "".join(f"{line}\n" for line in lines)


def sshd_script(port: int) -> str:
    """Worker entrypoint: a non-root sshd on `port` with a throw-away host key and the run's public key.

    sshd gives sessions a clean environment, so ranks started over SSH would lose the env contract (MLFLOW_RUN_ID,
    RUNYARD_*, the image's PATH). The worker saves its own environment at start (`export -p` quotes any value) and
    every session sources it before running the launcher's command: OpenMPI, Intel MPI, MPICH and DeepSpeed alike.
    """
    d = c.MPI_SSH_DIR
    config = [
        f"Port {port}",
        f"HostKey {d}/host_key",
        f"AuthorizedKeysFile {d}/authorized_keys",
        f"PidFile {d}/sshd.pid",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        # Non-root sshd cannot chown the copied files; they are private to this user already.
        "StrictModes no",
        f'ForceCommand . {d}/{ENV_FILE}; eval "$SSH_ORIGINAL_COMMAND"',
    ]
    return (
        _COPY_KEYS
        + f"(umask 077; export -p > {d}/{ENV_FILE})\n"
        + f"ssh-keygen -q -t ed25519 -N '' -f {d}/host_key\n"
        + f"printf '%s\\n' {' '.join(shlex.quote(line) for line in config)} > {d}/sshd_config\n"
        + f"exec /usr/sbin/sshd -D -e -f {d}/sshd_config\n"
    )


def wait_for_workers_script(run: TrainingRun, ctx: BuildContext, mpi: MPISpec, timeout: int) -> str:
    """Launcher init container: copy the keys, then poll each worker's sshd until it answers (bounded).

    Launcher and workers are created together (no WaitForWorkersReady deadlock under gang scheduling,
    mpi-operator#608); this bounded wait replaces it. ssh-keyscan checks that sshd answers, not just DNS.
    """
    workers = run.spec.replicas[c.ROLE_WORKER].replicas
    host = KubernetesAddressing(run.name, namespace_of(run), ctx.cluster_domain).host_for(c.ROLE_WORKER, "$i")
    port = mpi.ssh_port
    return (
        _COPY_KEYS
        + f"deadline=$(( $(date +%s) + {timeout} ))\n"
        + "i=0\n"
        + f"while [ $i -lt {workers} ]; do\n"
        + f'  h="{host}"\n'
        + f'  until ssh-keyscan -p {port} -T 2 "$h" 2>/dev/null | grep -q .; do\n'
        + '    if [ "$(date +%s)" -ge "$deadline" ]; then\n'
        + f'      echo "runyard: sshd on $h:{port} not answering after {timeout}s" >&2; exit 1\n'
        + "    fi\n"
        + "    sleep 2\n"
        + "  done\n"
        + f'  echo "runyard: $h:{port} is up"\n'
        + "  i=$((i + 1))\n"
        + "done\n"
    )


def build_hostfile_configmap(run: TrainingRun, ctx: BuildContext) -> dict[str, Any]:
    """ConfigMap `<run>-mpi` with the hostfile, mounted in the launcher."""
    addressing = KubernetesAddressing(run.name, namespace_of(run), ctx.cluster_domain)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(run, mpi_config_name(run.name), run_labels(run)),
        "data": {c.MPI_HOSTFILE_KEY: build_hostfile(run, addressing)},
    }


def build_ssh_secret(run: TrainingRun, ctx: BuildContext) -> dict[str, Any]:
    """Secret `<run>-mpi-ssh-<random>` (kubernetes.io/ssh-auth) from the keypair the caller generated.

    The API server picks the name's suffix (`generateName`), so the create can never collide with a Secret someone
    else made, and the operator needs no right to read Secrets to tell its own from theirs. The operator records
    the name in `status.sshSecret` and passes it back as `ctx.ssh_secret_name`.
    """
    if not ctx.ssh_private_key or not ctx.ssh_public_key:
        raise ValueError(
            f"run {run.name} uses framework {run.spec.framework}: BuildContext needs ssh_private_key and "
            "ssh_public_key (generate a keypair, e.g. ssh-keygen -t ed25519, and pass both)"
        )
    meta = object_meta(run, mpi_ssh_secret_name(run.name), run_labels(run))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"generateName": f"{meta['name']}-", **{k: v for k, v in meta.items() if k != "name"}},
        "type": "kubernetes.io/ssh-auth",
        "stringData": {c.SSH_PRIVATE_KEY_KEY: ctx.ssh_private_key, c.SSH_PUBLIC_KEY_KEY: ctx.ssh_public_key},
    }


def ssh_secret_ref(run: TrainingRun, ctx: BuildContext) -> str:
    """The Secret the pods mount: the one the operator created, or (rendering a new run) a placeholder name."""
    return ctx.ssh_secret_name or f"{mpi_ssh_secret_name(run.name)}-<generated>"


def ssh_volumes(run: TrainingRun, ctx: BuildContext) -> list[dict[str, Any]]:
    """The SSH Secret and the private in-memory emptyDir the keys are copied to."""
    return [
        {"name": SSH_SECRET_VOLUME, "secret": {"secretName": ssh_secret_ref(run, ctx), "defaultMode": 0o444}},
        {"name": SSH_DIR_VOLUME, "emptyDir": {"medium": "Memory"}},
    ]


def ssh_mounts() -> list[dict[str, Any]]:
    """Mounts of `ssh_volumes`."""
    return [
        {"name": SSH_SECRET_VOLUME, "mountPath": c.MPI_SSH_SECRET_MOUNT, "readOnly": True},
        {"name": SSH_DIR_VOLUME, "mountPath": c.MPI_SSH_DIR},
    ]


def launcher_rules(framework: str) -> tuple[Rule, ...]:
    """Exactly one launcher and at least one worker role."""
    return (
        Rule(
            cel=(
                f"self.framework != '{framework}' || "
                "('launcher' in self.replicas && self.replicas['launcher'].replicas == 1)"
            ),
            message=f"framework {framework} needs exactly 1 launcher replica (spec.replicas.launcher.replicas)",
            field_path=".replicas",
            check=lambda s: fail_if(
                s.framework == framework
                and (c.ROLE_LAUNCHER not in s.replicas or s.replicas[c.ROLE_LAUNCHER].replicas != 1),
                "spec.replicas.launcher",
            ),
        ),
        Rule(
            cel=f"self.framework != '{framework}' || 'worker' in self.replicas",
            message=f"framework {framework} needs a worker role in spec.replicas",
            field_path=".replicas",
            check=lambda s: fail_if(s.framework == framework and c.ROLE_WORKER not in s.replicas, "spec.replicas"),
        ),
    )


class SSHLauncherProfile(FrameworkProfile):
    """A `launcher` that starts every rank over SSH on `worker` pods, which only run sshd (mpi-operator's design)."""

    roles = (c.ROLE_LAUNCHER, c.ROLE_WORKER)
    default_port = c.DEFAULT_MPI_SSH_PORT
    port_name = "ssh"
    settings = frozenset({"mpi"})
    needs_ssh_keys = True
    # Where the launcher finds the hostfile (the ConfigMap is mounted on its directory).
    hostfile_path: ClassVar[str] = f"{c.MPI_CONFIG_MOUNT}/{c.MPI_HOSTFILE_KEY}"

    def port(self, spec: TrainingRunSpec) -> int:
        return mpi_settings(spec).ssh_port

    def primary_role(self, spec: TrainingRunSpec) -> str:
        return c.ROLE_LAUNCHER

    def processes_per_replica(self, spec: TrainingRunSpec, role: str) -> int:
        return mpi_settings(spec).slots_per_worker if role == c.ROLE_WORKER else 1

    def rank_layout(self, spec: TrainingRunSpec) -> dict[str, tuple[int, int]]:
        # The hostfile lists the workers in order, `slotsPerWorker` ranks each; the launcher hosts no rank.
        return {c.ROLE_WORKER: (0, mpi_settings(spec).slots_per_worker)}

    def launch(self, run: TrainingRun, role: str, command: list[str] | None, args: list[str] | None) -> Launch:
        if role == c.ROLE_WORKER and run.spec.replicas[role].command is None:
            # Workers only host the ranks the launcher starts over SSH.
            return Launch(["/bin/sh", "-c", sshd_script(self.port(run.spec))], None)
        return Launch(command, args)

    def container_port(self, run: TrainingRun, role: str) -> dict[str, Any] | None:
        return None if role == c.ROLE_LAUNCHER else super().container_port(run, role)

    def readiness_probe(self, run: TrainingRun, role: str) -> dict[str, Any] | None:
        return {"tcpSocket": {"port": self.port(run.spec)}, "periodSeconds": 5} if role == c.ROLE_WORKER else None

    def pod_additions(
        self, run: TrainingRun, role: str, ctx: BuildContext, image: str, security: dict[str, Any]
    ) -> PodAdditions:
        extra = PodAdditions(volumes=ssh_volumes(run, ctx), mounts=ssh_mounts())
        if role != c.ROLE_LAUNCHER:
            return extra
        extra.volumes.append(
            {"name": MPI_CONFIG_VOLUME, "configMap": {"name": mpi_config_name(run.name), "defaultMode": 0o444}}
        )
        extra.mounts.append(
            {"name": MPI_CONFIG_VOLUME, "mountPath": str(Path(self.hostfile_path).parent), "readOnly": True}
        )
        script = wait_for_workers_script(run, ctx, mpi_settings(run.spec), c.DEFAULT_MPI_WAIT_SECONDS)
        extra.init_containers.append(
            {
                "name": "wait-for-workers",
                "image": image,
                "command": ["/bin/sh", "-c", script],
                "securityContext": security,
                "volumeMounts": ssh_mounts(),
            }
        )
        return extra

    def children(self, run: TrainingRun, ctx: BuildContext) -> list[dict[str, Any]]:
        children = [build_hostfile_configmap(run, ctx)]
        if ctx.ssh_secret_name is None:
            children.append(build_ssh_secret(run, ctx))
        return children

    # --- local runs: the launcher starts every rank on this machine, no SSH -------------------------------

    def local_replicas(self, spec: TrainingRunSpec) -> list[LocalReplica]:
        return [LocalReplica(c.ROLE_LAUNCHER, 0, 0)]

    def local_process_count(self, spec: TrainingRunSpec) -> int:
        workers = spec.replicas[c.ROLE_WORKER].replicas if c.ROLE_WORKER in spec.replicas else 1
        return workers * mpi_settings(spec).slots_per_worker

    def local_hostfile(self, run_dir: Path) -> Path:
        return run_dir / "hostfile"

    def prepare_local(self, run: TrainingRun, run_dir: Path, addressing: Addressing) -> None:
        path = self.local_hostfile(run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(build_hostfile(run, addressing))

    def local_argv(
        self, run: TrainingRun, role: str, argv: list[str], run_dir: Path, addressing: Addressing
    ) -> list[str]:
        if Path(argv[0]).name not in MPIRUN_NAMES:
            return argv
        # Root needs OpenMPI's explicit consent; a laptop has fewer cores than a cluster has slots.
        extra = ["--allow-run-as-root", "--oversubscribe"] if os.geteuid() == 0 else ["--oversubscribe"]
        return [argv[0], *[e for e in extra if e not in argv], *argv[1:]]

    def local_env(self, run: TrainingRun, env: dict[str, str], run_dir: Path) -> None:
        # The local launcher's ranks may use this machine's GPUs.
        env.pop(c.ENV_NVIDIA_VISIBLE_DEVICES, None)
        env.pop(c.ENV_NVIDIA_DRIVER_CAPABILITIES, None)
        # For commands that wrap mpirun (`bash -c "mpirun ..."`), where no flags can be added.
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        if os.geteuid() == 0:
            env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
