"""SIGTERM / SIGINT during ``hnseg batch``: a stop request (Slurm, Kubernetes, Ctrl-C) becomes a
``BatchInterrupted`` exception in the batch loop, which cleans up the case in progress.

``StopSignals`` installs its handler for SIGTERM and SIGINT only while it is entered (``BatchRunner.run``)
and restores the previous handlers on exit; it keeps no module-level state. A signal raises
``BatchInterrupted`` at once only inside an ``interruptible()`` block (loading the models, reading,
segmenting and writing a case into its temp folder). Elsewhere (publishing a finished case folder,
writing the summary) it is held as ``pending`` and raised by the next ``interruptible()`` or
``check()``, so a finished case folder or the summary CSV is never left half-renamed.
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


class BatchInterrupted(BaseException):
    """The batch was stopped by a signal. A ``BaseException`` (like ``KeyboardInterrupt``), so that the
    per-case ``except Exception`` of the batch loop does not record it as a failed case."""

    def __init__(self, signal_number: int):
        self.signal_number = int(signal_number)
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signal_number).name
        except ValueError:
            return f"signal {self.signal_number}"

    @property
    def exit_code(self) -> int:
        """The shell convention 128 + signal number: 143 for SIGTERM, 130 for SIGINT."""
        return 128 + self.signal_number


class StopSignals:
    """Context manager: SIGTERM / SIGINT → ``BatchInterrupted`` (see the module docstring)."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
        self.signals = signals
        self.pending: int | None = None
        self._interruptible = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            log.debug("not in the main thread: SIGTERM / SIGINT keep their handlers during the batch")
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
            log.warning("%s received when no case was left to run: the batch ended normally",
                        BatchInterrupted(self.pending).signal_name)
        self.pending = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._interruptible:
            raise BatchInterrupted(signum)
        if self.pending is None:
            self.pending = signum
        log.debug("%s received: held until the current step is complete", BatchInterrupted(signum).signal_name)

    def check(self) -> None:
        """Raise ``BatchInterrupted`` for a signal held while it could not interrupt."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise BatchInterrupted(signum)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block that a signal interrupts at once (a held signal is raised on entry)."""
        self.check()
        self._interruptible += 1
        try:
            yield
        finally:
            self._interruptible -= 1
