"""`runyard.context()`: who and where this process is inside a TrainingRun, read from the env Runyard injects."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from runyard import constants as c
from runyard import trackers

# Rank variables in order of preference: the launcher's per-process value beats Runyard's per-pod one.
_RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", c.ENV_JAX_PROCESS_ID, c.ENV_GLOBAL_RANK)
_LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")
_WORLD_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", c.ENV_JAX_NUM_PROCESSES, c.ENV_NUM_REPLICAS)
_LOCAL_WORLD_VARS = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE")


def _first_int(env: Mapping[str, str], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = env.get(name, "").strip()
        if value.lstrip("-").isdigit():
            return int(value)
    return None


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name)
    return Path(value) if value else None


@dataclass(frozen=True)
class RunContext:
    """The process's place in the run; every field has a sensible value outside Runyard too (rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    run_name: str | None = None
    run_uid: str | None = None
    namespace: str | None = None
    role: str | None = None
    replica_index: int = 0
    rank_label: str | None = None
    output_dir: Path | None = None
    artifact_dir: Path | None = None
    tensorboard_dir: Path | None = None
    resume_from: str | None = None
    trackers: tuple[str, ...] = ()
    tracker_ids: dict[str, str] = field(default_factory=dict)

    @property
    def is_primary(self) -> bool:
        """Global rank 0: the process that should write summaries, checkpoints and final results."""
        return self.rank == 0

    @property
    def in_runyard(self) -> bool:
        return self.run_name is not None

    def set_total_steps(self, total: int) -> None:
        """The number of steps this run will take: status then shows a percentage and an ETA (see runyard.progress)."""
        from runyard.progress import set_total_steps

        set_total_steps(total)

    def should_stop(self) -> bool:
        """True once the pod got SIGTERM (suspend, preemption, deletion, deadline): save a checkpoint and leave.

        The first call makes SIGTERM set this flag instead of ending the process (see runyard.stopping); the pod has
        `runPolicy.stopGracePeriodSeconds` before it is killed.
        """
        from runyard.stopping import should_stop

        return should_stop()

    def resume_from_path(self, dest_dir: Path | None = None) -> Path | None:
        """The newest complete checkpoint to resume from, downloaded first when it lives in an object store.

        Returns None when the run starts fresh. Downloads happen once per process (the result is cached).
        """
        if not self.resume_from:
            return None
        key = (self.resume_from, str(dest_dir))
        if key not in _RESUME_CACHE:
            import tempfile

            from runyard.artifacts import resolve_resume

            target = dest_dir or Path(tempfile.mkdtemp(prefix="runyard-resume-"))
            _RESUME_CACHE[key] = resolve_resume(self.resume_from, target)
        return _RESUME_CACHE[key]


_RESUME_CACHE: dict[tuple[str, str], Path | None] = {}


def read_context(env: Mapping[str, str]) -> RunContext:
    """The context described by `env` (pure; `context()` reads os.environ)."""
    local_rank = _first_int(env, _LOCAL_RANK_VARS) or 0
    local_world = _first_int(env, _LOCAL_WORLD_VARS) or 1
    tensorboard = _path(env, c.ENV_TENSORBOARD_DIR)
    if tensorboard is not None and local_world > 1:
        # Several processes share a pod's env: one writer per directory, so one sub-directory per local rank.
        tensorboard = tensorboard / f"local-{local_rank}"
    return RunContext(
        rank=_first_int(env, _RANK_VARS) or 0,
        local_rank=local_rank,
        world_size=_first_int(env, _WORLD_VARS) or 1,
        local_world_size=local_world,
        run_name=env.get(c.ENV_RUN_NAME) or None,
        run_uid=env.get(c.ENV_RUN_UID) or None,
        namespace=env.get(c.ENV_NAMESPACE) or None,
        role=env.get(c.ENV_ROLE) or None,
        replica_index=_first_int(env, (c.ENV_REPLICA_INDEX,)) or 0,
        rank_label=env.get(c.ENV_RANK_LABEL) or None,
        output_dir=_path(env, c.ENV_OUTPUT_DIR),
        artifact_dir=_path(env, c.ENV_ARTIFACT_DIR),
        tensorboard_dir=tensorboard,
        resume_from=env.get(c.ENV_RESUME_FROM) or None,
        trackers=tuple(t for t in env.get(c.ENV_TRACKERS, "").split(",") if t),
        tracker_ids=_tracker_ids(env),
    )


def _tracker_ids(env: Mapping[str, str]) -> dict[str, str]:
    """Tracker name -> this run's id in it, for every tracker whose id variable is set."""
    return {p.name: env[p.id_env] for p in trackers.all() if p.id_env and env.get(p.id_env)}


def apply_process_env(ctx: RunContext, env: MutableMapping[str, str]) -> None:
    """Per-process tracker settings a pod template cannot express; mutates `env` (os.environ by default).

    Each tracker profile makes its own (see `TrackerProfile.process_env`), e.g. W&B shared mode: pods start as
    secondaries and the process with global rank 0 on the primary replica becomes the primary; several processes
    per pod: the TensorBoard directory gets a per-local-rank sub-directory.
    """
    for profile in trackers.all():
        profile.process_env(ctx, env)


def context(apply_env: bool = True) -> RunContext:
    """This process's RunContext; with `apply_env`, also finalise per-process tracker env (see apply_process_env).

    Call it before `wandb.init()` and friends so they see the final values.
    """
    ctx = read_context(os.environ)
    if apply_env and ctx.in_runyard:
        apply_process_env(ctx, os.environ)
    return ctx
