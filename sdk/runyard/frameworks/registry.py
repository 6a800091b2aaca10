"""The one table of frameworks: name -> profile class, loaded on first use."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRunSpec
    from runyard.frameworks.base import FrameworkProfile

# Adding a framework: one module implementing FrameworkProfile, one line here. Strings, not imports: the API models
# read the names (the CRD's enum) without loading the profiles, which themselves build on the API models.
FRAMEWORKS: dict[str, str] = {
    "pytorch": "runyard.frameworks.pytorch:PyTorch",
    "tensorflow": "runyard.frameworks.tensorflow:TensorFlow",
    "mpi": "runyard.frameworks.mpi:MPI",
    "jax": "runyard.frameworks.jax:JAX",
    "generic": "runyard.frameworks.generic:Generic",
    "xgboost": "runyard.frameworks.xgboost:XGBoost",
    "deepspeed": "runyard.frameworks.deepspeed:DeepSpeed",
}


def names() -> tuple[str, ...]:
    """Every framework name, in registry order (the CRD's enum)."""
    return tuple(FRAMEWORKS)


@cache
def get(name: str) -> FrameworkProfile:
    """The profile of framework `name`.

    Raises:
        KeyError: no such framework (the API models reject unknown names before anything asks).
    """
    target = FRAMEWORKS[str(name)]
    module_name, class_name = target.split(":")
    profile: FrameworkProfile = getattr(importlib.import_module(module_name), class_name)()
    if profile.name != name:
        raise RuntimeError(f"registry entry {name!r} loads profile {profile.name!r}")
    return profile


def profiles() -> list[FrameworkProfile]:
    """Every profile, in registry order."""
    return [get(n) for n in FRAMEWORKS]


def of(spec: TrainingRunSpec) -> FrameworkProfile:
    """The profile of a run's framework."""
    return get(spec.framework)


def roles_of(spec: TrainingRunSpec) -> list[str]:
    """The run's roles in its framework's canonical order."""
    return of(spec).ordered_roles(spec)


def port_of(spec: TrainingRunSpec) -> int:
    """The run's rendezvous (or SSH) port."""
    return of(spec).port(spec)


@cache
def all_roles() -> tuple[str, ...]:
    """Every role any framework knows, first appearance first (stable slots for local ports)."""
    seen: dict[str, None] = {}
    for profile in profiles():
        seen.update(dict.fromkeys(profile.roles))
    return tuple(seen)
