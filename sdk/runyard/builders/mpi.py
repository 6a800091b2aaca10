"""MPI plumbing: hostfile ConfigMap, SSH Secret, and the shell snippets that run sshd and wait for it."""

from __future__ import annotations

import shlex
from typing import Any

from runyard import constants as c
from runyard.api.v1alpha1 import MPISpec, TrainingRun
from runyard.builders.addressing import KubernetesAddressing
from runyard.builders.context import BuildContext
from runyard.builders.env import SSH_KEY_PATH, build_hostfile
from runyard.builders.meta import namespace_of, object_meta, run_labels
from runyard.builders.names import mpi_config_name, mpi_ssh_secret_name

SSH_SECRET_VOLUME = "runyard-ssh-secret"
# The worker's environment as `export -p` wrote it, sourced by every SSH session (see sshd_script).
ENV_FILE = "environment.sh"
SSH_DIR_VOLUME = "runyard-ssh"
MPI_CONFIG_VOLUME = "runyard-mpi"

# ssh and sshd refuse key files other users can read, while a non-root user without fsGroup can only read a
# Secret volume if it is world-readable: so the Secret is mounted 0444 and both sides copy the keys (0400).
# The umask stays inside the subshell: sshd, and the ranks it starts, must keep the image's (files the trainer writes
# are read by the artifact sidecar, which runs as another user).
_COPY_KEYS = (
    "set -eu\n"
    f"(umask 077; cp {c.MPI_SSH_SECRET_MOUNT}/{c.SSH_PRIVATE_KEY_KEY} {SSH_KEY_PATH}; "
    f"cp {c.MPI_SSH_SECRET_MOUNT}/{c.SSH_PUBLIC_KEY_KEY} {c.MPI_SSH_DIR}/authorized_keys)\n"
)


def sshd_script(port: int) -> str:
    """Worker entrypoint: a non-root sshd on `port` with a throw-away host key and the run's public key.

    sshd gives sessions a clean environment, so ranks started over SSH would lose the env contract (MLFLOW_RUN_ID,
    RUNYARD_*, the image's PATH). The worker saves its own environment at start (`export -p` quotes any value) and
    every session sources it before running the launcher's command: OpenMPI, Intel MPI and MPICH alike.
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


def build_mpi_configmap(run: TrainingRun, ctx: BuildContext) -> dict[str, Any]:
    """ConfigMap `<run>-mpi` with the hostfile, mounted at /etc/mpi in the launcher."""
    addressing = KubernetesAddressing(run.name, namespace_of(run), ctx.cluster_domain)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(run, mpi_config_name(run.name), run_labels(run)),
        "data": {c.MPI_HOSTFILE_KEY: build_hostfile(run, addressing)},
    }


def build_mpi_ssh_secret(run: TrainingRun, ctx: BuildContext) -> dict[str, Any]:
    """Secret `<run>-mpi-ssh-<random>` (kubernetes.io/ssh-auth) from the keypair the caller generated.

    The API server picks the name's suffix (`generateName`), so the create can never collide with a Secret someone
    else made, and the operator needs no right to read Secrets to tell its own from theirs. The operator records
    the name in `status.sshSecret` and passes it back as `ctx.ssh_secret_name`.
    """
    if not ctx.ssh_private_key or not ctx.ssh_public_key:
        raise ValueError(
            f"run {run.name} uses framework mpi: BuildContext needs ssh_private_key and ssh_public_key "
            "(generate a keypair, e.g. ssh-keygen -t ed25519, and pass both)"
        )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _generated(object_meta(run, mpi_ssh_secret_name(run.name), run_labels(run))),
        "type": "kubernetes.io/ssh-auth",
        "stringData": {c.SSH_PRIVATE_KEY_KEY: ctx.ssh_private_key, c.SSH_PUBLIC_KEY_KEY: ctx.ssh_public_key},
    }


def _generated(meta: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in meta.items() if k != "name"}
    return {"generateName": f"{meta['name']}-", **out}


def ssh_secret_ref(run: TrainingRun, ctx: BuildContext) -> str:
    """The Secret the pods mount: the one the operator created, or (rendering a new run) a placeholder name."""
    return ctx.ssh_secret_name or f"{mpi_ssh_secret_name(run.name)}-<generated>"


def ssh_volumes(run: TrainingRun, ctx: BuildContext) -> list[dict[str, Any]]:
    """The SSH Secret and the private in-memory emptyDir the keys are copied to."""
    return [
        {
            "name": SSH_SECRET_VOLUME,
            "secret": {"secretName": ssh_secret_ref(run, ctx), "defaultMode": 0o444},
        },
        {"name": SSH_DIR_VOLUME, "emptyDir": {"medium": "Memory"}},
    ]


def ssh_mounts() -> list[dict[str, Any]]:
    """Mounts of `ssh_volumes`."""
    return [
        {"name": SSH_SECRET_VOLUME, "mountPath": c.MPI_SSH_SECRET_MOUNT, "readOnly": True},
        {"name": SSH_DIR_VOLUME, "mountPath": c.MPI_SSH_DIR},
    ]


def hostfile_volume(run: TrainingRun) -> dict[str, Any]:
    """The hostfile ConfigMap as a volume."""
    return {"name": MPI_CONFIG_VOLUME, "configMap": {"name": mpi_config_name(run.name), "defaultMode": 0o444}}


def hostfile_mount() -> dict[str, Any]:
    """Mount of the hostfile at /etc/mpi."""
    return {"name": MPI_CONFIG_VOLUME, "mountPath": c.MPI_CONFIG_MOUNT, "readOnly": True}
