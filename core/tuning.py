"""Concert pitch: how far a recording sits from A4 = 440 Hz, and transcribing it in tune.

Both transcription models read pitch on the equal-tempered grid of A4 = 440 Hz. A
recording that is not there (a guitar tuned to itself, an old tape running fast, a
band at A = 432, a choir that sank) puts its notes between two keys, and the models
then write many of them a semitone off or not at all. Measured on the dev set played
40 cents sharp: note F1 0.876 -> 0.414 on the band mix, 0.998 -> 0.393 on the piano rag.

The offset is read from the spectral peaks of the whole recording: each peak's
distance from the nearest equal-tempered pitch, in cents, is a point on a
100-cent circle (+49 and -49 cents are 2 cents apart), and the offset is the
magnitude-weighted circular mean of those points; how tightly they gather (the
mean resultant length) is the confidence. Harmonics above the fourth deviate from
equal temperament by themselves (the fifth harmonic by -14 cents), so peaks are
taken only from the lower part of the spectrum and the strongest ones, where
fundamentals and low harmonics dominate: on the dev set the reading stays within
5 cents of A440. The mean rather than the histogram's peak, and 4096-point frames
rather than longer ones, because of vibrato: a voice swinging +-35 cents puts its
peaks at both extremes, where a histogram peaks, while the mean stays within
2 cents of the centre (measured on synthetic vibrato, tests/test_tuning.py).
Deeper vibrato (+-40 cents and more) spreads the peaks round the circle; the
confidence then falls under MIN_CONFIDENCE and nothing is corrected. librosa's
estimate_tuning was tried first and read in-tune dev-set clips as anything from
-50 to +44 cents, so it is not used.

When the offset is large enough to matter, the audio is resampled so that its pitch
moves onto the grid (its speed moves with it, by the same ratio: at most 3%), the
engine transcribes that, and the notes' times are mapped back to the recording's.
Resampling changes nothing else in the sound, unlike a phase-vocoder pitch shift.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .engines.base import resample_mono
from .notes import Note

#: The reference pitch of the models' grid.
REFERENCE_HZ = 440.0
#: Offsets smaller than this are left alone: the models round them to the right key anyway.
MIN_CORRECTION_CENTS = 10.0
#: Below this concentration of peaks around the offset the estimate is not trusted: noise
#: (0.01), drums, speech, and vibrato of +-40 cents or more (0.06-0.23, and wrong from +-50).
#: The dev set reads 0.69-0.89; vibrato of +-35 cents 0.37, read right.
MIN_CONFIDENCE = 0.3
#: Fewer peaks than this are too few to judge.
MIN_PEAKS = 200
#: Sample rate, FFT size and hop of the analysis (4096 points at 22.05 kHz: 186 ms, 5.4 Hz bins,
#: a peak's centre interpolated to a fraction of that).
ANALYSIS_RATE_HZ = 22050
FFT_SIZE = 4096
HOP = 1024
#: Peaks are looked for between these frequencies, and no more than this far under the frame's loudest.
LOWEST_HZ = 60.0
HIGHEST_HZ = 2500.0
PEAK_FLOOR_DB = -30.0


@dataclass(frozen=True)
class Tuning:
    """A recording's offset from the A4 = 440 Hz equal-tempered grid.

    cents: the offset, in (-50, 50] for a detected one; positive is sharp.
        A given reference (tuning:432) may lie further out.
    confidence: 0..1, how tightly the recording's peaks gather around the offset
        (1.0 for a given or switched-off tuning).
    source: "detected", "given" (the user's tuning:HZ) or "off" (tuning:off).
    """

    cents: float = 0.0
    confidence: float = 1.0
    source: str = "detected"

    @property
    def reference_hz(self) -> float:
        """The A4 the recording was tuned to."""
        return REFERENCE_HZ * 2.0 ** (self.cents / 1200.0)

    @property
    def corrected(self) -> bool:
        """Whether the audio is moved onto the grid before transcription."""
        if self.source == "off":
            return False
        if self.source == "given":
            return abs(self.cents) >= 0.5
        return abs(self.cents) >= MIN_CORRECTION_CENTS and self.confidence >= MIN_CONFIDENCE

    def describe(self, subject: str = "The recording") -> str | None:
        """One line for the user when the tuning changed what was written, else None."""
        if not self.corrected:
            return None
        cents = round(abs(self.cents))
        side = "sharp" if self.cents > 0 else "flat"
        if self.source == "given":
            return f"Read at A4 = {self.reference_hz:.0f} Hz, as you asked ({cents} cents {side} of 440)."
        return (f"{subject} is tuned {cents} cents {side} of A4 = 440 Hz (A4 = {self.reference_hz:.0f} Hz); "
                "its notes are written at the nearest pitch.")

    def to_dict(self) -> dict[str, object]:
        return {"cents": round(float(self.cents), 1), "reference_hz": round(self.reference_hz, 1),
                "confidence": round(float(self.confidence), 2), "source": self.source,
                "corrected": self.corrected}

    @classmethod
    def given(cls, reference_hz: float) -> "Tuning":
        """The tuning a user named (tuning:432); 440 means leave the audio alone."""
        if reference_hz == REFERENCE_HZ:
            return cls(0.0, 1.0, "off")
        return cls(1200.0 * math.log2(reference_hz / REFERENCE_HZ), 1.0, "given")


#: Analysis frames per FFT block: bounds memory on a 10-minute recording (about 40 MB a block).
BLOCK_FRAMES = 512


def _spectral_peaks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in Hz, magnitudes) of the spectral peaks of every analysis frame."""
    if len(x) < FFT_SIZE:
        x = np.pad(x, (0, FFT_SIZE - len(x)))
    n_frames = 1 + (len(x) - FFT_SIZE) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(x, FFT_SIZE)[::HOP][:n_frames]
    window = np.hanning(FFT_SIZE).astype(np.float32)
    bin_hz = ANALYSIS_RATE_HZ / FFT_SIZE
    lo, hi = int(LOWEST_HZ / bin_hz), int(HIGHEST_HZ / bin_hz)
    freqs, weights = [], []
    for start in range(0, n_frames, BLOCK_FRAMES):
        mags = np.abs(np.fft.rfft(frames[start:start + BLOCK_FRAMES] * window, axis=1))
        log_mag = np.log(mags + 1e-9)
        left, mid, right = log_mag[:, lo - 1:hi - 1], log_mag[:, lo:hi], log_mag[:, lo + 1:hi + 1]
        band = mags[:, lo:hi]
        floor = mags.max(axis=1, keepdims=True) * 10.0 ** (PEAK_FLOOR_DB / 20.0)
        rows, cols = np.nonzero((mid > left) & (mid >= right) & (band > floor) & (band > 0))
        a, b, c = left[rows, cols], mid[rows, cols], right[rows, cols]
        # Parabolic interpolation of the log spectrum: the peak's centre to a fraction of a bin.
        denom = a - 2.0 * b + c
        offset = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
        freqs.append((cols + lo + np.clip(offset, -0.5, 0.5)) * bin_hz)
        weights.append(band[rows, cols])
    return np.concatenate(freqs), np.concatenate(weights)


def estimate_tuning(samples_mono: np.ndarray, sample_rate: int) -> Tuning:
    """Estimate how far a recording sits from A4 = 440 Hz.

    Args:
        samples_mono: the recording, mono (or (channels, n), averaged).
        sample_rate: its rate in Hz.

    Returns:
        The offset in (-50, 50] cents and its confidence; an unpitched or too short
        recording reads as 0 cents with a low confidence.
    """
    x = resample_mono(samples_mono, sample_rate, ANALYSIS_RATE_HZ)
    freqs, weights = _spectral_peaks(x)
    if len(freqs) < MIN_PEAKS or not np.any(weights > 0):
        return Tuning(0.0, 0.0)
    deviation = np.mod(1200.0 * np.log2(freqs / REFERENCE_HZ) + 50.0, 100.0) - 50.0
    resultant = np.sum(weights * np.exp(2j * np.pi * deviation / 100.0)) / np.sum(weights)
    cents = float(np.angle(resultant) * 100.0 / (2 * np.pi))
    if cents <= -50.0:
        cents += 100.0
    return Tuning(cents, float(np.abs(resultant)))


def retune(samples_mono: np.ndarray, sample_rate: int, cents: float) -> tuple[np.ndarray, float]:
    """Move a recording's pitch down by ``cents`` (up when negative) by resampling.

    Returns:
        (samples at ``sample_rate``, time scale): a moment t of the input is at
        t * scale in the result.
    """
    stretched_rate = int(round(sample_rate * 2.0 ** (cents / 1200.0)))
    return resample_mono(samples_mono, sample_rate, stretched_rate), stretched_rate / sample_rate


def on_grid(samples_mono: np.ndarray, sample_rate: int,
            tuning: Tuning | None) -> tuple[np.ndarray, Callable[[list[Note]], list[Note]]]:
    """The recording moved onto the A440 grid, and the map of notes heard in it back to the recording's time.

    Args:
        samples_mono: the recording.
        sample_rate: its rate.
        tuning: its offset; None or an uncorrected one leaves the recording as is.

    Returns:
        (samples to transcribe, a function taking their notes to the recording's time).
    """
    if tuning is None or not tuning.corrected:
        return samples_mono, list
    moved, scale = retune(samples_mono, sample_rate, tuning.cents)
    return moved, lambda notes: [replace(n, start_s=n.start_s / scale, end_s=n.end_s / scale) for n in notes]


def transcribe_in_tune(transcribe: Callable[..., list[Note]], samples_mono: np.ndarray, sample_rate: int,
                       tuning: Tuning | None, **kwargs: object) -> list[Note]:
    """Run an engine's ``transcribe`` on the recording moved onto the A440 grid.

    Args:
        transcribe: the engine's bound transcribe method.
        samples_mono: the recording.
        sample_rate: its rate.
        tuning: its offset; None or an uncorrected one runs the engine on the recording as is.
        kwargs: passed on to ``transcribe``.

    Returns:
        The engine's notes, in the recording's time.
    """
    audio, in_recording_time = on_grid(samples_mono, sample_rate, tuning)
    return in_recording_time(transcribe(audio, sample_rate, **kwargs))
