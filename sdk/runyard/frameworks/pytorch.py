"""PyTorch: torchrun's PET_* env plus the process-level env contract, and `python X` launched through torchrun."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from runyard import constants as c
from runyard.frameworks.base import (
    INDEX_REF,
    EnvList,
    FrameworkProfile,
    Launch,
    LocalReplica,
    index_value,
    is_python,
    var,
)

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRun, TrainingRunSpec
    from runyard.builders.addressing import Addressing

TORCHRUN_MODULE = "torch.distributed.run"


def resolve_nproc_per_node(spec: TrainingRunSpec) -> int | None:
    """Processes per node as a number, or None when only torchrun knows it (`cpu`, CPU-only `auto`).

    Unset means one process per GPU (or 1 without GPUs). `auto` and `gpu` resolve to the node's GPU count
    because the pod sees exactly its `nvidia.com/gpu` limit.
    """
    gpus = spec.replicas[c.ROLE_NODE].resources.gpus if c.ROLE_NODE in spec.replicas else 0
    nproc = spec.nproc_per_node
    if nproc is None:
        return max(gpus, 1)
    if isinstance(nproc, int):
        return nproc
    if nproc in ("auto", "gpu") and gpus > 0:
        return gpus
    return None


def _split_interpreter(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """(`python` plus its own options, the program and its args), or None when there is no program to wrap.

    `python -c code` and a bare `python` have no script torchrun could run.
    """
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-m", "-c", "-"):
        i += 2 if argv[i] in ("-W", "-X", "-Q") else 1
    rest = argv[i:]
    if not rest or rest[0] in ("-c", "-"):
        return None
    return argv[:i], rest


def wrap_command(command: list[str] | None, args: list[str] | None) -> tuple[list[str] | None, list[str] | None]:
    """`python X` as `python -m torch.distributed.run X`, which reads every flag from the PET_* env.

    torchrun then gives each process RANK, LOCAL_RANK and WORLD_SIZE for any `nprocPerNode`. Commands that launch
    themselves (`torchrun ...`, a shell script, an image entrypoint) run as written: wrapping a launcher in another
    launcher would start the ranks twice. `args` are untouched, so `command: [python]` with `args: [train.py, ...]`
    wraps as well.
    """
    if not command or not is_python(command[0]):
        return command, args
    split = _split_interpreter([*command, *(args or [])])
    if split is None:
        return command, args
    interpreter, program = split
    module = ["--module", *program[1:]] if program[0] == "-m" else program
    wrapped = [*interpreter, "-m", TORCHRUN_MODULE, *module]
    # Keep the user's args as args (so `kubectl describe` shows them where they wrote them).
    n_args = len(args or [])
    if n_args and wrapped[-n_args:] == list(args or []):
        return wrapped[:-n_args], list(args or [])
    return wrapped, None


class PyTorch(FrameworkProfile):
    """torch.distributed: one `node` role; torchrun on every node starts `nprocPerNode` ranks."""

    name = "pytorch"
    summary = "PyTorch DDP/FSDP through torchrun (PET_*, MASTER_ADDR, WORLD_SIZE, RANK, LOCAL_RANK)"
    roles = (c.ROLE_NODE,)
    default_port = c.DEFAULT_PYTORCH_PORT
    env_names: ClassVar[tuple[str, ...]] = (
        c.ENV_PET_MASTER_ADDR,
        c.ENV_PET_MASTER_PORT,
        c.ENV_PET_NNODES,
        c.ENV_PET_NODE_RANK,
        c.ENV_PET_NPROC_PER_NODE,
        c.ENV_MASTER_ADDR,
        c.ENV_MASTER_PORT,
        c.ENV_WORLD_SIZE,
        c.ENV_RANK,
        c.ENV_LOCAL_WORLD_SIZE,
        c.ENV_LOCAL_RANK,
    )
    settings = frozenset({"nprocPerNode"})

    def processes_per_replica(self, spec: TrainingRunSpec, role: str) -> int:
        return resolve_nproc_per_node(spec) or 1

    def rank_layout(self, spec: TrainingRunSpec) -> dict[str, tuple[int, int]]:
        # Node i's first process is rank i * nprocPerNode, unless only torchrun knows nprocPerNode (`cpu`).
        nproc = resolve_nproc_per_node(spec)
        return {c.ROLE_NODE: (0, nproc)} if nproc is not None else {}

    def env(self, run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> EnvList:
        spec = run.spec
        nodes = spec.replicas[c.ROLE_NODE].replicas
        host = addressing.host(c.ROLE_NODE, 0)
        port = addressing.port(c.ROLE_NODE, 0, self.port(spec))
        nproc = resolve_nproc_per_node(spec)
        env = [
            var(c.ENV_PET_MASTER_ADDR, host),
            var(c.ENV_PET_MASTER_PORT, port),
            var(c.ENV_PET_NNODES, nodes),
            var(c.ENV_PET_NODE_RANK, index_value(index)),
            var(c.ENV_PET_NPROC_PER_NODE, nproc if nproc is not None else spec.nproc_per_node),
            var(c.ENV_MASTER_ADDR, host),
            var(c.ENV_MASTER_PORT, port),
        ]
        if nproc is None:
            return env
        # Process-level world size (Kubeflow #1790 counts pods). RANK is the rank of the node's first process;
        # torchrun overrides RANK/WORLD_SIZE/LOCAL_WORLD_SIZE per process anyway.
        env += [var(c.ENV_WORLD_SIZE, nodes * nproc), var(c.ENV_LOCAL_WORLD_SIZE, nproc)]
        if index is not None:
            env.append(var(c.ENV_RANK, index * nproc))
        elif nproc == 1:
            env.append(var(c.ENV_RANK, INDEX_REF))
        if nproc == 1:
            # Scripts started without a launcher (a shell script, the image's entrypoint) still find their local rank.
            env.append(var(c.ENV_LOCAL_RANK, 0))
        # With several processes per pod, a pod template cannot compute index * nproc: RANK is left to torchrun.
        return env

    def launch(self, run: TrainingRun, role: str, command: list[str] | None, args: list[str] | None) -> Launch:
        wrapped = wrap_command(command, args)
        return Launch(*wrapped, error_file=wrapped != (command, args))

    def local_replicas(self, spec: TrainingRunSpec) -> list[LocalReplica]:
        nproc = self.processes_per_replica(spec, c.ROLE_NODE)
        return [LocalReplica(c.ROLE_NODE, i, i * nproc) for i in range(spec.replicas[c.ROLE_NODE].replicas)]
