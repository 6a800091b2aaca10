"""The utilisation integrator: each new sample stands for the time since the one before it, at most a second."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runyard.gpu.integrator import UtilizationCounters, UtilizationIntegrator


def test_busy_idle_and_sampled_seconds() -> None:
    integrator = UtilizationIntegrator()
    assert integrator.feed([(10.0, 80.0)]) == 1 and integrator.counters == UtilizationCounters()  # a start only
    integrator.feed([(10.2, 100.0), (10.4, 50.0), (10.6, 3.0), (10.8, 0.0)])
    counters = integrator.counters
    assert counters.sampled_seconds == pytest.approx(0.8)
    assert counters.busy_seconds == pytest.approx(0.2 * (1.0 + 0.5 + 0.03 + 0.0))
    assert counters.idle_seconds == pytest.approx(0.4)  # below 5 %
    assert integrator.last_time == 10.8


def test_repeats_older_samples_and_gaps() -> None:
    integrator = UtilizationIntegrator()
    integrator.feed([(1.0, 50.0), (2.0, 50.0)])
    # A buffer read again from an older timestamp hands back what was folded: ignored.
    assert integrator.feed([(1.0, 50.0), (2.0, 50.0)]) == 0
    integrator.feed([(12.0, 100.0)])  # 10 s without samples: the sample covers its own second, not the gap
    assert integrator.counters.sampled_seconds == pytest.approx(2.0)
    assert integrator.counters.busy_seconds == pytest.approx(1.5)
    integrator.feed([(13.0, 250.0), (14.0, -3.0)])  # clamped to 0-100
    assert integrator.counters.busy_seconds == pytest.approx(2.5)


@given(st.lists(st.tuples(st.floats(0, 1000), st.floats(0, 100)), max_size=60))
def test_counters_stay_consistent(samples: list[tuple[float, float]]) -> None:
    integrator = UtilizationIntegrator()
    integrator.feed(samples)
    c = integrator.counters
    assert 0 <= c.busy_seconds <= c.sampled_seconds + 1e-9 and 0 <= c.idle_seconds <= c.sampled_seconds + 1e-9
    assert c.sampled_seconds <= max(len(samples) - 1, 0) * 1.0 + 1e-9
