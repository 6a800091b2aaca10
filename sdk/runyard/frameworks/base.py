"""The interface every framework profile implements, with the defaults most frameworks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from runyard import constants as c

if TYPE_CHECKING:
    from runyard.api.rules import Rule
    from runyard.api.v1alpha1 import TrainingRun, TrainingRunSpec
    from runyard.builders.addressing import Addressing
    from runyard.builders.context import BuildContext

EnvList = list[dict[str, Any]]
# Kubernetes expands `$(VAR)` in env values from variables defined earlier in the same list; builders.env defines
# RUNYARD_REPLICA_INDEX first, so a framework's pod-template env can use it.
INDEX_REF = f"$({c.ENV_REPLICA_INDEX})"
PYTHON_NAMES = frozenset({"python", "python3"})


def var(name: str, value: object) -> dict[str, Any]:
    """A literal env entry."""
    return {"name": name, "value": str(value)}


def index_value(index: int | None) -> str:
    """The replica index as an env value: the kubelet-expanded reference in a pod template, else the number."""
    return INDEX_REF if index is None else str(index)


def is_python(arg: str) -> bool:
    """`python`, `python3`, `python3.11`, `/usr/bin/python3`... (any CPython executable name)."""
    name = Path(arg).name
    return name in PYTHON_NAMES or (name.startswith("python3.") and name[8:].isdigit())


@dataclass(frozen=True)
class Launch:
    """The container command a replica runs, and whether a launcher writes an error file Runyard should read."""

    command: list[str] | None
    args: list[str] | None
    # torchrun writes the first failing rank's traceback to TORCHELASTIC_ERROR_FILE: pointed at the termination log.
    error_file: bool = False


@dataclass
class PodAdditions:
    """Volumes, mounts and init containers a framework adds to a role's pod (after Runyard's own, before the user's)."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class LocalReplica:
    """One process a local run starts: its role, index and the global rank of its first process."""

    role: str
    index: int
    rank: int


class FrameworkProfile:
    """Everything Runyard knows about one framework; one subclass per module in `runyard.frameworks`.

    Class attributes describe the framework to the CRD and the validator (they are read without a run); methods
    shape a run's pods, env and local processes. Defaults fit a framework whose every replica is a peer that finds
    replica 0 of its first role at the rendezvous port.
    """

    name: ClassVar[str]
    # One line for the CRD's `spec.framework` description and the docs.
    summary: ClassVar[str]
    # Roles `spec.replicas` accepts, in canonical order (Jobs, TF_CONFIG, local ports and listings follow it).
    roles: ClassVar[tuple[str, ...]]
    default_port: ClassVar[int]
    port_name: ClassVar[str] = "rendezvous"
    # Env names of the framework's contract: users may not set them in `spec.env`.
    env_names: ClassVar[tuple[str, ...]] = ()
    # Framework-specific spec fields (camelCase) this framework accepts; every other framework refuses them.
    settings: ClassVar[frozenset[str]] = frozenset()
    # Further invariants, checked by the CRD (CEL) and the SDK validator alike.
    rules: ClassVar[tuple[Rule, ...]] = ()
    # The operator generates an SSH keypair Secret for the run (frameworks whose launcher reaches workers over SSH).
    needs_ssh_keys: ClassVar[bool] = False

    # --- topology ----------------------------------------------------------------------------------------

    def port(self, spec: TrainingRunSpec) -> int:
        """The rendezvous port: `spec.port` or the framework's default."""
        return spec.port if spec.port is not None else self.default_port

    def primary_role(self, spec: TrainingRunSpec) -> str:
        """The role whose replica 0 coordinates the run (RUNYARD_RUN_COORDINATOR, tracking rank 0)."""
        return next((r for r in self.roles if r in spec.replicas), self.roles[0])

    def success_roles(self, spec: TrainingRunSpec) -> tuple[str, ...]:
        """Roles whose completion is the run's success (the operator's and local runs' single rule)."""
        return (self.primary_role(spec),)

    def processes_per_replica(self, spec: TrainingRunSpec, role: str) -> int:
        """Training processes one replica of `role` starts (for ranks and local thread caps)."""
        return 1

    def rank_layout(self, spec: TrainingRunSpec) -> dict[str, tuple[int, int]]:
        """Per role whose ranks the spec fixes: (global rank of replica 0's first process, processes per replica).

        Failure triage reports a failed replica's rank from it (`status.failure.rank`); a role left out (its ranks
        are only known at run time) reports the replica index instead. By default every replica of every role is
        ranked in canonical order, as local runs rank them.
        """
        layout: dict[str, tuple[int, int]] = {}
        rank = 0
        for role in self.ordered_roles(spec):
            per_replica = self.processes_per_replica(spec, role)
            layout[role] = (rank, per_replica)
            rank += spec.replicas[role].replicas * per_replica
        return layout

    # --- pods --------------------------------------------------------------------------------------------

    def env(self, run: TrainingRun, role: str, index: int | None, addressing: Addressing) -> EnvList:
        """The framework's contract variables for one replica; `index=None` renders the pod-template form."""
        return []

    def launch(self, run: TrainingRun, role: str, command: list[str] | None, args: list[str] | None) -> Launch:
        """The command a replica's container runs (the spec's, unless the framework launches it differently)."""
        return Launch(command, args)

    def container_port(self, run: TrainingRun, role: str) -> dict[str, Any] | None:
        """The container's named port, or None for roles nobody connects to."""
        return {"name": self.port_name, "containerPort": self.port(run.spec), "protocol": "TCP"}

    def readiness_probe(self, run: TrainingRun, role: str) -> dict[str, Any] | None:
        """A readiness probe for the training container, if the framework has a meaningful one."""
        return None

    def pod_additions(
        self, run: TrainingRun, role: str, ctx: BuildContext, image: str, security: dict[str, Any]
    ) -> PodAdditions:
        """Volumes, mounts and init containers of `role`'s pods (`image`, `security`: the training container's)."""
        return PodAdditions()

    def children(self, run: TrainingRun, ctx: BuildContext) -> list[dict[str, Any]]:
        """Objects besides the Service and the Jobs, created before the Jobs (e.g. a hostfile, an SSH Secret)."""
        return []

    # --- local runs ----------------------------------------------------------------------------------------

    def local_replicas(self, spec: TrainingRunSpec) -> list[LocalReplica]:
        """The processes a local run starts: by default every replica of every role, ranked in order."""
        out: list[LocalReplica] = []
        rank = 0
        for role in self.ordered_roles(spec):
            for index in range(spec.replicas[role].replicas):
                out.append(LocalReplica(role, index, rank))
                rank += self.processes_per_replica(spec, role)
        return out

    def local_process_count(self, spec: TrainingRunSpec) -> int:
        """Training processes a local run starts in all (the machine's cores are shared among them)."""
        return sum(
            spec.replicas[r].replicas * max(1, self.processes_per_replica(spec, r)) for r in self.ordered_roles(spec)
        )

    def prepare_local(self, run: TrainingRun, run_dir: Path, addressing: Addressing) -> None:
        """Write what a local run needs before its processes start (e.g. a hostfile in `run_dir`)."""

    def local_env(self, run: TrainingRun, env: dict[str, str], run_dir: Path) -> None:
        """Adjust one local process's env where the cluster's makes no sense on one machine (in place)."""

    def local_argv(
        self, run: TrainingRun, role: str, argv: list[str], run_dir: Path, addressing: Addressing
    ) -> list[str]:
        """The command line of a local process, launched as the pod would launch it."""
        launched = self.launch(run, role, argv, None)
        return [*(launched.command or []), *(launched.args or [])]

    # --- helpers -------------------------------------------------------------------------------------------

    def ordered_roles(self, spec: TrainingRunSpec) -> list[str]:
        """The run's roles in this framework's canonical order (unknown roles last, as the validator reports them)."""
        order = {role: i for i, role in enumerate(self.roles)}
        return sorted(spec.replicas, key=lambda r: (order.get(r, len(order)), r))
