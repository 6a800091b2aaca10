"""Where each framework's ranks start, as failure triage reports a failed replica's rank (status.failure.rank)."""

from __future__ import annotations

import pytest

from runyard import frameworks
from runyard_operator.controller import run_facts
from runyard_operator.policies.triage import rank_of
from tests.unit.factories import make_run


@pytest.mark.parametrize(
    ("case", "overrides", "role", "index", "rank"),
    [
        ("pytorch-large", {}, "node", 3, 24),  # 8 GPUs a node: one process per GPU
        ("pytorch-small", {}, "node", 1, 1),
        ("pytorch-small", {"nprocPerNode": 4}, "node", 1, 4),
        ("pytorch-small", {"nprocPerNode": "cpu"}, "node", 1, 1),  # only torchrun knows: the index
        ("mpi-large", {}, "worker", 2, 16),  # the hostfile's order, slotsPerWorker ranks each
        ("mpi-large", {}, "launcher", 0, 0),  # hosts no rank: the index
        ("deepspeed-large", {}, "worker", 1, 8),
        ("tensorflow-small", {}, "worker", 1, 2),  # chief 0, workers 1.., as local runs rank them
        ("tensorflow-small", {}, "ps", 0, 3),
        ("generic-large", {}, "node", 3, 3),
    ],
)
def test_failed_replica_rank(case: str, overrides: dict[str, object], role: str, index: int, rank: int) -> None:
    run = make_run(case, **overrides)
    assert rank_of(run_facts(run).rank_layout, role, index) == rank


def test_default_layout_matches_local_runs_ranks() -> None:
    for case in ("tensorflow-large", "generic-large", "xgboost-small", "jax-large"):
        spec = make_run(case).spec
        profile = frameworks.of(spec)
        layout = profile.rank_layout(spec)
        assert [(r.role, r.index, r.rank) for r in profile.local_replicas(spec)] == [
            (r.role, r.index, rank_of(layout, r.role, r.index)) for r in profile.local_replicas(spec)
        ]
