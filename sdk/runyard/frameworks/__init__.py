"""Framework profiles: one module per framework, one registry the API, builders, local runs and operator consult."""

from runyard.frameworks.base import FrameworkProfile, Launch, LocalReplica, PodAdditions
from runyard.frameworks.registry import all_roles, get, names, of, port_of, profiles, roles_of

__all__ = [
    "FrameworkProfile",
    "Launch",
    "LocalReplica",
    "PodAdditions",
    "all_roles",
    "get",
    "names",
    "of",
    "port_of",
    "profiles",
    "roles_of",
]
