"""SIGTERM / SIGINT during ``hnseg batch``: a stop request (Slurm, Kubernetes, Ctrl-C) becomes a
``BatchInterrupted`` exception in the batch loop, which cleans up the case in progress.

The mechanism is ``hnseg.signals`` (shared with ``hnseg predict``); this module gives it the batch's
exception. ``BatchRunner.run`` enters ``StopSignals``; a signal raises ``BatchInterrupted`` at once only
inside an ``interruptible()`` block (loading the models, reading, registering, segmenting and writing a
case into its temp folder). Elsewhere (publishing a finished case folder, writing the summary) it is held
as ``pending`` and raised by the next ``interruptible()`` or ``check()``, so a finished case folder or the
summary CSV is never left half-renamed.
"""

from __future__ import annotations

from hnseg.signals import STOP_SIGNALS, Interrupted
from hnseg.signals import StopSignals as _StopSignals

__all__ = ["STOP_SIGNALS", "BatchInterrupted", "StopSignals"]


class BatchInterrupted(Interrupted):
    """The batch was stopped by a signal (an ``Interrupted``, hence a ``BaseException``: the per-case
    ``except Exception`` of the batch loop does not record it as a failed case)."""


class StopSignals(_StopSignals):
    """Context manager: SIGTERM / SIGINT → ``BatchInterrupted`` (see ``hnseg.signals``)."""

    exception = BatchInterrupted
