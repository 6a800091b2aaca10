"""Tracker profiles: one module per tracker, one registry that the API, builders, SDK context and operator consult.

A top-level package, beside `runyard.frameworks`, rather than inside `runyard.tracking`: the API models (names and
the CRD's enum), the builders (base env) and `runyard.context()` consult it, and none of them should load the
tracking package's MLflow lifecycle, local runner or logger. `runyard.tracking.env` is the driver that renders a
run's env from these profiles. Light on import (no pydantic, no tracker clients): training processes load it.
"""

from runyard.trackers.base import MLflowTarget, Rank, TrackerProfile, TrackingPlan, rank_label
from runyard.trackers.registry import (
    all,
    base_env,
    credential_env_names,
    get,
    known,
    names,
    reserved_env_names,
)

__all__ = [
    "MLflowTarget",
    "Rank",
    "TrackerProfile",
    "TrackingPlan",
    "all",
    "base_env",
    "credential_env_names",
    "get",
    "known",
    "names",
    "rank_label",
    "reserved_env_names",
]
