"""Piano reduction of a full mix from two engines: transkun's precision, basic-pitch's recall.

Exports: FusionEngine, FusionParams, Posteriors, match_notes, merge_stutters, fuse_notes, rise_onset, TwoModelEngine.

On a mix of several instruments transkun (a piano model) writes few notes but
nearly all of them real, with well-timed onsets; basic-pitch (trained on many
instruments) finds more of the notes, winds and bowed strings especially, with
more ghosts. The fusion runs both and merges their notes:

0. transkun hears a bowed string's vibrato as the piano key struck again and
   again: a stutter of short notes of one pitch, one per vibrato cycle (5-6 Hz).
   A run of ``stutter_min_run`` or more such notes (each shorter than
   ``stutter_max_s``, starts at most ``stutter_max_ioi_s`` apart) is one held
   note (merge_stutters). On the string quartet 86 notes of transkun's stutters
   are later notes of such runs, 2 of them real; no other clip of the dev set
   (piano, organ, winds, bands) has a run.
1. Notes the engines agree on (same pitch, onsets within ``match_tolerance_s``)
   are kept once, with transkun's onset and velocity and the later of the two
   ends (transkun's piano notes die away early on sustained instruments).
2. A note only one engine found is checked against basic-pitch's posteriors,
   read from the same activations the notes were decoded from (the model runs
   once): if basic-pitch heard its pitch *already sounding* just before the
   onset, it is a re-attack inside a held note (a bow change, a breath), not a
   new note, and is dropped, unless basic-pitch's onset posterior there is
   strong (``resound_onset``): a wind or string repeating a pitch legato, with
   no silence between the notes, still shows a clear attack. Unconfirmed
   basic-pitch notes must also start on a real onset peak (the decoder infers
   some notes from frame energy alone) and must not lie an octave below a
   confirmed note with the same onset (a sub-octave ghost of its harmonics).
3. A kept basic-pitch note that transkun did not confirm starts where its own
   harmonic energy starts rising (rise_onset), not where the model fired:
   on bowed strings and winds basic-pitch's onset comes a median 90 ms after
   the written onset, late enough to miss a 50 ms tolerance (the score's
   quantization mostly absorbs it: written-onset F1 did not move).
4. Same-pitch notes that now overlap are cut where the next one starts.

Measured on the dev set's four ensemble mixes (strings, winds, two bands) against
all pitched ground-truth notes (tests/helpers/engines_eval.py, 50 ms onsets),
note F1 basic-pitch / transkun / fusion: 0.310 / 0.266 / 0.476, 0.617 / 0.410 /
0.761, 0.598 / 0.760 / 0.861, 0.656 / 0.714 / 0.791 (mean 0.545 / 0.538 / 0.722).
Every rule pays on the mean; the sub-octave check alone is worth 0.009. The
thresholds sit on a plateau: match tolerance 50..100 ms, sounding level 0.4..0.6,
onset level 0.4..0.55 and a lookback of 120 ms or a near edge of 30 ms each stay
within 0.01 of the mean. Rule 3 (onset refinement) was measured afterwards on
the same four mixes: 0.489 / 0.761 / 0.861 / 0.792 without it, 0.502 / 0.789 /
0.873 / 0.792 with it (mean +0.013, no mix loses); of the string quartet's
missed notes before it, 8 of 112 were basic-pitch onsets 50..150 ms late
(most of the rest are repeated notes neither engine separates). Its settings
sit on a plateau: rise fraction 0.2..0.35, 3..5 harmonics and a lookback of
50..200 ms all score the same. The full pipeline (bench/run_devset.py) moved
from 0.483 / 0.754 / 0.861 / 0.792 to 0.495 / 0.789 / 0.873 / 0.792, score-note
F1 unchanged; the extra STFT costs ~0.05 s for 30 s of audio. Both engines always run: the mix profile (core.analysis)
of the string and the wind quartet is alike, and transkun helps the winds too.
The exception for strong re-attacks (rule 2's ``resound_onset``) came last: of
the unconfirmed basic-pitch notes the sounding check dropped on the four mixes,
16 of 22 with an onset posterior of 0.7 or more were real (the wind quartet's
repeated clarinet and bassoon notes: 10 of 12); keeping them moved the four
mixes from 0.492 / 0.786 / 0.873 / 0.794 to 0.498 / 0.818 / 0.876 / 0.799
(mean +0.012, no mix loses; 0.65..0.75 alike, 0.6 lets ghosts in, 0.85 keeps
almost none). Adding notes the decoder never made, at strong onset peaks, was
tried too and loses: fewer than half of such candidates are real at any
threshold. Rule 0 then took the string quartet from 0.498 to 0.532 (the other
mixes unchanged); runs of 2..4 notes, notes up to 80..120 ms and starts up to
250..350 ms apart all land within 0.53 +- 0.01 except the 80 ms limit (0.513).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..instruments import Instrument
from ..notes import Note
from .base import ProgressFn, report_progress, sort_notes
from .basic_pitch import FRAME_HOP_SAMPLES, MODEL_LOWEST_PITCH, MODEL_SAMPLE_RATE_HZ, BasicPitchRun, params_for
from .reattack import HarmonicSpectrum

if TYPE_CHECKING:
    from .basic_pitch import BasicPitchEngine
    from .transkun import TranskunEngine

#: Share of the fusion's progress given to basic-pitch (it costs ~1/30 of transkun's time).
BASIC_PITCH_PROGRESS_SHARE = 0.05
#: Progress reached when transkun is done; the merge takes the rest.
TRANSKUN_PROGRESS_END = 0.98


@dataclass(frozen=True, slots=True)
class FusionParams:
    """How the two engines' notes are merged (see the module docstring).

    match_tolerance_s: same-pitch onsets this close are one note found by both engines.
    sounding_level: mean basic-pitch frame posterior, ``lookback_s`` before an
        unconfirmed note's onset, at or above which its pitch was already sounding
        (the note is dropped as a re-attack).
    lookback_s: (far, near) edges of that window, in seconds before the onset; the
        near edge leaves out the frames where a real attack's own rise shows.
    onset_level: peak basic-pitch onset posterior within ``onset_window_s`` of an
        unconfirmed basic-pitch note's start below which it is dropped.
    onset_window_s: half-width of that window.
    octave_window_s: an unconfirmed basic-pitch note one octave below a confirmed
        note whose onset is this close is dropped as a sub-octave ghost.
    rise_lookback_s: how far before an unconfirmed basic-pitch note's onset the
        start of its harmonic energy's rise is looked for (see rise_onset).
    rise_fraction: where on that rise (0 its foot, 1 its top, in dB) the onset is put.
    rise_harmonics: harmonics summed into the note's energy envelope.
    stutter_min_run, stutter_max_s, stutter_max_ioi_s: a run of at least this many
        transkun notes of one pitch, each shorter than stutter_max_s, starts at
        most stutter_max_ioi_s apart, is one held note (rule 0, merge_stutters).
    resound_onset: an unconfirmed basic-pitch note whose onset posterior peaks at
        or above this is kept even where its pitch was already sounding (a
        repeated note played legato).
    """

    match_tolerance_s: float = 0.07
    sounding_level: float = 0.5
    lookback_s: tuple[float, float] = (0.095, 0.045)
    onset_level: float = 0.5
    onset_window_s: float = 0.035
    octave_window_s: float = 0.05
    rise_lookback_s: float = 0.1
    rise_fraction: float = 0.3
    rise_harmonics: int = 5
    resound_onset: float = 0.7
    stutter_min_run: int = 3
    stutter_max_s: float = 0.1
    stutter_max_ioi_s: float = 0.3


class Posteriors:
    """basic-pitch's frame and onset posteriors, queried by pitch and time.

    Args:
        frames, onsets: float arrays of shape (n_frames, 88) as returned by
            BasicPitchEngine.activations (lowest pitch first).
        frames_per_s: frame rate; frame i is centred at i / frames_per_s seconds.
        lowest_pitch: MIDI pitch of column 0.

    Pitches outside the columns, and times outside the frames, read as silence.
    """

    def __init__(self, frames: np.ndarray, onsets: np.ndarray, *,
                 frames_per_s: float = MODEL_SAMPLE_RATE_HZ / FRAME_HOP_SAMPLES,
                 lowest_pitch: int = MODEL_LOWEST_PITCH) -> None:
        if frames.shape != onsets.shape or frames.ndim != 2:
            raise ValueError(f"frames {frames.shape} and onsets {onsets.shape} must be equal 2-D shapes")
        self.frames = frames
        self.onsets = onsets
        self.frames_per_s = float(frames_per_s)
        self.lowest_pitch = int(lowest_pitch)

    def _column(self, pitch: int) -> int | None:
        col = int(pitch) - self.lowest_pitch
        return col if 0 <= col < self.frames.shape[1] else None

    def _span(self, start_s: float, end_s: float) -> slice:
        """Frames whose centres lie in [start_s, end_s], clipped to the signal."""
        n = self.frames.shape[0]
        first = max(0, int(np.ceil(start_s * self.frames_per_s - 1e-9)))
        last = min(n - 1, int(np.floor(end_s * self.frames_per_s + 1e-9)))
        return slice(first, max(first, last + 1))

    def frame_mean(self, pitch: int, start_s: float, end_s: float) -> float:
        """Mean frame posterior of ``pitch`` over [start_s, end_s] (0 where nothing is there)."""
        col = self._column(pitch)
        values = self.frames[self._span(start_s, end_s), col] if col is not None else ()
        return float(np.mean(values)) if len(values) else 0.0

    def onset_peak(self, pitch: int, start_s: float, end_s: float) -> float:
        """Highest onset posterior of ``pitch`` over [start_s, end_s] (0 where nothing is there)."""
        col = self._column(pitch)
        values = self.onsets[self._span(start_s, end_s), col] if col is not None else ()
        return float(np.max(values)) if len(values) else 0.0


def rise_onset(spectrum: HarmonicSpectrum, pitch: int, start_s: float, *, lookback_s: float = 0.1,
               fraction: float = 0.3, n_harmonics: int = 5) -> float:
    """Onset of a note at the rise of its own harmonic energy; never later than ``start_s``.

    The envelope is the summed magnitude of the pitch's first ``n_harmonics``
    harmonics in dB (HarmonicSpectrum.evidence). From its highest frame within
    the three frames after ``start_s`` it is followed back while it keeps
    falling (at most ``lookback_s``), to the foot of the rise; the onset is the
    first frame after the foot at ``fraction`` of the way up in dB. A slow bow
    or breath attack peaks late, so basic-pitch fires near the top of the rise;
    the written onset sits near its foot (measured on the dev set's mixes, see
    the module docstring).

    Args:
        spectrum: the recording's HarmonicSpectrum (frame i centred at i / frame_rate s).
        pitch: MIDI pitch of the note.
        start_s: the note's decoded onset.
        lookback_s, fraction, n_harmonics: as in FusionParams (rise_*).

    Returns:
        The refined onset in seconds (on the spectrum's frame grid), or ``start_s``
        itself when the envelope does not rise into it from an earlier frame
        (silence, a steady tone) or the note lies outside the spectrum.
    """
    fps = spectrum.frame_rate
    s = int(round(start_s * fps))
    if s < 0 or s >= spectrum.n_frames:
        return start_s
    lo = max(0, s - int(round(lookback_s * fps)))
    ev = spectrum.evidence(pitch, lo, min(spectrum.n_frames, s + 3), n_harmonics)
    if ev is None:
        return start_s
    env = ev[0]
    t = s - lo
    k = t + int(np.argmax(env[t:]))
    top = float(env[k])
    while k > 0 and env[k - 1] < env[k]:
        k -= 1
    threshold = env[k] + fraction * (top - env[k])
    k += int(np.argmax(env[k:] >= threshold))
    return (lo + k) / fps if lo + k < s else start_s


def match_notes(a: list[Note], b: list[Note], tolerance_s: float) -> list[tuple[int, int]]:
    """Pair notes of ``a`` and ``b`` that are one note: same pitch, onsets within ``tolerance_s``.

    One-to-one; the closest onsets are paired first (ties: earlier notes first).

    Args:
        a, b: two note lists, any order.
        tolerance_s: largest onset difference of a pair.

    Returns:
        (index in a, index in b) pairs, sorted by the index in a.
    """
    by_pitch: dict[int, list[int]] = {}
    for j, n in enumerate(b):
        by_pitch.setdefault(n.pitch, []).append(j)
    candidates = []
    for i, n in enumerate(a):
        for j in by_pitch.get(n.pitch, ()):
            gap = abs(n.start_s - b[j].start_s)
            if gap <= tolerance_s:
                candidates.append((gap, i, j))
    candidates.sort()
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return sorted(pairs)


def fuse_notes(transkun_notes: list[Note], basic_pitch_notes: list[Note], posteriors: Posteriors,
               params: FusionParams = FusionParams(), spectrum: HarmonicSpectrum | None = None) -> list[Note]:
    """Merge the two engines' notes of one recording (rules in the module docstring).

    Args:
        transkun_notes: transkun's notes.
        basic_pitch_notes: basic-pitch's notes, decoded from ``posteriors``.
        posteriors: basic-pitch's activations of the same audio.
        params: merge settings.
        spectrum: the recording's HarmonicSpectrum, to move unconfirmed
            basic-pitch onsets to the rise of their energy (rule 3); None keeps them.

    Returns:
        Notes sorted by start, then pitch; no two of one pitch overlap.
    """
    far, near = params.lookback_s
    transkun_notes = merge_stutters(transkun_notes, min_run=params.stutter_min_run, max_s=params.stutter_max_s,
                                    max_ioi_s=params.stutter_max_ioi_s)

    def already_sounding(n: Note) -> bool:
        return posteriors.frame_mean(n.pitch, n.start_s - far, n.start_s - near) >= params.sounding_level

    pairs = match_notes(transkun_notes, basic_pitch_notes, params.match_tolerance_s)
    confirmed = []
    for i, j in pairs:
        tk, bp = transkun_notes[i], basic_pitch_notes[j]
        confirmed.append(replace(tk, end_s=max(tk.end_s, bp.end_s)))
    matched_tk = {i for i, _ in pairs}
    matched_bp = {j for _, j in pairs}
    kept = confirmed + [n for i, n in enumerate(transkun_notes)
                        if i not in matched_tk and not already_sounding(n)]

    # Onsets of kept notes by pitch, for the sub-octave check below.
    onsets_by_pitch: dict[int, list[float]] = {}
    for n in kept:
        onsets_by_pitch.setdefault(n.pitch, []).append(n.start_s)

    def under_an_octave(n: Note) -> bool:
        return any(abs(t - n.start_s) <= params.octave_window_s for t in onsets_by_pitch.get(n.pitch + 12, ()))

    w = params.onset_window_s
    for j, n in enumerate(basic_pitch_notes):
        if j in matched_bp:
            continue
        attack = posteriors.onset_peak(n.pitch, n.start_s - w, n.start_s + w)
        if attack < params.onset_level or under_an_octave(n):
            continue
        if already_sounding(n) and attack < params.resound_onset:
            continue
        if spectrum is not None:
            n = replace(n, start_s=rise_onset(spectrum, n.pitch, n.start_s, lookback_s=params.rise_lookback_s,
                                              fraction=params.rise_fraction, n_harmonics=params.rise_harmonics))
        kept.append(n)
    return _cut_overlaps(kept)


def merge_stutters(notes: list[Note], *, min_run: int = 3, max_s: float = 0.1, max_ioi_s: float = 0.3) -> list[Note]:
    """Join runs of short, quickly repeated notes of one pitch into one held note (rule 0).

    Args:
        notes: transcribed notes.
        min_run: shortest run that is joined.
        max_s: every note of a run is shorter than this.
        max_ioi_s: consecutive starts in a run are at most this far apart.

    Returns:
        The notes, each run replaced by one note from its first start to its
        latest end (the first note's velocity), sorted by start.
    """
    out: list[Note] = []
    by_pitch: dict[int, list[Note]] = {}
    for n in sorted(notes, key=lambda n: n.start_s):
        by_pitch.setdefault(n.pitch, []).append(n)

    def close(run: list[Note]) -> None:
        if len(run) >= min_run:
            out.append(replace(run[0], end_s=max(n.end_s for n in run)))
        else:
            out.extend(run)

    for same in by_pitch.values():
        run: list[Note] = []
        for n in same:
            short = n.end_s - n.start_s < max_s
            if run and short and n.start_s - run[-1].start_s <= max_ioi_s:
                run.append(n)
                continue
            close(run)
            run = [n] if short else []
            if not short:
                out.append(n)
        close(run)
    return sort_notes(out)


def _cut_overlaps(notes: list[Note]) -> list[Note]:
    """End each note no later than the next note of its pitch starts."""
    out: list[Note] = []
    last_of_pitch: dict[int, int] = {}
    for n in sort_notes(notes):
        k = last_of_pitch.get(n.pitch)
        if k is not None and out[k].end_s > n.start_s:
            prev = out[k]
            out[k] = replace(prev, end_s=max(n.start_s, prev.start_s + 1e-3))
        last_of_pitch[n.pitch] = len(out)
        out.append(n)
    return sort_notes(out)


def _ignore_progress(fraction: float) -> None:
    """A progress callback that drops what it is told."""


class TwoModelEngine:
    """An engine made of the cache's basic-pitch and transkun; it loads no model of its own.

    transcribe() splits the progress (basic-pitch's model takes the first
    BASIC_PITCH_PROGRESS_SHARE, transkun runs up to TRANSKUN_PROGRESS_END, the
    subclass's own last step the rest) and calls ``_run``. FusionEngine with
    ``concurrent=True`` runs basic-pitch on a second thread while transkun runs,
    and reports its share at once when transkun starts.

    Args:
        basic_pitch: a loaded BasicPitchEngine (shared with the cache).
        transkun: a loaded TranskunEngine (shared with the cache).
    """

    name = ""

    def __init__(self, basic_pitch: BasicPitchEngine, transkun: TranskunEngine) -> None:
        self.basic_pitch = basic_pitch
        self.transkun = transkun

    def transcribe(
        self,
        samples_mono: np.ndarray,
        sample_rate: int,
        *,
        instrument: Instrument | None = None,
        progress: ProgressFn | None = None,
        basic_pitch_run: BasicPitchRun | None = None,
    ) -> list[Note]:
        """Transcribe with both models (what each engine makes of them: its class docstring).

        Args:
            samples_mono: float32 mono audio.
            sample_rate: its rate in Hz.
            instrument: range and settings, passed to both models (None: the whole
                keyboard, generic settings, as for a piano reduction).
            progress: fraction-done callback.
            basic_pitch_run: basic-pitch's run over this same audio (auto mode's probe):
                its posteriors are decoded again with this engine's settings instead of
                running the model a second time. The notes are the same either way.

        Returns:
            Notes in seconds of the input, sorted by start.
        """
        share = BASIC_PITCH_PROGRESS_SHARE

        def bp_progress(f: float) -> None:
            report_progress(progress, share * f)

        def tk_progress(f: float) -> None:
            report_progress(progress, share + (TRANSKUN_PROGRESS_END - share) * f)

        notes = self._run(samples_mono, sample_rate, instrument, bp_progress, tk_progress, basic_pitch_run)
        report_progress(progress, 1.0)
        return notes

    def _basic_pitch(self, samples_mono: np.ndarray, sample_rate: int, instrument: Instrument | None,
                     progress: ProgressFn, run: BasicPitchRun | None) -> BasicPitchRun:
        """basic-pitch with ``instrument``'s settings: decoded from ``run`` when given, else a model run."""
        params = params_for(instrument)
        if run is None:
            return self.basic_pitch.transcribe_with_activations(samples_mono, sample_rate, params=params,
                                                                progress=progress)
        progress(1.0)
        return run._replace(notes=self.basic_pitch.redecode(run.frames, run.onsets, run.spectrum, params=params))

    def _run(self, samples_mono: np.ndarray, sample_rate: int, instrument: Instrument | None,
             bp_progress: ProgressFn, tk_progress: ProgressFn, basic_pitch_run: BasicPitchRun | None) -> list[Note]:
        raise NotImplementedError


class FusionEngine(TwoModelEngine):
    """basic-pitch and transkun on the same audio, merged (for piano reductions of mixes).

    Args:
        basic_pitch, transkun: as for TwoModelEngine.
        params: merge settings (defaults are the measured best).
        concurrent: run basic-pitch on a second thread while transkun runs (same
            notes). Off by default: on 2 busy cores it cost about 35 % more process
            CPU time over the dev set's four mixes (both libraries' thread pools
            contend) and its wall-time gain could not be shown (bench/speed.py).
    """

    name = "fusion"

    def __init__(self, basic_pitch: BasicPitchEngine, transkun: TranskunEngine,
                 params: FusionParams | None = None, *, concurrent: bool = False) -> None:
        super().__init__(basic_pitch, transkun)
        self.params = params or FusionParams()
        self.concurrent = bool(concurrent)

    def _run(self, samples_mono: np.ndarray, sample_rate: int, instrument: Instrument | None,
             bp_progress: ProgressFn, tk_progress: ProgressFn, basic_pitch_run: BasicPitchRun | None) -> list[Note]:
        if not self.concurrent or basic_pitch_run is not None:
            # basic-pitch's run also yields the STFT (on its frame grid) for the onset refinement.
            bp_notes, frames, onsets, spectrum = self._basic_pitch(samples_mono, sample_rate, instrument,
                                                                   bp_progress, basic_pitch_run)
            bp_progress(1.0)
            tk_notes = self.transkun.transcribe(samples_mono, sample_rate, instrument=instrument,
                                                progress=tk_progress)
            return fuse_notes(tk_notes, bp_notes, Posteriors(frames, onsets), self.params, spectrum)
        # basic-pitch runs on its own thread while transkun runs here: both libraries
        # release the GIL inside their kernels, and transkun's Python-side CRF decoding
        # leaves a core idle that basic-pitch can use. Each engine keeps its own lock,
        # so the notes are the same as run one after the other.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="basic-pitch") as pool:
            # basic-pitch's run also yields the STFT (on its frame grid) for the onset refinement.
            # Its progress is not reported from that thread (the reporter is not
            # thread-safe, and two interleaved counters would not be monotonic).
            bp_future = pool.submit(self.basic_pitch.transcribe_with_activations, samples_mono, sample_rate,
                                    params=params_for(instrument), progress=_ignore_progress)
            tk_progress(0.0)
            tk_notes = self.transkun.transcribe(samples_mono, sample_rate, instrument=instrument,
                                                progress=tk_progress)
            bp_notes, frames, onsets, spectrum = bp_future.result()
        return fuse_notes(tk_notes, bp_notes, Posteriors(frames, onsets), self.params, spectrum)
