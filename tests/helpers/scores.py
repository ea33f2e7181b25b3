"""Small music21 scores for engraving tests, each exercising notation the pipeline emits.

Exports: grand_staff_score, ensemble_score, long_piano_score, write_musicxml.
"""

from __future__ import annotations

from pathlib import Path

from music21 import (bar, chord, clef, duration, harmony, instrument, key, layout, meter, note, stream, tie,
                     tempo)


def write_musicxml(score: stream.Score, path: Path) -> Path:
    """Write a score as MusicXML (music21's writer, as the notation module uses)."""
    score.write("musicxml", fp=str(path))
    return path


def _measure(number: int, items, *, pad_left: float = 0.0) -> stream.Measure:
    m = stream.Measure(number=number)
    for item in items:
        m.append(item)
    if pad_left:
        m.paddingLeft = pad_left
    return m


def grand_staff_score(*, title: str = "Grand staff", part_name: str = "Piano") -> stream.Score:
    """Piano on a grand staff: pickup, tempo mark, chord symbols, triplets, ties over the barline,
    a key change and a meter change. Four bars plus a one-beat pickup."""
    rh = stream.PartStaff(id="RH")
    lh = stream.PartStaff(id="LH")
    piano = instrument.Piano()
    piano.partName = part_name
    rh.insert(0, piano)
    # Bar 0: a quarter-note pickup in 4/4.
    m0 = _measure(0, [note.Note("G4", quarterLength=1)], pad_left=3.0)
    m0.insert(0, tempo.MetronomeMark(number=92))
    m0.insert(0, key.Key("G"))
    m0.insert(0, meter.TimeSignature("4/4"))
    m0.insert(0, clef.TrebleClef())
    # Bar 1: chord symbol, a triplet, a note tied into bar 2.
    triplet = [note.Note(p, quarterLength=1 / 3) for p in ("B4", "C5", "D5")]
    m1 = _measure(1, [note.Note("B4"), *triplet, note.Note("E5"), note.Note("F#5")])
    m1.insert(0, harmony.ChordSymbol("G"))
    tied_a = m1.notes[-1]
    tied_a.tie = tie.Tie("start")
    m2 = _measure(2, [note.Note("F#5", quarterLength=2), chord.Chord(["D5", "F#5", "A5"], quarterLength=2)])
    m2.notes[0].tie = tie.Tie("stop")
    m2.insert(0, harmony.ChordSymbol("D7"))
    # Bar 3: key and meter change.
    m3 = _measure(3, [note.Note("C5", quarterLength=1.5), note.Note("B4", quarterLength=1.5)])
    m3.insert(0, key.Key("F"))
    m3.insert(0, meter.TimeSignature("6/8"))
    m3.insert(0, harmony.ChordSymbol("F"))
    m4 = _measure(4, [note.Note("A4", quarterLength=3)])
    m4.rightBarline = bar.Barline("final")
    for m in (m0, m1, m2, m3, m4):
        rh.append(m)
    # Left hand mirrors the meter and key changes.
    l0 = _measure(0, [note.Rest(quarterLength=1)], pad_left=3.0)
    l0.insert(0, key.Key("G"))
    l0.insert(0, meter.TimeSignature("4/4"))
    l0.insert(0, clef.BassClef())
    l1 = _measure(1, [chord.Chord(["G2", "D3"], quarterLength=4)])
    l2 = _measure(2, [note.Note("D3", quarterLength=4)])
    l3 = _measure(3, [note.Note("F2", quarterLength=3)])
    l3.insert(0, key.Key("F"))
    l3.insert(0, meter.TimeSignature("6/8"))
    l4 = _measure(4, [note.Note("F2", quarterLength=3)])
    l4.rightBarline = bar.Barline("final")
    for m in (l0, l1, l2, l3, l4):
        lh.append(m)
    score = stream.Score()
    score.insert(0, rh)
    score.insert(0, lh)
    score.insert(0, layout.StaffGroup([rh, lh], name=part_name, symbol="brace"))
    score.metadata = None
    return score


def _part(inst: instrument.Instrument, name: str, clef_obj, bars: list[list], *, meter_text: str = "4/4") -> stream.Part:
    part = stream.Part()
    inst.partName = name
    part.insert(0, inst)
    for i, items in enumerate(bars, start=1):
        m = _measure(i, items)
        if i == 1:
            m.insert(0, clef_obj)
            m.insert(0, meter.TimeSignature(meter_text))
            m.insert(0, key.Key("C"))
        part.append(m)
    return part


def _drum(display: str, octave: int, *, head: str | None = None, ql: float = 1.0) -> note.Unpitched:
    hit = note.Unpitched(displayName=f"{display}{octave}", quarterLength=ql)
    if head:
        hit.notehead = head
    return hit


def ensemble_score(*, guitar_name: str = "Guitar", drum_name: str = "Drums") -> stream.Score:
    """Guitar on an octave treble clef (treble_8), a clarinet in B-flat (transposing), and a
    percussion staff with kick, snare and x-headed hi-hat. Two bars of 4/4."""
    guitar = _part(instrument.AcousticGuitar(), guitar_name, clef.Treble8vbClef(),
                   [[note.Note("E3"), note.Note("G3"), note.Note("B3"), note.Note("E4")],
                    [chord.Chord(["E3", "B3", "E4"], quarterLength=4)]])
    # music21 parts hold sounding pitch; the instrument's transposition makes the written part.
    clarinet = _part(instrument.Clarinet(), "Clarinet in Bb", clef.TrebleClef(),
                     [[note.Note("C5", quarterLength=2), note.Note("D5", quarterLength=2)],
                      [note.Note("E5", quarterLength=4)]])
    kit = instrument.Percussion()
    drums = _part(kit, drum_name, clef.PercussionClef(),
                  [[_drum("F", 4), _drum("C", 5), _drum("F", 4), _drum("C", 5)],
                   [_drum("G", 5, head="x", ql=0.5) for _ in range(8)]])
    score = stream.Score()
    for part in (guitar, clarinet, drums):
        score.insert(0, part)
    return score


def long_piano_score(*, bars: int = 32, bpm: int = 120) -> stream.Score:
    """About 60 s of two-hand piano writing at 120 bpm in 4/4 (32 bars): eighth-note melody
    over half-note chords, with a chord symbol per bar."""
    rh = stream.PartStaff(id="RH")
    lh = stream.PartStaff(id="LH")
    rh.insert(0, instrument.Piano())
    scale = ["C5", "D5", "E5", "F5", "G5", "A5", "B5", "C6"]
    roots = [("C", ["C3", "E3", "G3"]), ("F", ["F2", "A2", "C3"]), ("G", ["G2", "B2", "D3"]), ("Am", ["A2", "C3", "E3"])]
    for i in range(bars):
        m = stream.Measure(number=i + 1)
        lm = stream.Measure(number=i + 1)
        if i == 0:
            m.insert(0, tempo.MetronomeMark(number=bpm))
            for target, cl in ((m, clef.TrebleClef()), (lm, clef.BassClef())):
                target.insert(0, cl)
                target.insert(0, meter.TimeSignature("4/4"))
                target.insert(0, key.Key("C"))
        symbol, pitches = roots[i % 4]
        m.insert(0, harmony.ChordSymbol(symbol))
        for j in range(8):
            m.append(note.Note(scale[(i + j) % 8], quarterLength=0.5))
        lm.append(chord.Chord(pitches, quarterLength=2))
        lm.append(chord.Chord(pitches, quarterLength=2))
        rh.append(m)
        lh.append(lm)
    score = stream.Score()
    score.insert(0, rh)
    score.insert(0, lh)
    score.insert(0, layout.StaffGroup([rh, lh], name="Piano", symbol="brace"))
    return score


__all__ = ["grand_staff_score", "ensemble_score", "long_piano_score", "write_musicxml", "duration"]
