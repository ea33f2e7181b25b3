"""Progress reporting and cancellation for long pipeline runs.

Exports: Stage, ProgressCallback, CancelToken, Reporter.

Core calls ``progress(stage, fraction, message)`` where fraction is 0..1 within
the stage. The worker turns that into job metadata; the CLI into a bar.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from typing import Callable, Optional

from .errors import CancelledError


class Stage(StrEnum):
    """Pipeline stages, in the order they run."""

    DECODE = "decode"
    SEPARATE = "separate"
    TRANSCRIBE = "transcribe"
    ANALYZE = "analyze"
    SCORE = "score"
    ENGRAVE = "engrave"
    DONE = "done"


#: Weight of each stage in the overall percentage shown to users.
STAGE_WEIGHTS: dict[Stage, float] = {
    Stage.DECODE: 0.05,
    Stage.SEPARATE: 0.35,
    Stage.TRANSCRIBE: 0.35,
    Stage.ANALYZE: 0.05,
    Stage.SCORE: 0.08,
    Stage.ENGRAVE: 0.12,
    Stage.DONE: 0.0,
}

ProgressCallback = Callable[[Stage, float, Optional[str]], None]


def overall_fraction(stage: Stage, fraction: float) -> float:
    """Map (stage, fraction within stage) to 0..1 over the whole job."""
    if stage is Stage.DONE:
        return 1.0
    done = 0.0
    for s, w in STAGE_WEIGHTS.items():
        if s is stage:
            return min(1.0, done + w * max(0.0, min(1.0, fraction)))
        done += w
    return done


class CancelToken:
    """Set from another thread (or by a poll function) to stop a running pipeline.

    Args:
        poll: optional callable returning True when the job should stop (the worker
            passes one that reads a Redis flag); checked at most every call of check().
    """

    def __init__(self, poll: Callable[[], bool] | None = None) -> None:
        self._event = threading.Event()
        self._poll = poll

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set() and self._poll is not None and self._poll():
            self._event.set()
        return self._event.is_set()

    def check(self) -> None:
        """Raises CancelledError if cancellation was requested."""
        if self.cancelled:
            raise CancelledError("The job was cancelled.")


class Reporter:
    """Bundles the optional callback and cancel token that stages receive.

    Stages call ``reporter(stage, fraction, message)``; every call also checks
    for cancellation, so long loops stop promptly.
    """

    def __init__(self, callback: ProgressCallback | None = None, cancel: CancelToken | None = None) -> None:
        self._callback = callback
        self.cancel = cancel

    def __call__(self, stage: Stage, fraction: float, message: str | None = None) -> None:
        if self.cancel is not None:
            self.cancel.check()
        if self._callback is not None:
            self._callback(stage, max(0.0, min(1.0, fraction)), message)

    def check(self) -> None:
        if self.cancel is not None:
            self.cancel.check()
