"""Checkpoint-aware stop: SIGTERM (suspend, preemption, deletion, deadline) becomes a flag and callbacks, not a kill.

Kubernetes stops a pod with SIGTERM and kills it `terminationGracePeriodSeconds` later (`runPolicy.stopGracePeriodSeconds`).
Python's default for SIGTERM ends the process at once; once training code asks `runyard.context().should_stop()` or
registers `runyard.on_stop(callback)`, SIGTERM instead sets the flag and runs the callbacks, so the loop can save a
checkpoint and exit. Code that asks neither keeps the default.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

logger = logging.getLogger(__name__)

_stop = threading.Event()
_callbacks: list[Callable[[], object]] = []
_lock = threading.Lock()
_installed = False

F = TypeVar("F", bound=Callable[[], object])


def _handler(signum: int, frame: FrameType | None) -> None:
    first = not _stop.is_set()
    _stop.set()
    if not first:
        return
    logger.warning("runyard: SIGTERM received: stopping (save a checkpoint now)")
    # Python runs signal handlers in the main thread between bytecodes: the callbacks run as ordinary Python code.
    for callback in list(_callbacks):
        try:
            callback()
        except Exception:  # one failing callback must not keep the others (or the save) from running
            logger.exception("runyard: a stop callback failed")


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        if threading.current_thread() is not threading.main_thread():
            # signal.signal only works in the main thread; the flag still works if the main thread installs later.
            logger.warning("runyard: stop handling must be set up from the main thread; SIGTERM keeps its default")
            return
        signal.signal(signal.SIGTERM, _handler)
        _installed = True


def should_stop() -> bool:
    """True once SIGTERM arrived (the first call installs the handler): save a checkpoint and leave the loop."""
    _install()
    return _stop.is_set()


def on_stop(callback: F) -> F:
    """Run `callback()` when SIGTERM arrives (once; usable as a decorator). It should be quick: save and return."""
    _install()
    _callbacks.append(callback)
    return callback
