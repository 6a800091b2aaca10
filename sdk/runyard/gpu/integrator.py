"""Utilisation samples -> cumulative counters per GPU (busy, idle and sampled seconds), independent of any scrape.

A point gauge read once per scrape interval misses what happened between reads: at 15 s, bursty training looks busier
than it is and short idle stretches vanish. The node agent therefore folds NVML's own utilisation samples (its sample
buffer holds one every ~200 ms for the last ~14 s; `nvmlDeviceGetSamples`) into counters once a second, and the
operator's accounting takes deltas of them between scrapes: a delta covers every sample in between, whatever the
interval. Where the buffer is not supported the agent feeds its own polls instead (one per agent interval).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

IDLE_PERCENT = 5.0  # GPUSummary.idleGpuHours: "GPU-hours with utilisation below 5 percent"
# NVML averages a utilisation sample over at most its last second: a longer gap since the previous sample (a stalled
# agent, a driver hiccup) is unobserved time, left out of `sampled` rather than filled with a guess.
MAX_SAMPLE_SPAN_SECONDS = 1.0


def counter_delta(new: float, old: float) -> float:
    """A counter's increase; a smaller reading means it restarted from 0 (an agent restart, a driver reload)."""
    return new - old if new >= old else new


@dataclass(frozen=True, slots=True)
class UtilizationCounters:
    """Seconds since the integrator started: ∫ utilisation dt (busy), time below the idle threshold, time observed."""

    busy_seconds: float = 0.0
    idle_seconds: float = 0.0
    sampled_seconds: float = 0.0


class UtilizationIntegrator:
    """Folds (time, utilisation %) samples of one GPU into counters; repeated or older samples are ignored."""

    def __init__(self, idle_percent: float = IDLE_PERCENT, max_span: float = MAX_SAMPLE_SPAN_SECONDS) -> None:
        self.idle_percent = idle_percent
        self.max_span = max_span
        self._last: float | None = None
        self._busy = 0.0
        self._idle = 0.0
        self._sampled = 0.0

    @property
    def last_time(self) -> float | None:
        """The newest sample folded (seconds, the samples' own clock), to ask NVML only for newer ones."""
        return self._last

    @property
    def counters(self) -> UtilizationCounters:
        return UtilizationCounters(self._busy, self._idle, self._sampled)

    def feed(self, samples: Iterable[tuple[float, float]]) -> int:
        """Fold samples; each new one stands for the time since the previous one (at most `max_span`). Returns how
        many were new."""
        folded = 0
        for when, percent in sorted(samples):
            if self._last is not None and when <= self._last:
                continue
            if self._last is not None:
                span = min(when - self._last, self.max_span)
                value = min(max(percent, 0.0), 100.0)
                self._busy += value / 100.0 * span
                self._sampled += span
                if value < self.idle_percent:
                    self._idle += span
            self._last = when
            folded += 1
        return folded
