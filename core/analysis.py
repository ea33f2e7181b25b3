"""Cheap features of a whole recording that auto mode decides on.

Exports: MixProfile, profile_mix.

Auto mode has to tell a single melody from a keyboard playing chords from a band
with drums before anything expensive runs. Two measurements do that cheaply:
the share of energy that harmonic/percussive separation (librosa's HPSS median
filtering) assigns to percussion, and the polyphony / range of a pitch salience
estimate (constant-Q peaks per frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Share of all energy that is percussive and below 150 Hz (a kick drum) above which a
#: recording is treated as a band with drums. Piano attacks stay under 0.008 on the dev
#: set, band mixes are at 0.037 and above.
BAND_KICK_RATIO = 0.02
#: Loudness change per STFT frame (dB, ~23 ms) that counts as decaying or swelling.
ENVELOPE_STEP_DB = 0.4
#: decay_share minus swell_share above which notes are struck or plucked.
STRUCK_DECAY_MARGIN = 0.12
#: swell_share below which sustained (not struck) notes are steady, organ-like.
STEADY_MAX_SWELL = 0.28
#: Longest stretch of audio the profile looks at, taken as evenly spaced excerpts.
PROFILE_MAX_S = 36.0
#: Mean simultaneous pitches below which a recording is a single line.
MONOPHONIC_POLYPHONY = 1.35
#: Sample rate the profile works at (enough for pitch up to C7 and for drums).
PROFILE_SAMPLE_RATE_HZ = 22050


@dataclass(frozen=True)
class MixProfile:
    """What auto mode knows about a recording.

    percussive_ratio: share of spectral energy that is percussive (0..1).
    kick_ratio: share of spectral energy that is percussive and below 150 Hz.
    decay_share / swell_share: share of frames whose loudness falls / rises by more than
        0.4 dB per 23 ms frame. Struck and plucked strings (piano, guitar) mostly decay;
        bowed and blown instruments swell into their notes; organ pipes do neither.
    polyphony: mean number of simultaneous salient pitches in voiced frames.
    low_pitch / high_pitch / median_pitch: MIDI range of salient pitches (5th/95th pct).
    voiced_fraction: share of frames with any salient pitch.
    """

    percussive_ratio: float
    kick_ratio: float
    decay_share: float
    swell_share: float
    polyphony: float
    low_pitch: float
    high_pitch: float
    median_pitch: float
    voiced_fraction: float

    @property
    def is_band(self) -> bool:
        return self.kick_ratio >= BAND_KICK_RATIO and self.polyphony >= 1.5

    @property
    def struck(self) -> bool:
        """Notes that start loud and die away: piano, guitar, harp."""
        return self.decay_share - self.swell_share > STRUCK_DECAY_MARGIN

    @property
    def steady(self) -> bool:
        """Sustained notes that neither swell nor decay: organ, accordion."""
        return not self.struck and self.swell_share < STEADY_MAX_SWELL

    @property
    def monophonic(self) -> bool:
        return self.polyphony < MONOPHONIC_POLYPHONY

    @property
    def keyboard_like(self) -> bool:
        """Chords over a wide range, as a piano or organ plays them."""
        wide = self.high_pitch - self.low_pitch >= 28 or self.low_pitch < 40
        return self.polyphony >= 1.8 and wide and (self.struck or self.steady)

    @property
    def plucked_solo(self) -> bool:
        """A few voices at a time, dying away, over a guitar's range: one plucked instrument."""
        return (not self.monophonic and self.struck and self.polyphony < 2.5
                and self.low_pitch >= 38 and self.high_pitch <= 90)

    def guess_instrument(self) -> str:
        """An instrument key for a solo part when the user named none."""
        if not self.monophonic:
            if self.keyboard_like:
                return "organ" if self.steady else "piano"
            if self.plucked_solo:
                return "guitar"
            return "piano"
        return "low-melody" if self.median_pitch < 55 else "melody"

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(getattr(self, k)), 3) for k in
                ("percussive_ratio", "kick_ratio", "decay_share", "swell_share", "polyphony", "low_pitch", "high_pitch", "median_pitch", "voiced_fraction")}


def profile_mix(samples: np.ndarray, sample_rate: int) -> MixProfile:
    """Measure percussiveness, polyphony and range of a mono recording.

    Args:
        samples: mono float samples.
        sample_rate: their rate in Hz.

    Returns:
        A MixProfile. Looks at most PROFILE_MAX_S seconds (three excerpts), so it
        costs about a second whatever the length.
    """
    import librosa

    y = _excerpts(np.asarray(samples, dtype=np.float32), sample_rate)
    if sample_rate != PROFILE_SAMPLE_RATE_HZ:
        y = librosa.resample(y, orig_sr=sample_rate, target_sr=PROFILE_SAMPLE_RATE_HZ, res_type="soxr_hq")
    sr = PROFILE_SAMPLE_RATE_HZ
    power = np.abs(librosa.stft(y, n_fft=1024, hop_length=512)) ** 2
    harmonic, percussive = librosa.decompose.hpss(power, margin=2.0)
    total = float(power.sum()) or 1.0
    percussive_ratio = float(percussive.sum()) / total
    low = librosa.fft_frequencies(sr=sr, n_fft=1024) < 150.0
    kick_ratio = float(percussive[low].sum()) / total
    loudness_db = 10 * np.log10(power.sum(axis=0) + 1e-10)
    step_db = np.diff(loudness_db)
    active = loudness_db[1:] > loudness_db.max() - 40.0
    decay_share = float(np.mean(step_db[active] < -ENVELOPE_STEP_DB)) if active.any() else 0.0
    swell_share = float(np.mean(step_db[active] > ENVELOPE_STEP_DB)) if active.any() else 0.0

    # Pitch salience: constant-Q magnitude, one bin per semitone, peaks above a
    # threshold relative to the frame's loudest bin count as sounding pitches.
    fmin = librosa.midi_to_hz(28)
    cqt = np.abs(librosa.cqt(y, sr=sr, hop_length=1024, fmin=fmin, n_bins=72, bins_per_octave=12))
    cqt_db = librosa.amplitude_to_db(cqt, ref=np.max)
    frame_peak = cqt_db.max(axis=0)
    voiced = frame_peak > -35.0
    counts, pitches = [], []
    for t in np.flatnonzero(voiced):
        col = cqt_db[:, t]
        peaks = np.flatnonzero((col[1:-1] > col[:-2]) & (col[1:-1] >= col[2:]) & (col[1:-1] > frame_peak[t] - 14.0)) + 1
        # Harmonics of one note show up as peaks too: drop peaks at 12/19/24 semitones
        # above a stronger lower peak.
        kept: list[int] = []
        for p in sorted(peaks, key=lambda i: -col[i]):
            if not any(p - k in (12, 19, 24, 28, 31) and col[k] >= col[p] - 3 for k in kept):
                kept.append(p)
        counts.append(len(kept))
        pitches.extend(28 + k for k in kept)
    if not counts:
        return MixProfile(percussive_ratio, kick_ratio, decay_share, swell_share, 0.0, 60.0, 60.0, 60.0, 0.0)
    arr = np.asarray(pitches, dtype=float)
    return MixProfile(
        percussive_ratio=percussive_ratio,
        kick_ratio=kick_ratio,
        decay_share=decay_share,
        swell_share=swell_share,
        polyphony=float(np.mean(counts)),
        low_pitch=float(np.percentile(arr, 5)),
        high_pitch=float(np.percentile(arr, 95)),
        median_pitch=float(np.median(arr)),
        voiced_fraction=float(voiced.mean()),
    )


def _excerpts(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """Up to PROFILE_MAX_S seconds of y: three evenly spaced excerpts, joined."""
    limit = int(PROFILE_MAX_S * sample_rate)
    if y.size <= limit:
        return y
    part = limit // 3
    starts = np.linspace(0, y.size - part, 3).astype(int)
    return np.concatenate([y[s:s + part] for s in starts])
