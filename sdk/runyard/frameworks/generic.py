"""Generic: no framework contract, only Runyard's own RUNYARD_* env and the headless Service's names."""

from __future__ import annotations

from runyard import constants as c
from runyard.frameworks.base import FrameworkProfile


class Generic(FrameworkProfile):
    """Any program: `node` replicas that find each other through RUNYARD_RUN_COORDINATOR and the Service."""

    name = "generic"
    summary = "any program: only the RUNYARD_* env and stable host names"
    roles = (c.ROLE_NODE,)
    default_port = c.DEFAULT_PYTORCH_PORT
