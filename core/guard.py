"""The artifact guard: decides, per separated stem, whether its audio can be trusted.

Exports: StemVerdict, GuardThresholds, Spectrum, spectrum, measure_stem,
note_agreement, assess_stem, DECISIONS.

Separation sometimes mangles a stem: it is near-silent, it is mostly another
instrument (bleed), it is noise, or its notes do not exist in the recording.
For each stem the guard measures

* ``energy_db``: the stem's energy relative to the mix (near-silent -> dropped);
* ``bleed``: the largest cosine similarity between the stem's magnitude
  spectrogram and another stem's (two stems carrying the same sound);
* ``mix_similarity``: cosine similarity with the mix's spectrogram (a stem that
  is just the mix, turned down, separated nothing);
* ``in_band``: share of energy where the instrument lives (bass: below 500 Hz;
  drums: the percussive part of a harmonic/percussive split; others: the band of
  the instrument's range up to its fourth harmonic);
* ``flatness``: median spectral flatness of active frames (1 = white noise);
* ``note_support``: share of the stem's notes that the mix's transcription
  confirms, restricted to the stem's pitch range.

and decides "stem" (use it), "mix" (transcribe that part from the mix instead)
or "dropped" (leave the part out), with one plain-English reason for the chat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np

from . import defaults
from .audio import Audio
from .instruments import Instrument
from .notes import Note

#: The three outcomes of the guard.
DECISIONS = ("stem", "mix", "dropped")

_ANALYSIS_RATE_HZ = defaults.ANALYSIS_SAMPLE_RATE_HZ
_FFT_SIZE = 2048
_HOP = 512
_TINY = 1e-12


@dataclass(frozen=True)
class GuardThresholds:
    """Where the guard draws its lines (all tuned on the dev set's clips).

    silent_db: energy relative to the mix under which a stem is dropped.
    max_bleed: cosine similarity with another stem above which both carry one sound.
    max_mix_similarity / mix_copy_below_db: a stem this similar to the mix yet
        this much quieter than it is the mix turned down, not a separation.
    min_in_band: least share of energy in the instrument's own band.
    max_flatness: spectral flatness above which a pitched stem is mostly noise.
    min_note_support: least share of the stem's notes the mix must confirm,
        judged only with at least ``min_notes_to_judge`` notes on both sides.
    onset_tolerance_s: how close a mix note's onset must be to confirm a stem note.
    """

    silent_db: float = defaults.STEM_SILENT_DB
    max_bleed: float = 0.85
    max_mix_similarity: float = 0.97
    mix_copy_below_db: float = -4.0
    min_in_band: float = 0.5
    max_flatness: float = 0.35
    min_note_support: float = 0.3
    min_notes_to_judge: int = 8
    onset_tolerance_s: float = 0.08


@dataclass(frozen=True)
class StemVerdict:
    """The guard's decision on one stem.

    decision: "stem" (transcribe the stem), "mix" (transcribe the part from the
        mix), "dropped" (near-silent or empty: leave the part out).
    reason: one line for the chat, e.g. "bass: used the separated stem".
    numbers: the measures behind it, rounded, for result.json.
    split: set by routing when the stem was considered for a melody /
        accompaniment split (core.split.SplitDecision.to_dict()), else None.
    """

    name: str
    decision: str
    reason: str
    numbers: dict = field(default_factory=dict)
    split: dict | None = None

    @property
    def trusted(self) -> bool:
        """True when the stem's own audio is used."""
        return self.decision == "stem"

    def to_dict(self) -> dict:
        """Plain data for result.json."""
        return asdict(self)


@dataclass(frozen=True)
class Spectrum:
    """Magnitude spectrogram (bins x frames) of mono audio at the analysis rate, and its energy."""

    magnitude: np.ndarray
    energy: float
    sample_rate: int

    @property
    def frequencies_hz(self) -> np.ndarray:
        """Centre frequency of each bin."""
        return np.fft.rfftfreq(_FFT_SIZE, 1.0 / self.sample_rate)


def spectrum(audio: Audio) -> Spectrum:
    """The analysis spectrogram of ``audio`` (mono, resampled to 22050 Hz).

    Args:
        audio: any rate or channel count.

    Returns:
        A Spectrum; compute it once per stem and pass it to several assessments.
    """
    import librosa

    mono = audio.mono().resample(_ANALYSIS_RATE_HZ).samples[0]
    energy = float(np.mean(mono.astype(np.float64) ** 2)) if mono.size else 0.0
    if mono.size < _FFT_SIZE:
        mono = np.pad(mono, (0, _FFT_SIZE - mono.size))
    magnitude = np.abs(librosa.stft(mono, n_fft=_FFT_SIZE, hop_length=_HOP)).astype(np.float32)
    return Spectrum(magnitude, energy, _ANALYSIS_RATE_HZ)


def _as_spectrum(item: Audio | Spectrum) -> Spectrum:
    return item if isinstance(item, Spectrum) else spectrum(item)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    frames = min(a.shape[1], b.shape[1])
    a, b = a[:, :frames].astype(np.float64), b[:, :frames].astype(np.float64)
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.sum(a * b) / denominator) if denominator > _TINY else 0.0


def _band_share(spec: Spectrum, low_hz: float, high_hz: float) -> float:
    power = spec.magnitude.astype(np.float64) ** 2
    freqs = spec.frequencies_hz
    total = power.sum()
    if total <= _TINY:
        return 0.0
    return float(power[(freqs >= low_hz) & (freqs <= high_hz)].sum() / total)


def _percussive_share(spec: Spectrum) -> float:
    import librosa

    harmonic, percussive = librosa.decompose.hpss(spec.magnitude)
    h, p = float(np.sum(harmonic.astype(np.float64) ** 2)), float(np.sum(percussive.astype(np.float64) ** 2))
    return p / (h + p) if h + p > _TINY else 0.0


def _median_flatness(spec: Spectrum) -> float:
    power = spec.magnitude.astype(np.float64) ** 2 + 1e-10
    frame_energy = power.sum(axis=0)
    active = frame_energy > frame_energy.max() * 1e-3 if frame_energy.size else frame_energy
    if not np.any(active):
        return 0.0
    power = power[:, active]
    flatness = np.exp(np.mean(np.log(power), axis=0)) / np.mean(power, axis=0)
    return float(np.median(flatness))


def _midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def in_band_share(stem: Audio | Spectrum, instrument: Instrument | None) -> float:
    """Share of the stem's energy that belongs to ``instrument`` (1.0 when unknown).

    Drums: the percussive part of a harmonic/percussive split. Bass: energy
    below 500 Hz. Others: the band from the instrument's lowest note to the
    fourth harmonic of its highest.
    """
    s = _as_spectrum(stem)
    family = instrument.family if instrument is not None else None
    if family == "drums":
        return _percussive_share(s)
    if family == "bass":
        return _band_share(s, 20.0, 500.0)
    if instrument is not None:
        return _band_share(s, _midi_hz(instrument.low) * 0.9, _midi_hz(instrument.high) * 4.0)
    return 1.0


def measure_stem(stem: Audio | Spectrum, mix: Audio | Spectrum, *, others: Mapping[str, Audio | Spectrum] | None = None,
                 instrument: Instrument | None = None) -> dict[str, float]:
    """Signal measures of one stem against the mix and the other stems.

    Args:
        stem / mix: audio or precomputed Spectrum.
        others: the other stems of the same separation (name -> audio or Spectrum).
        instrument: what the stem should hold; picks the band for ``in_band``.

    Returns:
        {"energy_db", "mix_similarity", "bleed", "bleed_with" (index into sorted
        other names, -1 if none), "in_band", "flatness"}.
    """
    s, m = _as_spectrum(stem), _as_spectrum(mix)
    energy_db = 10.0 * np.log10((s.energy + _TINY) / (m.energy + _TINY))
    numbers: dict[str, float] = {"energy_db": float(energy_db), "mix_similarity": _cosine(s.magnitude, m.magnitude)}
    bleed, bleed_with = 0.0, -1
    for index, name in enumerate(sorted(others or {})):
        similarity = _cosine(s.magnitude, _as_spectrum(others[name]).magnitude)
        if similarity > bleed:
            bleed, bleed_with = similarity, index
    numbers["bleed"] = bleed
    numbers["bleed_with"] = float(bleed_with)
    numbers["in_band"] = in_band_share(s, instrument)
    is_drums = instrument is not None and instrument.family == "drums"
    numbers["flatness"] = 0.0 if is_drums else _median_flatness(s)
    return numbers


def note_agreement(stem_notes: list[Note], mix_notes: list[Note], *, low: int, high: int,
                   onset_tolerance_s: float = 0.08) -> dict[str, float]:
    """How far the mix's transcription confirms the stem's, within the stem's range.

    A stem note counts as confirmed when a mix note in ``low..high`` starts within
    ``onset_tolerance_s`` with the same pitch class (octave slips of either
    transcription are forgiven). Recall against the mix is meaningless (the mix
    holds other instruments in that range too), so only the stem's side is judged.

    Args:
        stem_notes / mix_notes: transcriptions of the stem and of the whole mix.
        low / high: the stem's MIDI range.
        onset_tolerance_s: onset matching window.

    Returns:
        {"stem_notes", "mix_notes_in_range", "note_support" (0..1, 1.0 when no stem notes)}.
    """
    mix_in_range = sorted((n for n in mix_notes if low <= n.pitch <= high), key=lambda n: n.start_s)
    starts = np.array([n.start_s for n in mix_in_range])
    confirmed = 0
    for note in stem_notes:
        lo = np.searchsorted(starts, note.start_s - onset_tolerance_s)
        hi = np.searchsorted(starts, note.start_s + onset_tolerance_s, side="right")
        if any((mix_in_range[i].pitch - note.pitch) % 12 == 0 for i in range(lo, hi)):
            confirmed += 1
    support = confirmed / len(stem_notes) if stem_notes else 1.0
    return {"stem_notes": float(len(stem_notes)), "mix_notes_in_range": float(len(mix_in_range)),
            "note_support": support}


def assess_stem(name: str, stem: Audio | Spectrum, mix: Audio | Spectrum, *,
                others: Mapping[str, Audio | Spectrum] | None = None, instrument: Instrument | None = None,
                other_instruments: Mapping[str, Instrument | None] | None = None,
                stem_notes: list[Note] | None = None, mix_notes: list[Note] | None = None,
                thresholds: GuardThresholds = GuardThresholds()) -> StemVerdict:
    """Decide whether one separated stem is trustworthy.

    Args:
        name: the stem's name ("bass"), used in the reason.
        stem / mix: the stem and the mix it came from (audio or Spectrum).
        others: the other stems of the separation, for the bleed measure. A stem
            that is itself a copy of the mix is left out of it.
        instrument: what the stem should hold (range, band, drums or not).
        other_instruments: what the other stems should hold; when two stems carry
            one sound, the one with less of its energy in its own band is blamed
            (the quieter one when that is even).
        stem_notes / mix_notes: transcriptions of the stem and of the mix; when
            both are given, the stem's notes must be confirmed by the mix's.
        thresholds: where the lines are drawn.

    Returns:
        StemVerdict with decision "stem", "mix" or "dropped", a one-line reason
        and the numbers behind it.
    """
    t = thresholds
    stem_spec, mix_spec = _as_spectrum(stem), _as_spectrum(mix)
    others = {other: _as_spectrum(item) for other, item in (others or {}).items()}
    others = {other: spec for other, spec in others.items()
              if _cosine(spec.magnitude, mix_spec.magnitude) <= t.max_mix_similarity}
    numbers = measure_stem(stem_spec, mix_spec, others=others, instrument=instrument)
    if stem_notes is not None and mix_notes is not None and instrument is not None and instrument.family != "drums":
        numbers.update(note_agreement(stem_notes, mix_notes, low=instrument.low, high=instrument.high,
                                      onset_tolerance_s=t.onset_tolerance_s))
    elif stem_notes is not None:
        numbers["stem_notes"] = float(len(stem_notes))
    rounded = {key: round(value, 3) for key, value in numbers.items()}
    others_sorted = sorted(others)

    def verdict(decision: str, why: str) -> StemVerdict:
        return StemVerdict(name, decision, f"{name}: {why}", rounded)

    if numbers["energy_db"] < t.silent_db:
        return verdict("dropped", f"left out, nearly silent ({-numbers['energy_db']:.0f} dB below the mix)")
    if stem_notes is not None and not stem_notes:
        return verdict("dropped", "left out, no notes found in it")
    if numbers["bleed"] > t.max_bleed and _blamed_for_bleed(
            numbers, stem_spec, others[others_sorted[int(numbers["bleed_with"])]],
            (other_instruments or {}).get(others_sorted[int(numbers["bleed_with"])])):
        partner = others_sorted[int(numbers["bleed_with"])]
        return verdict("mix", f"written from the mix, the stem mostly repeats the {partner} stem "
                              f"(similarity {numbers['bleed']:.2f})")
    if numbers["mix_similarity"] > t.max_mix_similarity and numbers["energy_db"] < t.mix_copy_below_db:
        return verdict("mix", "written from the mix, the separation left it as a quieter copy of the whole mix")
    if numbers["in_band"] < t.min_in_band:
        where = {"drums": "percussive", "bass": "low"}.get(instrument.family if instrument else "", "in-range")
        return verdict("mix", f"written from the mix, only {numbers['in_band']:.0%} of the stem is {where} sound")
    if numbers["flatness"] > t.max_flatness:
        return verdict("mix", f"written from the mix, the stem is mostly noise (flatness {numbers['flatness']:.2f})")
    if ("note_support" in numbers and numbers["stem_notes"] >= t.min_notes_to_judge
            and numbers["mix_notes_in_range"] >= t.min_notes_to_judge
            and numbers["note_support"] < t.min_note_support):
        return verdict("mix", f"written from the mix, only {numbers['note_support']:.0%} of the stem's notes "
                              "are heard in the full recording")
    return verdict("stem", "used the separated stem")


def _blamed_for_bleed(numbers: dict[str, float], stem: Spectrum, partner: Spectrum,
                      partner_instrument: Instrument | None) -> bool:
    """Of two stems carrying one sound, the one that does not belong is the one blamed."""
    partner_in_band = in_band_share(partner, partner_instrument)
    if abs(numbers["in_band"] - partner_in_band) > 0.05:
        return numbers["in_band"] < partner_in_band
    return stem.energy <= partner.energy
