"""Auto mode from what the engines hear: one line, chords, or drums; and which engine writes it.

Exports: NoteStream, note_stream, Probe, listen, line_instrument, LineChoice, choose_line_engine,
attack_count, check_engine, kind_of, kind_reason, solo_instrument, sung, LINE_MAX_OVERLAP, CHORDS_MIN_OVERLAP, SUNG_DEVIATION, FALLBACK_RATIO.

A recording's spectrum says little that holds across timbres: a singer's breath and
vibrato, a saxophone's noise and a real piano's room all looked like "several instruments"
to the spectral profile (core.analysis). The notes themselves do not depend on timbre: a
monophonic note stream is a solo line whatever it sounds like. So auto mode first lets
basic-pitch (cheap: about 0.06x real time) listen with generic settings (the probe), and
reads the note stream:

- ``overlap``: the share of sounding time in which two or more notes sound at once, and
  ``together``: the share of notes that start with another note (within TOGETHER_S, at
  an interval that is not a harmonic: an octave or a twelfth is usually the model's own ghost). One
  line stays under LINE_MAX_OVERLAP and LINE_MAX_TOGETHER (its notes only touch at legato
  joins, in a plucked string's ring or a room's tail); chords and counterpoint reach
  CHORDS_MIN_OVERLAP or LINE_MAX_TOGETHER. Between the two the spectral profile's
  struck/keyboard cues decide.
- a monophonic line is transcribed by the engine that suits how its pitch behaves: the
  pitch tracker (core.engines.mono) when the pitch strays from the semitones like a
  singer's (vibrato, scoops, glides: SUNG_DEVIATION), basic-pitch with melody settings
  when it holds steady pitches (flute, fiddle, whistle, guitar line), which keeps fast
  runs and repeated notes the tracker's vibrato smoothing would merge;
- whatever engine is chosen, when it hears far fewer notes than the other engine heard
  (FALLBACK_RATIO), the other one's notes are written and the reply says so.

The probe's activations are kept, so the melody settings re-decode them without running
the model again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from .instruments import INSTRUMENTS, Instrument
from .notes import Note
from .tuning import Tuning, on_grid

#: Frame length (s) the note stream's overlap is measured on.
FRAME_S = 0.02
#: Share of sounding frames with two or more notes below which a note stream is one line.
#: Measured with the probe's settings on the dev set, the real set and the rendered train
#: split (30 pieces x 2 soundfonts, clean / room / phone): single lines 0.00-0.35 (room
#: tails and phone codecs raise it; 0.25 and up in 3 of 63), a real singer 0.007; chords
#: and ensembles 0.45-0.99, except a short real piano excerpt at 0.28 (7 notes, broken chords).
LINE_MAX_OVERLAP = 0.25
#: Overlap from which the notes are chords or counterpoint whatever the spectrum says.
CHORDS_MIN_OVERLAP = 0.40
#: Onsets this close (s) start together.
TOGETHER_S = 0.05
#: Intervals (semitones) at which a note starting with another may be that note's own
#: harmonic heard as a note (a model's ghost: octave, twelfth, two octaves, ...), so they
#: do not make a chord. A real chord always has a third, fourth, fifth or sixth in it too.
_HARMONIC_INTERVALS = np.asarray([0, 12, 19, 24, 28, 31, 36])
#: Share of notes starting together with another from which the stream is chords: single
#: lines 0.00-0.13 on the same sets, ensembles 0.47-0.91, keyboard pieces 0.42-0.91 (one
#: playing a single line 0.00). Before harmonic intervals were left out, phone and room
#: renders of lines reached 0.36 (ghost twelfths), which sat against the ensembles.
LINE_MAX_TOGETHER = 0.30
#: Below this share of notes starting together, overlapping notes are one line's tails (a
#: release, a room, a codec) however much they overlap, unless the instrument rings
#: (struck and keyboard- or guitar-like). Lines reach 0.13 on the train split; the validation
#: renders showed a TimGM6mb alto sax with long release tails at overlap 0.40, together ~0.
LINE_TAILS_TOGETHER = 0.15
#: Semitone deviation (MonoLine.deviation) from which a line's pitch behaves like a voice's.
#: Steady-pitch instruments measure 0.07-0.10, a real singer 0.21, a choir 0.15.
SUNG_DEVIATION = 0.14
#: An engine that hears fewer than this share of the attacks (onsets, chord notes and
#: octave ghosts counted once: attack_count) the other engine heard is replaced by the
#: other (when the other heard at least FALLBACK_MIN_NOTES). Counting attacks, not notes,
#: keeps an organ's octave ghosts or a chord's extra notes from looking like more music.
FALLBACK_RATIO = 0.5
FALLBACK_MIN_NOTES = 6
#: Share of percussive energy over which, with only short notes heard, a recording is drums alone.
DRUMS_PERCUSSIVE = 0.5
DRUMS_MAX_NOTE_S = 0.15


@dataclass(frozen=True)
class NoteStream:
    """How a note stream is laid out in time and pitch.

    notes: how many.
    overlap: share of sounding FRAME_S frames in which two or more notes sound.
    together: share of notes that start within TOGETHER_S of another note at an interval
        that is not a harmonic of one of them (_HARMONIC_INTERVALS).
    low / high / median: 5th, 95th percentile and median pitch (MIDI).
    median_duration_s: median note length.
    """

    notes: int
    overlap: float
    together: float
    low: float
    high: float
    median: float
    median_duration_s: float

    @property
    def line(self) -> bool:
        """One note at a time: a solo line."""
        return self.notes > 0 and self.overlap < LINE_MAX_OVERLAP and self.together < LINE_MAX_TOGETHER

    @property
    def chords(self) -> bool:
        """Notes that sound or start together much of the time: chords or several voices."""
        return self.overlap >= CHORDS_MIN_OVERLAP or self.together >= LINE_MAX_TOGETHER

    def to_dict(self) -> dict[str, float]:
        return {"notes": self.notes, "overlap": round(self.overlap, 3), "together": round(self.together, 3), "low": round(self.low, 1),
                "high": round(self.high, 1), "median": round(self.median, 1),
                "median_duration_s": round(self.median_duration_s, 3)}


def note_stream(notes: list[Note]) -> NoteStream:
    """Measure a note stream (see NoteStream).

    Args:
        notes: any notes, e.g. the probe's.

    Returns:
        A NoteStream; an empty one (0 notes, overlap 0) for no notes.
    """
    if not notes:
        return NoteStream(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    end = max(n.end_s for n in notes)
    count = np.zeros(int(np.ceil(end / FRAME_S)) + 1, dtype=np.int32)
    for n in notes:
        a, b = int(round(n.start_s / FRAME_S)), int(round(n.end_s / FRAME_S))
        count[a:max(b, a + 1)] += 1
    sounding = count > 0
    pitches = np.asarray([n.pitch for n in notes], dtype=float)
    onsets = np.asarray([n.start_s for n in notes], dtype=float)
    order = np.argsort(onsets, kind="stable")
    onsets, by_onset = onsets[order], pitches[order]
    lo = np.searchsorted(onsets, onsets - TOGETHER_S, side="left")
    hi = np.searchsorted(onsets, onsets + TOGETHER_S, side="right")
    with_another = np.zeros(len(notes), dtype=bool)
    for i in range(len(notes)):
        interval = np.abs(by_onset[lo[i]:hi[i]] - by_onset[i])
        with_another[i] = bool(np.any(~np.isin(interval, _HARMONIC_INTERVALS)))
    return NoteStream(
        notes=len(notes),
        overlap=float(np.mean(count[sounding] >= 2)),
        together=float(np.mean(with_another)),
        low=float(np.percentile(pitches, 5)),
        high=float(np.percentile(pitches, 95)),
        median=float(np.median(pitches)),
        median_duration_s=float(np.median([n.end_s - n.start_s for n in notes])),
    )


@dataclass
class Probe:
    """basic-pitch's first listen: its notes with generic settings and what they came from.

    notes: the notes (recording time).
    stream: their NoteStream.
    redecode: notes for other decoding settings (an Instrument, or explicit
        BasicPitchParams as ``params=``) without running the model again.
    run: the model's run itself (basic_pitch.BasicPitchRun, on the tuning grid, as
        ``transcribe_in_tune`` hands audio to an engine), for an engine that needs
        basic-pitch on the same recording (the fusion); None for an engine without one.
    """

    notes: list[Note]
    stream: NoteStream
    redecode: Callable[..., list[Note]]
    run: Any = None


def listen(engine: Any, samples_mono: np.ndarray, sample_rate: int, tuning: Tuning | None) -> Probe:
    """Run basic-pitch once with generic settings (the probe).

    Args:
        engine: a basic-pitch engine (``transcribe_with_activations`` and ``decode`` are
            used when it has them; otherwise ``transcribe`` runs again per re-decode).
        samples_mono: the recording.
        sample_rate: its rate.
        tuning: its offset from A440; the engine hears it moved onto the grid.

    Returns:
        A Probe.
    """
    audio, in_recording_time = on_grid(samples_mono, sample_rate, tuning)
    run = None
    if hasattr(engine, "transcribe_with_activations") and hasattr(engine, "redecode"):
        run = engine.transcribe_with_activations(audio, sample_rate)
        notes, frames, onsets, spectrum = run

        def redecode(instrument: Instrument | None = None, params: Any = None) -> list[Note]:
            return in_recording_time(engine.redecode(frames, onsets, spectrum, instrument=instrument, params=params))
    else:
        notes = engine.transcribe(audio, sample_rate)

        def redecode(instrument: Instrument | None = None, params: Any = None) -> list[Note]:
            kwargs = {"params": params} if params is not None else {}
            return in_recording_time(engine.transcribe(audio, sample_rate, instrument=instrument, **kwargs))
    notes = in_recording_time(notes)
    return Probe(notes=notes, stream=note_stream(notes), redecode=redecode, run=run)


def sung(mono: Any, samples_mono: np.ndarray, sample_rate: int) -> float:
    """The semitone deviation of the strongest pitch in a recording (MonoLine.deviation).

    On a choir the tracker follows the loudest voice at each moment; voices stray from the
    semitones (vibrato, scoops) where synthesized or keyboard ensembles hold them.
    """
    return float(mono.transcribe_line(samples_mono, sample_rate).deviation)


def line_instrument(stream: NoteStream) -> Instrument:
    """The staff for a solo line nobody named: treble, or bass clef for a low line."""
    return INSTRUMENTS["low-melody" if stream.median < 55 else "melody"]


@dataclass(frozen=True)
class LineChoice:
    """Which engine wrote a solo line, and why (a sentence a user can read, or "")."""

    notes: list[Note]
    engine: str
    why: str
    deviation: float | None = None


def choose_line_engine(samples_mono: np.ndarray, sample_rate: int, instrument: Instrument, *,
                       mono: Any, basic_pitch_notes: Callable[[], list[Note]], tuning: Tuning | None,
                       prefer_mono: bool = False, progress: Callable[[float], None] | None = None) -> LineChoice:
    """Transcribe one melody line with the pitch tracker or basic-pitch, whichever suits it.

    Args:
        samples_mono / sample_rate: the recording.
        instrument: the line's instrument (its range bounds the tracker).
        mono: the pitch-tracker engine (``transcribe_line``).
        basic_pitch_notes: basic-pitch's notes for this line (called once, lazily).
        tuning: the recording's offset from A440.
        prefer_mono: the instrument is a voice: the tracker writes it unless it hears far less.
        progress: fraction-done callback.

    Returns:
        A LineChoice. The tracker is chosen when the pitch strays like a singer's
        (deviation >= SUNG_DEVIATION) or prefer_mono; either engine is replaced by the
        other when it hears far fewer notes (FALLBACK_RATIO).
    """
    audio, in_recording_time = on_grid(samples_mono, sample_rate, tuning)
    line = mono.transcribe_line(audio, sample_rate, instrument=instrument, progress=progress)
    tracked = in_recording_time(line.notes)
    heard = basic_pitch_notes()
    sung = line.deviation >= SUNG_DEVIATION
    if sung or prefer_mono:
        why = ("its pitch glides and wavers like a voice, so a pitch tracker wrote the notes" if sung
               else "a voice, so a pitch tracker wrote the notes")
        choice = LineChoice(tracked, "mono", why, line.deviation)
        other = LineChoice(heard, "basic-pitch", "", line.deviation)
    else:
        choice = LineChoice(heard, "basic-pitch", "", line.deviation)
        other = LineChoice(tracked, "mono", "", line.deviation)
    fallback = check_engine(choice.engine, attack_count(choice.notes), other.engine, attack_count(other.notes))
    if fallback:
        return replace(other, why=fallback)
    return choice


_ENGINE_WORDS = {"mono": "the pitch tracker", "basic-pitch": "basic-pitch", "transkun": "the piano model",
                 "organ": "the piano model",
                 "fusion": "the two-model reduction"}


def attack_count(notes: list[Note]) -> int:
    """How many attacks a note list holds: onsets within TOGETHER_S of the previous one are one."""
    onsets = np.sort(np.asarray([n.start_s for n in notes], dtype=float))
    if onsets.size == 0:
        return 0
    return int(1 + np.count_nonzero(np.diff(onsets) > TOGETHER_S))


def check_engine(chosen: str, chosen_count: int, other: str, other_count: int) -> str:
    """Whether the chosen engine heard far fewer attacks than the other (then: a reason to switch).

    Args:
        chosen / other: engine names.
        chosen_count / other_count: how many attacks each heard (attack_count).

    Returns:
        "" to keep the chosen engine's notes, else a sentence for the user saying why the
        other engine's notes are written instead.
    """
    if other_count < FALLBACK_MIN_NOTES or chosen_count >= FALLBACK_RATIO * other_count:
        return ""
    return (f"{_ENGINE_WORDS.get(chosen, chosen)} heard only {chosen_count} note onsets where "
            f"{_ENGINE_WORDS.get(other, other)} heard {other_count}, so {_ENGINE_WORDS.get(other, other)}'s notes "
            f"are written")


#: What a single recording is, as auto mode writes it: see kind_of.
KINDS = ("drums", "band", "line", "keyboard", "organ", "plucked", "ensemble")


def kind_of(profile: Any, stream: NoteStream | None) -> str:
    """What a single recording is, from the probe's note stream and the spectral profile.

    Args:
        profile: core.analysis.MixProfile of the recording.
        stream: the probe's NoteStream (None when no probe ran: the profile decides alone).

    Returns:
        One of KINDS. The note stream decides line against chords; the profile only says
        how the notes sound (struck, steady, drums) and settles the band between the two
        overlap thresholds.
    """
    if stream is None or stream.notes == 0:
        if profile.is_band:
            return "band"
        if profile.monophonic:
            return "line"
        if profile.keyboard_like:
            return "organ" if profile.steady else "keyboard"
        return "plucked" if profile.plucked_solo else "ensemble"
    if (profile.percussive_ratio >= DRUMS_PERCUSSIVE and profile.kick_ratio >= 0.02
            and stream.median_duration_s < DRUMS_MAX_NOTE_S and not stream.line):
        return "drums"
    if stream.line:
        return "line"
    wide = (stream.high - stream.low >= 24 or stream.low < 40
            or profile.high_pitch - profile.low_pitch >= 28 or profile.low_pitch < 40)
    if profile.is_band:
        return "band"
    tails_only = not stream.chords or stream.together < LINE_TAILS_TOGETHER
    if tails_only and not (profile.struck and (profile.keyboard_like or profile.plucked_solo)):
        # Notes that overlap without starting together: in a struck or plucked instrument the
        # strings ring on under the next note (broken chords, pedal); in a sustained one it is
        # a legato line in a room or through a phone's codec.
        return "line"
    if wide and (profile.struck or profile.steady) and (profile.keyboard_like or stream.chords):
        return "organ" if profile.steady else "keyboard"
    if profile.struck and stream.low >= 38 and stream.high <= 90:
        return "plucked"
    return "ensemble"


def kind_reason(kind: str) -> str:
    """Why auto mode wrote a recording of this kind the way it did (true of the recording)."""
    return {
        "drums": "it sounds like drums alone, short unpitched hits, so it's written on a percussion staff",
        "line": "it plays one note at a time, so it's written as a single melody line",
        "keyboard": "it plays chords over a wide range, struck like a piano, so it's written on a grand staff",
        "organ": "it plays held chords over a wide range, like an organ, so it's written on a grand staff",
        "plucked": "it plays a few notes at a time that ring and die away, like a guitar",
        "ensemble": "several voices sound together, so they're reduced to a grand staff",
    }[kind]


def solo_instrument(kind: str, stream: NoteStream | None, profile: Any) -> Instrument:
    """The instrument a solo part of this kind is written for when nobody named one."""
    if kind == "drums":
        return INSTRUMENTS["drums"]
    if kind in ("keyboard", "organ"):
        return INSTRUMENTS["organ" if kind == "organ" else "piano"]
    if kind == "plucked":
        return INSTRUMENTS["guitar"]
    if kind == "line":
        if stream is not None and stream.notes:
            return line_instrument(stream)
        return INSTRUMENTS["low-melody" if profile.median_pitch < 55 else "melody"]
    return INSTRUMENTS["piano"]
