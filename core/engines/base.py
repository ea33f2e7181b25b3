"""The interface every transcription engine implements, plus small shared helpers.

Exports: TranscriptionEngine, ProgressFn, resample_mono, clamp_velocity, sort_notes,
report_progress.

An engine turns mono audio into Note events (seconds of the input, MIDI pitch,
velocity 1..127). Engines are loaded once per process by
stemscribe.core.engines.registry.ModelCache and must be safe to call from several
threads one job at a time (each call keeps its state on the stack).
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..instruments import Instrument
from ..notes import Note

#: Optional per-call progress callback: fraction 0..1 of this engine's work.
ProgressFn = Callable[[float], None]


@runtime_checkable
class TranscriptionEngine(Protocol):
    """Audio in, notes out.

    ``name`` is the registry key ("basic-pitch", "transkun", "drums").
    """

    name: str

    def transcribe(
        self,
        samples_mono: np.ndarray,
        sample_rate: int,
        *,
        instrument: Instrument | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Note]:
        """Transcribe one mono signal.

        Args:
            samples_mono: float32 samples, shape (n,), roughly -1..1.
            sample_rate: sample rate of ``samples_mono`` in Hz.
            instrument: what is playing, when known; engines use its range and
                polyphony to tune themselves.
            progress: called with the fraction done (0..1) from time to time.

        Returns:
            Notes sorted by start time, then pitch.
        """
        ...


def resample_mono(samples: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Return ``samples`` as contiguous float32 mono at ``target_rate``.

    Args:
        samples: shape (n,) or (channels, n); several channels are averaged.
        sample_rate: rate of ``samples`` in Hz.
        target_rate: wanted rate in Hz.

    Returns:
        float32 array of shape (m,).

    Raises:
        ValueError: non-positive sample rates or a non-1D/2D array.
    """
    if sample_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {sample_rate} -> {target_rate}")
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
    elif x.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got {x.shape}")
    if sample_rate != target_rate and x.size:
        import soxr  # local import: only engines that resample pay for it

        x = soxr.resample(x, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(x)


def clamp_velocity(value: float) -> int:
    """Round to a MIDI velocity in 1..127."""
    return int(min(127, max(1, round(value))))


def report_progress(progress: ProgressFn | None, fraction: float) -> None:
    """Call ``progress`` with ``fraction`` clipped to 0..1, if there is a callback."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))))


def sort_notes(notes: list[Note]) -> list[Note]:
    """Notes ordered by start, then pitch, then end (the order engines return)."""
    return sorted(notes, key=lambda n: (n.start_s, n.pitch, n.end_s))
