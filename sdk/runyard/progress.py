"""Progress reports from training code to the operator: the step reached and the total, at most one per interval.

`runyard.log_metrics(..., step=n)` reports `n`; `runyard.context().set_total_steps(total)` sets the total that turns
steps into a percentage and an ETA; `runyard.report_progress(step, total)` does both directly. A background thread
sends the latest report at most every RUNYARD_PROGRESS_INTERVAL seconds (default 10) and once more at exit, so a loop
that reports every step costs nothing more. Outside a TrainingRun (no RUNYARD_PROGRESS_URL) every call is a no-op.

The request carries a projected ServiceAccount token (audience `runyard.dev/progress`) that the kubelet mounts and
rotates; the operator asks the API server who it belongs to (TokenReview), so a pod can only report for its own run.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runyard import constants as c

logger = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Report:
    """One progress report as sent: the step this process reached, the run's total if known, and the sender's rank."""

    step: int
    total: int | None
    rank: int

    def body(self) -> bytes:
        return json.dumps({"step": self.step, "total": self.total, "rank": self.rank}).encode()


def post_report(url: str, token_file: Path, report: Report) -> int:
    """POST one report; returns the HTTP status. The token is read on each send: the kubelet rotates the file."""
    token = token_file.read_text().strip()
    request = urllib.request.Request(
        url,
        data=report.body(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECONDS) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.close()  # it holds the response's socket
        return int(err.code)


class ProgressReporter:
    """Keeps the latest step and total and sends them from a daemon thread; never raises into training code."""

    def __init__(
        self,
        url: str | None,
        token_file: Path | None,
        *,
        rank: int = 0,
        interval: float = c.PROGRESS_REPORT_SECONDS,
        send: Callable[[str, Path, Report], int] = post_report,
    ) -> None:
        self.url = url
        self.token_file = token_file
        self.rank = rank
        self.interval = max(0.5, interval)
        self._send = send
        self._lock = threading.Lock()
        self._step: int | None = None
        self._total: int | None = None
        self._sent: Report | None = None
        # Never sent: the first report goes at once (time.monotonic() starts near 0 on a freshly booted host).
        self._last_send = -math.inf
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._warned = False
        self.sent = 0
        self.refused = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProgressReporter:
        from runyard.context import read_context

        url = env.get(c.ENV_PROGRESS_URL) or None
        token = env.get(c.ENV_PROGRESS_TOKEN_FILE) or None
        try:
            interval = float(env.get(c.ENV_PROGRESS_INTERVAL) or c.PROGRESS_REPORT_SECONDS)
        except ValueError:
            interval = c.PROGRESS_REPORT_SECONDS
        return cls(url, Path(token) if token else None, rank=read_context(env).rank, interval=interval)

    @property
    def enabled(self) -> bool:
        return bool(self.url and self.token_file)

    def set_total(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"total steps must be at least 1, got {total}")
        with self._lock:
            self._total = int(total)
        self._kick()

    def report(self, step: int, total: int | None = None) -> None:
        if step < 0:
            raise ValueError(f"step must not be negative, got {step}")
        with self._lock:
            self._step = int(step)
            if total is not None:
                self._total = int(total)
        self._kick()

    def latest(self) -> Report | None:
        with self._lock:
            if self._step is None:
                return None
            return Report(self._step, self._total, self.rank)

    def _kick(self) -> None:
        if not self.enabled or self._closed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="runyard-progress", daemon=True)
            self._thread.start()
            atexit.register(self.close)
        self._wake.set()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            # One report per interval however often the loop reports: the newest wins.
            wait = self._last_send + self.interval - time.monotonic()
            if wait > 0 and not self._closed:
                time.sleep(wait)
            self.flush()

    def flush(self) -> None:
        """Send the latest report now if it differs from the last one sent (blocking, bounded by a 5 s timeout)."""
        report = self.latest()
        if report is None or report == self._sent or not self.enabled:
            return
        assert self.url and self.token_file
        self._last_send = time.monotonic()
        try:
            status = self._send(self.url, self.token_file, report)
        except (OSError, ValueError) as err:
            status = 0
            reason = str(err)
        else:
            reason = f"HTTP {status}"
        if 200 <= status < 300:
            self._sent = report
            self.sent += 1
            return
        self.refused += 1
        if not self._warned:
            # Once: progress is a convenience, and a training loop must never stop or spam for it.
            self._warned = True
            logger.warning("runyard: progress report to %s not accepted (%s); training goes on", self.url, reason)

    def close(self) -> None:
        """Send the final report (at exit too)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self.flush()
        atexit.unregister(self.close)


_default: ProgressReporter | None = None
_default_lock = threading.Lock()


def default_reporter() -> ProgressReporter:
    """The process-wide reporter, configured from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ProgressReporter.from_env(os.environ)
        return _default


def report_progress(step: int, total: int | None = None) -> None:
    """Report that this process reached `step` (of `total`, if given); cheap enough to call every step."""
    default_reporter().report(step, total)


def set_total_steps(total: int) -> None:
    """The number of steps the run will take: with it, status shows a percentage and an ETA."""
    default_reporter().set_total(total)
