"""SIGTERM / SIGINT as an exception: a stop request (Slurm, Kubernetes, ``docker stop``, Ctrl-C) becomes
``Interrupted`` in the main thread, so that ``finally`` blocks and the atomic writers' cleanup run and the
process exits 128 + signal number (143 for SIGTERM, 130 for SIGINT) instead of dying mid-write.

``StopSignals`` installs its handler for SIGTERM and SIGINT only while it is entered and restores the
previous handlers on exit; it keeps no module-level state. A signal raises at once only inside an
``interruptible()`` block. Elsewhere (renaming a finished folder into place, writing a summary) it is held
as ``pending`` and raised by the next ``interruptible()`` or ``check()``, so that such a step is never
left half done. ``hnseg batch`` uses it with ``BatchInterrupted`` (``hnseg.batch.signals``), ``hnseg
predict`` / ``inference.py`` with ``Interrupted`` (``hnseg.predict_cli``).

Python runs a signal handler only between bytecodes of the main thread: a long call into C/C++ (elastix)
delays it until the call returns. Such work runs in a child process that the parent waits for in short
slices and kills when interrupted (``hnseg.preprocess.registration``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def signal_name(signal_number: int) -> str:
    try:
        return signal.Signals(signal_number).name
    except ValueError:
        return f"signal {signal_number}"


class Interrupted(BaseException):
    """The run was stopped by a signal. A ``BaseException`` (like ``KeyboardInterrupt``), so that an
    ``except Exception`` that records or tolerates a failure does not swallow it."""

    def __init__(self, signal_number: int):
        self.signal_number = int(signal_number)
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal_name(self.signal_number)

    @property
    def exit_code(self) -> int:
        """The shell convention 128 + signal number: 143 for SIGTERM, 130 for SIGINT."""
        return 128 + self.signal_number


class StopSignals:
    """Context manager: SIGTERM / SIGINT → ``exception`` (see the module docstring)."""

    exception: type[Interrupted] = Interrupted

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
        self.signals = signals
        self.pending: int | None = None
        self._interruptible = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            log.debug("not in the main thread: SIGTERM / SIGINT keep their handlers")
            return self
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            # None: a handler installed outside python; the default is the closest we can restore
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
        if self.pending is not None and exc_type is None:
            log.warning("%s received when no work was left to stop: the run ended normally",
                        signal_name(self.pending))
        self.pending = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._interruptible:
            raise self.exception(signum)
        if self.pending is None:
            self.pending = signum
        log.debug("%s received: held until the current step is complete", signal_name(signum))

    def check(self) -> None:
        """Raise ``exception`` for a signal held while it could not interrupt."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise self.exception(signum)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block that a signal interrupts at once (a held signal is raised on entry)."""
        self.check()
        self._interruptible += 1
        try:
            yield
        finally:
            self._interruptible -= 1


@contextlib.contextmanager
def held_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Hold ``signals`` during the block: whatever handler is installed (a ``StopSignals``, Python's
    default ``KeyboardInterrupt``) gets them once the block is done, via ``signal.raise_signal``.

    For a few lines that must not be split (start a child process AND keep its handle; stop and reap
    it AND remove its files). A Python-level hold, not ``pthread_sigmask``: in a process with other
    threads (torch's) the kernel delivers a process signal to any thread that does not block it, and
    Python then runs the handler in the main thread anyway. Outside the main thread: no hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: held.append(signum)) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)

