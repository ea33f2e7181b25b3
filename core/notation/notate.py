"""The notate() entry point: Tracks in, Notation (score + analysis) out.

Exports: Notation, MidiPart, notate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from music21 import stream

from ..errors import NoNotesError, OptionsError
from ..instruments import INSTRUMENTS, Instrument
from ..notes import Track
from ..options import Level, Options
from ..progress import Reporter, Stage
from . import arrange, chords as chord_mod, keys, meter, quantize, rhythm, tab as tab_mod
from .build import Meter, Staff, TempoMark, build_score
from .quantize import QNote

#: Tempo changes smaller than this (relative) do not start a new tempo-map entry.
TEMPO_CHANGE_RATIO = 0.06
#: Tempo changes at least this large (relative, lasting a bar) get a printed metronome mark.
TEMPO_MARK_RATIO = 0.12
#: Tempo-map entries at most this many bars (or GRADUAL_MAX_GAP_Q quarters, if more) apart
#: that keep moving the same way are one gradual change ("rit." / "accel."), not a
#: metronome mark every bar or two.
GRADUAL_MAX_GAP_BARS = 2
GRADUAL_MAX_GAP_Q = 8.0
LAYOUTS = ("solo", "piano", "ensemble")


@dataclass
class MidiPart:
    """Quantized notes of one part for score.mid."""

    name: str
    program: int
    is_drum: bool
    notes: list[QNote]


@dataclass
class Notation:
    """A score and what was found about the music.

    score: music21 Score (parts with clefs, instruments, key, meter, tempo marks).
    tempo_bpm: main tempo in quarter notes per minute.
    tempo_map: [(quarter offset, quarter bpm)], first entry at 0.
    time_signature: "6/8".  key: "D minor".  pickup_quarters: length of the pickup bar.
    bars: number of bars (pickup included).  parts: [{name, instrument, clef,
    note_count, source, engine}].  warnings: for the user.  chords: chord symbols written.
    seconds_to_quarters: maps performance time to score time (for aligned outputs).
    swing: where the swung second eighths sat in the beat (written straight under
    a "Swing" mark), or None for straight music.
    alternatives: ranked readings, the written one first: {"meter": [{"time_signature",
    "score"}], "tempo": [{"bpm", "score"}]} (scores 0..1, meter.alternatives_of).
    """

    score: stream.Score
    tempo_bpm: float
    tempo_map: list[tuple[float, float]]
    time_signature: str
    key: str
    pickup_quarters: float
    bars: int
    parts: list[dict]
    warnings: list[str] = field(default_factory=list)
    chords: bool = False
    midi_parts: list[MidiPart] = field(default_factory=list)
    beat_times_s: list[float] = field(default_factory=list)
    beat_quarters: float = 1.0
    swing: float | None = None
    #: The tab.Tuning of every tab staff, in score order (write_musicxml writes their string tunings).
    tabs: list = field(default_factory=list)
    #: Header line naming a tab's tuning and capo ("Drop D tuning (D A D G B E), capo 2"), or None.
    tab_header: str | None = None
    #: Ranked meter and tempo readings, the written ones first (see the class docstring).
    alternatives: dict = field(default_factory=dict)


def notate(tracks: list[Track], *, layout: str, options: Options, audio_mono: np.ndarray | None,
           sample_rate: int, title: str, reporter: Reporter | None = None) -> Notation:
    """Turn transcribed tracks into a readable score.

    Args:
        tracks: parts in score order; notes in seconds of the recording.
        layout: "solo" (one instrument, grand staff for keyboards), "piano" (piano
            reduction of a mix) or "ensemble" (one staff per track).
        options: tempo_bpm / time_signature / key override detection; level and
            chords shape piano reductions; composer goes to the metadata.
        audio_mono: the recording (mono) to help beat tracking, or None.
        sample_rate: of audio_mono.
        title: the score title.
        reporter: progress (Stage.ANALYZE, then Stage.SCORE) and cancellation.

    Returns:
        Notation.

    Raises:
        NoNotesError: no track has a usable note.
        OptionsError: an unknown layout.
        CancelledError: through the reporter.
    """
    if layout not in LAYOUTS:
        raise OptionsError(f"Unknown layout '{layout}'.", hint="Use solo, piano or ensemble.")
    report = reporter or Reporter()
    warnings: list[str] = []
    cleaned = [_clean(t) for t in tracks]
    all_notes = [n for t in cleaned for n in t.notes]
    pitched = [n for t in cleaned if not t.is_drum for n in t.notes]
    if not pitched and not all_notes:
        raise NoNotesError("I could not find any notes in this recording.",
                           hint="Try a clearer recording, or a different instrument or mode.")
    report(Stage.ANALYZE, 0.1, "finding the beat")
    grid, alternatives = find_grid(all_notes, pitched, audio_mono=audio_mono, sample_rate=sample_rate,
                                   tempo_bpm=options.tempo_bpm, time_signature=options.time_signature,
                                   swing=options.swing)
    if options.tempo_bpm:
        grid = _scale_to_tempo(grid, options.tempo_bpm)
    compound = grid.beat_quarters == 1.5
    positions = grid.beat_position(np.array([n.start_s for n in all_notes]))
    swing = None if compound else _swing_ratio(positions, options.swing)
    if swing is not None:
        positions = quantize.unswing(positions, swing)
    divisions = quantize.choose_subdivisions(positions, compound=compound)
    qtracks = [(t, quantize.quantize_notes(t.notes, grid, divisions, swing)) for t in cleaned]
    qtracks = [(t, [q for q in qs if q.onset >= 0] + [_clip0(q) for q in qs if q.onset < 0]) for t, qs in qtracks]
    report(Stage.ANALYZE, 0.8, "finding the key")
    qpitched = [q for t, qs in qtracks if not t.is_drum for q in qs]
    if options.key:
        tonic_pc, mode, tonic_name = keys.parse_key_name(options.key)
    else:
        tonic_pc, mode, _ = keys.detect_key(qpitched, beat_quarters=grid.beat_quarters)
        tonic_name = None
    speller = keys.Speller(tonic_pc, mode, tonic_name)
    key_text = f"{speller.tonic_name} {mode}"
    beat_q = Fraction(grid.beat_quarters).limit_denominator(4)
    qtracks, lead_q = _trim_pickup(qtracks, beat_q * grid.pickup_beats)
    meter_ = Meter(beat_q, grid.beats_per_bar, beat_q * grid.pickup_beats - lead_q, grid.time_signature)
    report(Stage.SCORE, 0.1, "arranging")
    staves, midi_parts, want_chords = _arrange(qtracks, layout, options, warnings)
    if want_chords:
        chord_list = chord_mod.chord_symbols(qpitched, beat_q=beat_q, beats_per_bar=grid.beats_per_bar,
                                             pickup_q=meter_.pickup_q, speller=speller)
        if staves:
            staves[0].chords = chord_list
    tabs: list = []
    if layout != "piano":
        staves, tabs = tab_mod.add_tab_staves(staves, options, warnings)
    tempo_map, tempo_bpm = _tempo_map(grid, meter_, options.tempo_bpm)
    tempo_map = [(max(0.0, at - float(lead_q)), bpm) for at, bpm in tempo_map]
    marks = _tempo_marks(tempo_map, float(meter_.bar_q))
    if swing is not None:
        marks.insert(1, TempoMark(Fraction(0), text="Swing"))
    report(Stage.SCORE, 0.4, "writing the score")
    score = build_score(staves, meter_, speller=speller, tempo_marks=marks, title=title,
                        composer=options.composer)
    bars = len(score.parts[0].getElementsByClass(stream.Measure)) if score.parts else 0
    parts = [dict(name=s.name, instrument=s.instrument.key, clef=s.clef, note_count=s.note_count,
                  source=s.source, engine=s.engine) for s in staves if s.tab is None]
    for name, tuning in tabs:
        for part in parts:
            if part["name"] == name:
                part["tab"] = tuning.key if not tuning.capo else f"{tuning.key} capo {tuning.capo}"
    report(Stage.SCORE, 1.0, None)
    return Notation(score=score, tempo_bpm=round(tempo_bpm, 1), tempo_map=tempo_map,
                    time_signature=grid.time_signature, key=key_text,
                    pickup_quarters=float(meter_.pickup_q), bars=bars, parts=parts, warnings=warnings,
                    chords=bool(want_chords), midi_parts=midi_parts,
                    beat_times_s=[float(b) for b in grid.beats_s], beat_quarters=grid.beat_quarters,
                    swing=None if swing is None else round(swing, 3), alternatives=alternatives,
                    tabs=[t for _, t in tabs],
                    tab_header=tab_mod.tabs_header([t for _, t in tabs]))


def find_grid(all_notes: list, pitched: list, *, audio_mono: np.ndarray | None, sample_rate: int,
              tempo_bpm: float | None = None, time_signature: str | None = None,
              swing: bool | None = None) -> tuple[rhythm.BeatGrid, dict]:
    """The notated beat grid of cleaned notes, and the ranked meter/tempo alternatives.

    What notate() decides about the rhythm, on its own (the corpus bench calls it):
    track_beats, then analyze_meter.

    Args:
        all_notes: every cleaned note (drums included).
        pitched: the pitched notes alone.
        audio_mono, sample_rate: the recording, or None for the notes alone.
        tempo_bpm, time_signature, swing: the user's options (None to detect).

    Returns:
        (BeatGrid, {"meter": [{"time_signature", "score"}...], "tempo": [{"bpm", "score"}...]}),
        best first (meter.alternatives_of).
    """
    beats_s, events = rhythm.track_beats(all_notes, audio_mono, sample_rate, tempo_hint_bpm=tempo_bpm,
                                         pitched=pitched)
    first_s = min(n.start_s for n in all_notes)
    grid = meter.analyze_meter(beats_s, events, first_note_s=first_s, time_signature=time_signature,
                               swing=swing)
    return grid, meter.alternatives_of(grid)


def _swing_ratio(positions: np.ndarray, wanted: bool | None) -> float | None:
    """The swing to write straight: detected (None), forced (swing:yes) or none (swing:no)."""
    if wanted is False:
        return None
    found = quantize.detect_swing(positions)
    if wanted and found is None:
        return quantize.DEFAULT_SWING_RATIO
    return found


def _trim_pickup(qtracks: list[tuple[Track, list[QNote]]], pickup_q: Fraction
                 ) -> tuple[list[tuple[Track, list[QNote]]], Fraction]:
    """Start a pickup bar at its first note: an eighth-note anacrusis is an eighth long.

    The grid counts pickups in whole beats; the rest before the first note of the
    pickup beat is not written (the pickup bar is as long as the notes in it).

    Returns:
        (tracks with onsets moved earlier by the lead, the lead in quarters).
    """
    onsets = [q.onset for _, qs in qtracks for q in qs]
    lead = min(onsets, default=Fraction(0))
    if pickup_q <= 0 or not 0 < lead < pickup_q:
        return qtracks, Fraction(0)
    moved = [(t, [QNote(q.onset - lead, q.end - lead, q.pitch, q.velocity) for q in qs]) for t, qs in qtracks]
    return moved, lead


def _clip0(q: QNote) -> QNote:
    return QNote(Fraction(0), max(q.end, Fraction(1, 4)), q.pitch, q.velocity)


def _clean(track: Track) -> Track:
    inst = INSTRUMENTS.get(track.instrument)
    low, high = (inst.low - 12, inst.high + 12) if inst and not track.is_drum else (0, 127)
    notes = quantize.clean_notes(track.notes, low=low, high=high) if not track.is_drum else [
        n for n in track.notes if n.velocity >= quantize.GHOST_MIN_VELOCITY]
    return Track(track.name, track.instrument, notes, track.source, track.engine, track.is_drum)


def _scale_to_tempo(grid: rhythm.BeatGrid, bpm: float) -> rhythm.BeatGrid:
    """Keep the user's tempo as the notated tempo when the grid found another level."""
    found = float(np.median(grid.tempo_curve_bpm()))
    ratio = bpm / found
    if 0.75 < ratio < 1.33:
        return grid
    beats = grid.beats_s
    if ratio >= 1.33:
        factor = int(round(ratio))
        idx = np.arange((len(beats) - 1) * factor + 1) / factor
        new = np.interp(idx, np.arange(len(beats)), beats)
        return rhythm.BeatGrid(new, grid.beat_quarters, grid.beats_per_bar * factor, grid.time_signature,
                               grid.pickup_beats * factor)
    factor = int(round(1 / ratio))
    return rhythm.BeatGrid(beats[::factor], grid.beat_quarters, max(1, grid.beats_per_bar // factor),
                           grid.time_signature, grid.pickup_beats // factor)


def _instrument(key: str) -> Instrument:
    return INSTRUMENTS.get(key) or INSTRUMENTS["piano"]


def _staff_clef(inst: Instrument, notes: list[QNote]) -> str:
    if inst.clef in ("grand", "percussion") or not notes:
        return "treble" if inst.clef == "grand" else inst.clef
    median = float(np.median([q.pitch for q in notes]))
    if inst.clef == "treble" and median < 55:
        return "bass"
    if inst.clef == "bass" and median > 67:
        return "treble"
    return inst.clef


def _arrange(qtracks: list[tuple[Track, list[QNote]]], layout: str, options: Options,
             warnings: list[str]) -> tuple[list[Staff], list[MidiPart], bool]:
    staves: list[Staff] = []
    midi_parts: list[MidiPart] = []
    want_chords = bool(options.chords)
    if layout == "piano":
        notes = [q for t, qs in qtracks if not t.is_drum for q in qs]
        if any(t.is_drum and qs for t, qs in qtracks):
            warnings.append("Drums are left out of the piano reduction.")
        right, left = arrange.reduce_to_piano(notes, easy=options.level == Level.EASY)
        piano = INSTRUMENTS["piano"]
        source = ",".join(sorted({t.source for t, _ in qtracks}))
        engine = ",".join(sorted({t.engine for t, _ in qtracks if t.engine}))
        staves += _grand_staff("Piano", piano, right, left, source, engine)
        midi_parts.append(MidiPart("Piano", piano.gm_program, False, right + left))
        want_chords = options.chords is not False
        return staves, midi_parts, want_chords
    for index, (track, qs) in enumerate(qtracks):
        inst = _instrument(track.instrument)
        if track.is_drum:
            drums = INSTRUMENTS["drums"]
            voices = [arrange.legato(_drum_events(qs))]
            staves.append(Staff(track.name, drums, "percussion", voices, is_drum=True, source=track.source,
                                engine=track.engine))
            midi_parts.append(MidiPart(track.name, 0, True, qs))
            continue
        if layout == "solo" and index > 0:
            warnings.append(f"Solo layout writes one part; '{track.name}' was added as another staff.")
        if inst.clef == "grand":
            right, left = arrange.split_hands(qs)
            staves += _grand_staff(track.name, inst, right, left, track.source, track.engine,
                                   group=f"g{index}")
        else:
            clef_name = _staff_clef(inst, qs)
            staves.append(Staff(track.name, inst, clef_name, arrange.assign_voices(qs), source=track.source,
                                engine=track.engine))
        midi_parts.append(MidiPart(track.name, inst.gm_program, False, qs))
    return staves, midi_parts, want_chords


def _grand_staff(name: str, inst: Instrument, right: list[QNote], left: list[QNote], source: str,
                 engine: str, group: str = "grand") -> list[Staff]:
    return [Staff(name, inst, "treble", arrange.assign_voices(right), group=group, source=source, engine=engine),
            Staff(name, inst, "bass", arrange.assign_voices(left), group=group, source=source, engine=engine)]


def _drum_events(qs: list[QNote]) -> list[arrange.VoiceEvent]:
    out: list[arrange.VoiceEvent] = []
    for q in sorted(qs, key=lambda q: q.onset):
        if out and out[-1].onset == q.onset:
            if q.pitch not in out[-1].pitches:
                out[-1].pitches.append(q.pitch)
            continue
        if out and out[-1].end > q.onset:
            out[-1].end = q.onset
        out.append(arrange.VoiceEvent(q.onset, q.onset + min(q.length, Fraction(1, 2)), [q.pitch], q.velocity))
    return out


def _tempo_map(grid: rhythm.BeatGrid, meter_: Meter, forced_bpm: float | None) -> tuple[list[tuple[float, float]], float]:
    curve = grid.tempo_curve_bpm()
    if forced_bpm:
        return [(0.0, float(forced_bpm))], float(forced_bpm)
    main = float(np.median(curve)) if len(curve) else 100.0
    beats_per_bar = grid.beats_per_bar
    entries: list[tuple[float, float]] = []
    start_beat = grid.pickup_beats if grid.pickup_beats else 0
    bar_starts = [0] + list(range(start_beat if start_beat else beats_per_bar, len(curve), beats_per_bar))
    current = None
    for i, b in enumerate(bar_starts):
        nxt = bar_starts[i + 1] if i + 1 < len(bar_starts) else len(curve)
        seg = curve[b:max(nxt, b + 1)]
        if not len(seg):
            continue
        bar_bpm = float(np.median(seg))
        if current is None or abs(bar_bpm / current - 1) > TEMPO_CHANGE_RATIO:
            current = bar_bpm
            entries.append((float(b * grid.beat_quarters), round(bar_bpm, 1)))
    if not entries:
        entries = [(0.0, round(main, 1))]
    return entries, main


def _tempo_marks(tempo_map: list[tuple[float, float]], bar_q: float) -> list[TempoMark]:
    """Printed tempo indications, the way an engraver writes them.

    The first tempo is a metronome mark. A change that keeps going the same way
    bar after bar (two or more tempo-map entries in a row, each at most
    GRADUAL_MAX_GAP_BARS bars or GRADUAL_MAX_GAP_Q quarters after the one before,
    TEMPO_MARK_RATIO or more in all) is written "rit." or "accel." where it starts, and "a tempo" where the
    music comes back to the tempo it left; any other change of TEMPO_MARK_RATIO
    or more from the tempo last printed gets a metronome mark.

    Args:
        tempo_map: [(quarter offset, quarter bpm)], first entry at 0.
        bar_q: quarters per bar.
    """
    marks = [TempoMark(Fraction(0), bpm=tempo_map[0][1])]
    printed = tempo_map[0][1]     # the tempo the player was last told
    left: float | None = None     # the tempo a gradual change moved away from
    i = 1
    while i < len(tempo_map):
        at, bpm = tempo_map[i]
        end = _gradual_run_end(tempo_map, i, bar_q)
        if end > i and abs(tempo_map[end][1] / tempo_map[i - 1][1] - 1) >= TEMPO_MARK_RATIO:
            left = tempo_map[i - 1][1]
            marks.append(TempoMark(Fraction(at).limit_denominator(12),
                                   text="rit." if bpm < tempo_map[i - 1][1] else "accel."))
            printed = tempo_map[end][1]
            i = end + 1
            continue
        if left is not None and abs(bpm / left - 1) < TEMPO_MARK_RATIO:
            marks.append(TempoMark(Fraction(at).limit_denominator(12), text="a tempo"))
            printed, left = left, None
        elif abs(bpm / printed - 1) >= TEMPO_MARK_RATIO:
            marks.append(TempoMark(Fraction(at).limit_denominator(12), bpm=bpm))
            printed, left = bpm, None
        i += 1
    return marks


def _gradual_run_end(tempo_map: list[tuple[float, float]], i: int, bar_q: float) -> int:
    """Last index of the run of entries from i on that move the way entry i moved, bar after bar."""
    direction = np.sign(tempo_map[i][1] - tempo_map[i - 1][1])
    max_gap = max(GRADUAL_MAX_GAP_BARS * bar_q, GRADUAL_MAX_GAP_Q)
    end = i
    while (end + 1 < len(tempo_map) and tempo_map[end + 1][0] - tempo_map[end][0] <= max_gap
           and np.sign(tempo_map[end + 1][1] - tempo_map[end][1]) == direction):
        end += 1
    return end
