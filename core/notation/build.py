"""Building the music21 Score: measures, voices, ties, rests, clefs, transposition.

Exports: Staff, Meter, build_score, split_span.

Durations are written the way an engraver would: a note that starts off a
beat does not hide the next beat (it is split and tied there), the middle of a
4/4 or 12/8 bar stays visible, and only single (optionally dotted or triplet)
note values are used, so no "7/16" shapes appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from music21 import (articulations, bar, chord, clef, expressions, harmony, instrument, key, layout, meter,
                     metadata, note, stream, tempo, tie)

from ..instruments import Instrument
from .arrange import VoiceEvent
from .keys import Speller

#: Voice numbers reserved per staff of a grand staff (MuseScore: 1-4 upper, 5-8 lower).
VOICES_PER_STAFF = 4
#: Staff steps a rest moves up (upper voice) or down (lower voice) when two voices share a staff.
REST_SHIFT_STEPS = 4

_BASE_VALUES = [Fraction(4), Fraction(2), Fraction(1), Fraction(1, 2), Fraction(1, 4), Fraction(1, 8),
                Fraction(1, 16)]
_NOTE_VALUES = set(_BASE_VALUES) | {v * Fraction(3, 2) for v in _BASE_VALUES} | {
    v * Fraction(2, 3) for v in _BASE_VALUES[1:]}
_REST_VALUES = set(_BASE_VALUES) | {v * Fraction(2, 3) for v in _BASE_VALUES[1:]}

# GM percussion key -> (display step+octave on a 5-line percussion staff, x notehead).
_DRUM_DISPLAY = {
    35: ("F4", False), 36: ("F4", False), 37: ("C5", True), 38: ("C5", False), 40: ("C5", False),
    41: ("A4", False), 43: ("A4", False), 45: ("B4", False), 47: ("D5", False), 48: ("E5", False),
    50: ("E5", False), 42: ("G5", True), 44: ("D4", True), 46: ("G5", True), 49: ("A5", True),
    57: ("A5", True), 51: ("F5", True), 59: ("F5", True), 53: ("F5", True), 52: ("A5", True),
    55: ("A5", True), 39: ("C5", True), 54: ("E5", True), 56: ("E5", True),
}

_CLEFS = {
    "treble": clef.TrebleClef, "bass": clef.BassClef, "alto": clef.AltoClef, "tenor": clef.TenorClef,
    "treble_8": clef.Treble8vbClef, "bass_8": clef.Bass8vbClef, "percussion": clef.PercussionClef,
    "tab": clef.TabClef,
}
#: Technical text a tab note carries from the build to write_musicxml, which turns it
#: into MusicXML <string> and <fret> (music21 writes per-note technicals of a chord
#: only for fingerings).
TAB_MARK = "tab-s{string}-f{fret}"


@dataclass(frozen=True)
class Meter:
    """The notated meter: quarters per beat, beats per bar, pickup length (quarters)."""

    beat_q: Fraction
    beats_per_bar: int
    pickup_q: Fraction
    text: str

    @property
    def bar_q(self) -> Fraction:
        return self.beat_q * self.beats_per_bar

    def bar_bounds(self, total_q: Fraction) -> list[tuple[Fraction, Fraction]]:
        """(start, end) of every bar up to total_q, the pickup bar first when there is one."""
        bounds = []
        start = Fraction(0)
        if self.pickup_q > 0:
            bounds.append((start, self.pickup_q))
            start = self.pickup_q
        while start < total_q or not bounds:
            bounds.append((start, start + self.bar_q))
            start += self.bar_q
        return bounds

    def level(self, pos: Fraction) -> int:
        """Metrical level of a position within a bar: 0 downbeat, 1 half bar, 2 beat, 3.. finer."""
        pos = pos % self.bar_q
        if pos == 0:
            return 0
        if self.beats_per_bar == 4 and pos == 2 * self.beat_q:
            return 1
        if pos % self.beat_q == 0:
            return 2
        frac = (pos % self.beat_q) / self.beat_q
        for lvl, divs in ((3, (2, 3)), (4, (4, 6)), (5, (8, 12))):
            if any((frac * d).denominator == 1 for d in divs):
                return lvl
        return 6

    def on_natural_grid(self, pos: Fraction) -> bool:
        """Whether a position lies on the meter's own subdivisions (down to 32nds), not on a tuplet's.

        In simple meters that excludes triplet positions; in compound meters every
        position down to the 32nd is natural (a dotted beat halves onto sixteenths).
        """
        frac = (pos % self.beat_q) / self.beat_q
        return (frac * (12 if self.beat_q == Fraction(3, 2) else 8)).denominator == 1


@dataclass(frozen=True)
class TempoMark:
    """A printed tempo indication at a score offset (quarters): a metronome mark
    (``bpm``, quarter notes per minute) or words (``text``: "rit.", "accel.", "a tempo",
    "Swing")."""

    at: Fraction
    bpm: float | None = None
    text: str | None = None


@dataclass
class Staff:
    """One staff of the score with its voices.

    name: staff label; instrument: Instrument (clef, transposition, GM program);
    clef: clef name (instruments.py vocabulary); voices: VoiceEvents per voice;
    is_drum: percussion staff; group: staves with the same group share a brace
    (a grand staff); source/engine: provenance for result.json.
    """

    name: str
    instrument: Instrument
    clef: str
    voices: list[list[VoiceEvent]]
    is_drum: bool = False
    group: str | None = None
    source: str = ""
    engine: str = ""
    chords: list[tuple[Fraction, str]] = field(default_factory=list)
    #: The tab.Tuning of a tab staff (clef "tab", events are tab.TabEvents); None for other staves.
    tab: object | None = None

    @property
    def note_count(self) -> int:
        return sum(len(e.pitches) for v in self.voices for e in v)


def split_span(start: Fraction, end: Fraction, meter_: Meter, bar_start: Fraction, *,
               rest: bool = False) -> list[tuple[Fraction, Fraction]]:
    """Split [start, end) (inside one bar) into notatable pieces at metrical boundaries.

    Args:
        start, end: absolute quarter positions.
        meter_: the meter.
        bar_start: where the bar's downbeat is (for a pickup bar: before its start).
        rest: rests use undotted values except a dotted beat in compound meters.
    """
    rel_s, rel_e = start - bar_start, end - bar_start
    values = _REST_VALUES | ({meter_.beat_q} if rest else set()) if rest else _NOTE_VALUES
    if rest and rel_s == 0 and rel_e == meter_.bar_q and meter_.bar_q not in values:
        values = values | {meter_.bar_q}
    if not rest and _middle_syncopation(rel_s, rel_e, meter_):
        return [(start, end)]
    return [(a + bar_start, b + bar_start) for a, b in _split(rel_s, rel_e, meter_, values)]


def _middle_syncopation(s: Fraction, e: Fraction, meter_: Meter) -> bool:
    """A half note from beat 2 to beat 4 of a 4/4 bar (quarter, half, quarter).

    The one figure that may hide the middle of a 4/4 bar (Gould, *Behind Bars*):
    it reads at a glance, where a quarter tied to a quarter across beat 3 only
    adds a tie. Positions are relative to the bar's downbeat.
    """
    return (meter_.beats_per_bar == 4 and meter_.beat_q == 1
            and s % meter_.bar_q == meter_.beat_q and e - s == 2 * meter_.beat_q)


def _split(s: Fraction, e: Fraction, meter_: Meter, values: set[Fraction]) -> list[tuple[Fraction, Fraction]]:
    if e <= s:
        return []
    own = meter_.level(s)
    step = meter_.beat_q / 12
    inside = []
    k = s // step + 1
    while k * step < e:
        inside.append(k * step)
        k += 1
    # A piece may not hide a beat (or the half bar) coarser than where it starts.
    crossing = [b for b in inside if meter_.level(b) <= 2 and meter_.level(b) < own]
    triplet = (e - s) not in _REST_VALUES | {v * Fraction(3, 2) for v in _BASE_VALUES} and (e - s) in values
    if triplet:
        crossing += [b for b in inside if meter_.level(b) <= 2]
    if (e - s) in values and not crossing:
        return [(s, e)]
    candidates = crossing or inside
    if not candidates:
        return _greedy(s, e, values)
    # At one metrical level a cut on the meter's own grid beats a tuplet position: the
    # rest of a beat after a sixteenth is a sixteenth and an eighth, not 1/12 + 2/3.
    cut = min(candidates, key=lambda b: (meter_.level(b), not meter_.on_natural_grid(b), b))
    return _split(s, cut, meter_, values) + _split(cut, e, meter_, values)


def _greedy(s: Fraction, e: Fraction, values: set[Fraction]) -> list[tuple[Fraction, Fraction]]:
    pieces = []
    while s < e:
        fit = max((v for v in values if v <= e - s), default=e - s)
        pieces.append((s, s + fit))
        s += fit
    return pieces


def _pitch_names(pitches: list[int], speller: Speller) -> list[str]:
    return [speller.name(p) for p in pitches]


def _make_element(ev: VoiceEvent | None, length: Fraction, speller: Speller, *, drum: bool,
                  tie_type: str | None) -> note.GeneralNote:
    if ev is None:
        return note.Rest(quarterLength=length)
    if drum:
        parts = []
        for p in ev.pitches:
            display, x_head = _DRUM_DISPLAY.get(p, ("C5", True))
            u = note.Unpitched(displayName=display)
            if x_head:
                u.notehead = "x"
            parts.append(u)
        from music21 import percussion
        el = parts[0] if len(parts) == 1 else percussion.PercussionChord(parts)
        el.quarterLength = length
    elif len(ev.pitches) == 1:
        el = note.Note(_pitch_names(ev.pitches, speller)[0], quarterLength=length)
    else:
        el = chord.Chord(_pitch_names(ev.pitches, speller), quarterLength=length)
    el.volume.velocity = ev.velocity
    for string, fret in getattr(ev, "frets", None) or ():
        el.articulations.append(articulations.Fingering(TAB_MARK.format(string=string, fret=fret)))
    if tie_type and not drum:
        el.tie = tie.Tie(tie_type)
    return el


def _fill_voice(events: list[VoiceEvent], bar_s: Fraction, bar_e: Fraction, meter_: Meter,
                downbeat: Fraction, speller: Speller, *, drum: bool, full_rest: bool) -> list[note.GeneralNote]:
    """Elements of one voice in one bar, rests filling gaps, ties at split points."""
    out: list[note.GeneralNote] = []
    cursor = bar_s
    inside = [e for e in events if e.end > bar_s and e.onset < bar_e]
    if not inside:
        if not full_rest:
            return []
        if bar_e - bar_s == meter_.bar_q:
            r = note.Rest(quarterLength=bar_e - bar_s)
            r.fullMeasure = True
            if r.duration.type != "complex":
                return [r]
        # A pickup bar (or a bar no single rest value fills, 5/4) gets rests MusicXML can
        # write: one rest of 1.25 quarters has no note type and fails the export.
        return [_make_element(None, b - a, speller, drum=drum, tie_type=None)
                for a, b in split_span(bar_s, bar_e, meter_, downbeat, rest=True)]
    for ev in inside:
        s, e = max(ev.onset, bar_s), min(ev.end, bar_e)
        if s > cursor:
            for a, b in split_span(cursor, s, meter_, downbeat, rest=True):
                out.append(_make_element(None, b - a, speller, drum=drum, tie_type=None))
        pieces = split_span(s, e, meter_, downbeat)
        for i, (a, b) in enumerate(pieces):
            first = i == 0 and ev.onset >= bar_s
            last = i == len(pieces) - 1 and ev.end <= bar_e
            tie_type = None if (first and last) else "start" if first else "stop" if last else "continue"
            out.append(_make_element(ev, b - a, speller, drum=drum, tie_type=tie_type))
        cursor = e
    if cursor < bar_e:
        for a, b in split_span(cursor, bar_e, meter_, downbeat, rest=True):
            out.append(_make_element(None, b - a, speller, drum=drum, tie_type=None))
    return out


def _m21_instrument(inst: Instrument, name: str, *, drum: bool) -> instrument.Instrument:
    if drum:
        m21 = instrument.UnpitchedPercussion()
        m21.midiChannel = 9
    else:
        try:
            m21 = instrument.instrumentFromMidiProgram(inst.gm_program)
        except Exception:  # music21 raises for programs it has no class for
            m21 = instrument.Instrument()
            m21.midiProgram = inst.gm_program
        m21.transposition = None
        if inst.transposition:
            from music21 import interval
            # music21 stores written -> sounding; ours is sounding -> written.
            m21.transposition = interval.Interval(inst.transposition).reverse()
    m21.partName = name
    m21.instrumentName = name
    # music21's class abbreviations ("Fl" for any GM flute program) would label the
    # later systems of a "Melody" staff as a flute: keep only names we chose.
    m21.partAbbreviation = None
    m21.instrumentAbbreviation = None
    return m21


def build_score(staves: list[Staff], meter_: Meter, *, speller: Speller, tempo_marks: list[TempoMark],
                title: str, composer: str | None) -> stream.Score:
    """Assemble the Score; staves are written at sounding pitch, then transposing parts
    are moved to written pitch (MusicXML <transpose> keeps them readable by any app).
    """
    total = max((e.end for s in staves for v in s.voices for e in v), default=meter_.bar_q)
    bounds = meter_.bar_bounds(total)
    score = stream.Score()
    score.metadata = metadata.Metadata()
    score.metadata.title = title
    if composer:
        score.metadata.composer = composer
    # Always a contributor: with none, music21 writes "Music21" as the composer, which MuseScore shows.
    score.metadata.addContributor(metadata.Contributor(role="transcriber", name="stemscribe"))
    groups: dict[str, list[stream.Part]] = {}
    voice_base = _voice_bases(staves)
    for index, st in enumerate(staves):
        part = stream.PartStaff() if st.group else stream.Part()
        part.id = f"P{index + 1}"
        inst = _m21_instrument(st.instrument, st.name, drum=st.is_drum)
        part.insert(0, inst)
        for number, (bar_s, bar_e) in enumerate(bounds):
            downbeat = bar_e - meter_.bar_q
            m = stream.Measure(number=number + (0 if meter_.pickup_q > 0 else 1))
            if number == 0:
                m.insert(0, _CLEFS.get(st.clef, clef.TrebleClef)())
                if not st.is_drum:
                    m.insert(0, key.KeySignature(speller.fifths))
                if st.tab is not None:
                    m.insert(0, layout.StaffLayout(staffLines=st.tab.strings))
                m.insert(0, meter.TimeSignature(meter_.text))
                if index == 0:
                    for mark in tempo_marks:
                        if mark.at == 0:
                            m.insert(0, _tempo_element(mark, meter_))
            if number == 0 and meter_.pickup_q > 0:
                m.paddingLeft = float(meter_.bar_q - meter_.pickup_q)
            for mark in tempo_marks:
                if index == 0 and mark.at > 0 and bar_s <= mark.at < bar_e:
                    m.insert(float(mark.at - bar_s), _tempo_element(mark, meter_))
            voices = st.voices or [[]]
            # A voice with nothing to play in this bar is left out (no whole rest over the
            # other voice's notes); a bar where no voice plays gets one whole-bar rest.
            filled = [(i, f) for i, v in enumerate(voices)
                      if (f := _fill_voice(v, bar_s, bar_e, meter_, downbeat, speller, drum=st.is_drum,
                                           full_rest=False))]
            if not filled:
                filled = [(0, _fill_voice([], bar_s, bar_e, meter_, downbeat, speller, drum=st.is_drum,
                                          full_rest=True))]
            if len(filled) > 1:
                _set_voice_directions([f for _, f in filled])
            first_voice = voice_base.get(index, 0) + 1
            # Staves of a grand staff always carry explicit voices, numbered by the voice
            # they are (not by their place in this bar): music21 renumbers the lower staff's
            # voices when the upper one has none, which would break ties and voice
            # continuity from bar to bar.
            # A lower voice alone in a bar keeps its number when it opens with a tie from the
            # bar before: written as voice 1 its tie would join two voices (LilyPond: "unterminated tie").
            tied_in = filled[0][0] > 0 and _opens_with_tie(filled[0][1])
            if len(filled) == 1 and not st.group and not tied_in:
                _append(m, filled[0][1])
            else:
                for i, elements in filled:
                    v = stream.Voice(id=str(first_voice + i))
                    _append(v, elements)
                    m.insert(0, v)
            # Chord symbols go inside the first voice: at measure level music21 writes
            # them with a voiceless <forward>, which musicxml2ly reads as a clash with voice 1.
            holder = m.voices[0] if m.voices else m
            for at, figure in st.chords:
                if bar_s <= at < bar_e:
                    holder.insert(float(at - bar_s), harmony.ChordSymbol(figure))
            if number == len(bounds) - 1:
                m.rightBarline = bar.Barline("final")
            part.append(m)
        _finish_part(part, st)
        score.insert(0, part)
        if st.group:
            groups.setdefault(st.group, []).append(part)
    for members in groups.values():
        if len(members) > 1:
            score.insert(0, layout.StaffGroup(members, symbol="brace", barTogether=True))
    return score


def _opens_with_tie(elements: list[note.GeneralNote]) -> bool:
    """Whether a voice's first element in a bar continues a tie from the bar before."""
    first = elements[0] if elements else None
    return first is not None and first.tie is not None and first.tie.type in ("stop", "continue")


def _voice_bases(staves: list[Staff]) -> dict[int, int]:
    """Voice-number offset per staff, so the staves of one grand staff never share a voice.

    music21 joins the staves of a group into one MusicXML part and keeps voice
    numbers that are already set; two staves both using voices 1 and 2 would
    merge into one voice per number there (musicxml2ly then reports negative
    skips and engraves rests over notes). MuseScore's convention is voices 1-4
    on the upper staff and 5-8 on the lower.
    """
    seen: dict[str, int] = {}
    bases: dict[int, int] = {}
    for index, st in enumerate(staves):
        if st.group:
            bases[index] = VOICES_PER_STAFF * seen.get(st.group, 0)
            seen[st.group] = seen.get(st.group, 0) + 1
    return bases


def _set_voice_directions(voices: list[list[note.GeneralNote]]) -> None:
    """Two voices on a staff: upper voice stems up and rests high, lower voice stems down and rests low."""
    for index, elements in enumerate(voices[:2]):
        up = index == 0
        for el in elements:
            if el.isRest:
                el.stepShift = REST_SHIFT_STEPS if up else -REST_SHIFT_STEPS
            else:
                el.stemDirection = "up" if up else "down"


def _append(container: stream.Stream, elements: list[note.GeneralNote]) -> None:
    offset = Fraction(0)
    for el in elements:
        container.insert(offset, el)
        offset += Fraction(el.quarterLength).limit_denominator(96)


def _tempo_element(mark: TempoMark, meter_: Meter) -> tempo.MetronomeMark | expressions.TextExpression:
    """A metronome mark in the notated beat, or the mark's words in italics above the staff."""
    if mark.bpm is None:
        words = expressions.TextExpression(mark.text or "")
        words.style.fontStyle = "italic"
        words.placement = "above"
        return words
    from music21 import duration
    referent = duration.Duration(float(meter_.beat_q))
    return tempo.MetronomeMark(number=round(mark.bpm / float(meter_.beat_q)), referent=referent)


def _finish_part(part: stream.Part, st: Staff) -> None:
    """Beams per beat group, tuplet brackets, accidentals, written pitch."""
    for m in part.getElementsByClass(stream.Measure):
        containers = list(m.voices) or [m]
        for c in containers:
            stream.makeNotation.makeTupletBrackets(c, inPlace=True)
        try:
            m.makeBeams(inPlace=True)
        except Exception:  # music21 cannot beam some incomplete bars; unbeamed is still correct
            pass
    if not st.is_drum:
        part.makeAccidentals(inPlace=True, cautionaryPitchClass=False)
        inst = part.getInstrument()
        if inst is not None and inst.transposition is not None:
            part.atSoundingPitch = True
            part.toWrittenPitch(inPlace=True)
