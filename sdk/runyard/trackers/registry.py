"""The one table of trackers: name -> profile class, loaded on first use."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRun
    from runyard.trackers.base import TrackerProfile

# Adding a tracker: one module implementing TrackerProfile, one line here. Strings, not imports: the API models
# read the names (the CRD's enum, the validator) without loading the profiles. Order is the CRD's enum order.
TRACKERS: dict[str, str] = {
    "mlflow": "runyard.trackers.mlflow:MLflow",
    "wandb": "runyard.trackers.wandb:WandB",
    "comet": "runyard.trackers.comet:Comet",
    "clearml": "runyard.trackers.clearml:ClearML",
    "tensorboard": "runyard.trackers.tensorboard:TensorBoard",
    "polyaxon": "runyard.trackers.polyaxon:Polyaxon",
    "neptune": "runyard.trackers.neptune:Neptune",
}


def names() -> tuple[str, ...]:
    """Every tracker name, in registry order."""
    return tuple(TRACKERS)


@cache
def get(name: str) -> TrackerProfile:
    """The profile of tracker `name`.

    Raises:
        KeyError: no such tracker (the API models reject unknown names before anything asks).
    """
    module_name, class_name = TRACKERS[str(name)].split(":")
    profile: TrackerProfile = getattr(importlib.import_module(module_name), class_name)()
    if profile.name != name:
        raise RuntimeError(f"registry entry {name!r} loads profile {profile.name!r}")
    return profile


def all() -> tuple[TrackerProfile, ...]:
    """Every profile, in registry order."""
    return tuple(get(n) for n in TRACKERS)


def known(values: Iterable[str]) -> tuple[str, ...]:
    """The registered names among `values`, deduplicated, in their order (unknown names are dropped)."""
    out: list[str] = []
    for value in values:
        name = str(getattr(value, "value", value))
        if name in TRACKERS and name not in out:
            out.append(name)
    return tuple(out)


def base_env(run: TrainingRun, artifacts_path: str | None = None) -> dict[str, str]:
    """Env every replica of `run` gets from the trackers its spec names (`artifacts_path`: default the spec's).

    Only `spec.tracking.trackers` counts, not the operator's defaults: the builders render it without the operator.
    """
    tracking = run.spec.tracking
    root = artifacts_path if artifacts_path is not None else run.spec.artifacts.path
    env: dict[str, str] = {}
    for name in known(tracking.trackers if tracking and tracking.trackers else ()):
        env.update(get(name).base_env(root))
    return env


def credential_env_names() -> frozenset[str]:
    """Env names of every tracker that carry secrets (configuration passes them only as Secret references)."""
    return frozenset(n for p in all() for n in p.credential_env)


def reserved_env_names() -> frozenset[str]:
    """Env names Runyard derives per run or per rank for some tracker (configuration may not set them)."""
    return frozenset(n for p in all() for n in p.reserved_env)
