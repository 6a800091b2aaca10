"""Builder inputs that are not in the TrainingRun: restart attempt, injected env, resume point, SSH keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BuildContext:
    """Everything besides the run that decides the children; the operator fills it, tests fix it.

    Builders are pure, so anything random (the MPI SSH keypair) or stateful (the restart count) arrives here.
    """

    restart_attempt: int = 0
    # The replicas replace ones a suspension or preemption stopped (same attempt): they resume like a restart's.
    resuming: bool = False
    # Env entries the operator injects (tracker URIs, tokens...); spec.env still wins on equal names.
    extra_env: tuple[dict[str, Any], ...] = ()
    resume_from: str | None = None
    ssh_private_key: str | None = None
    ssh_public_key: str | None = None
    # The MPI SSH Secret the operator already created (its name is server-generated); None renders a new one.
    ssh_secret_name: str | None = None
    # Appended to in-cluster host names (`...svc.<domain>`); None relies on the pods' DNS search path.
    cluster_domain: str | None = None
    # Nodes where this run's replicas hit a GPU or node fault (status.avoidNodes): a restart's pods must not go there.
    avoid_nodes: tuple[str, ...] = ()
    # Where ranks send progress reports (the operator's endpoint); None: no reports, no token volume.
    progress_url: str | None = None

    @property
    def resumes(self) -> bool:
        """Whether the replicas continue earlier ones (a gang restart, or after a stop) from their checkpoint."""
        return self.restart_attempt > 0 or self.resuming
