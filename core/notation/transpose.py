"""Transposition of a finished Notation: by an interval, or to a transposing instrument's written pitch.

Exports: Transposition, parse_transposition, transpose_notation, TRANSPOSING_INSTRUMENTS.

``transpose:`` takes either an interval, which moves the music (``+2`` semitones
up, ``-m3`` a minor third down, ``P5`` a fifth up), or a target instrument
(``Bb-clarinet``, ``Bb-trumpet``, ``alto-sax``, ``F-horn``, or just ``Bb``,
``Eb``, ``F``), for which the part is written at that instrument's pitch: a
B♭ clarinet reads a major second above concert pitch, an E♭ alto saxophone a
major sixth above, a horn in F a fifth above. Notes, key signatures and chord
symbols move with music21's transpose; a key that would need more than six
sharps or flats is respelled enharmonically (F♯ major rather than G♭ major is
kept, C♯ major becomes D♭ major). For an interval the score MIDI moves too;
for an instrument it stays at concert pitch (it is what the band sounds like)
and the MusicXML parts carry the instrument's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from music21 import instrument as m21instrument
from music21 import interval as m21interval
from music21 import key as m21key
from music21 import stream

from .. import defaults
from ..errors import OptionsError

#: Most sharps or flats a transposed key signature may have before it is respelled.
MAX_KEY_ACCIDENTALS = defaults.TRANSPOSE_MAX_KEY_ACCIDENTALS

#: Target instrument word -> (name printed on the part, interval from concert to written pitch).
TRANSPOSING_INSTRUMENTS: dict[str, tuple[str, str]] = {
    "bb-clarinet": ("Clarinet in B\u266d", "M2"),
    "bb-trumpet": ("Trumpet in B\u266d", "M2"),
    "soprano-sax": ("Soprano Saxophone in B\u266d", "M2"),
    "tenor-sax": ("Tenor Saxophone in B\u266d", "M9"),
    "bass-clarinet": ("Bass Clarinet in B\u266d", "M9"),
    "alto-sax": ("Alto Saxophone in E\u266d", "M6"),
    "baritone-sax": ("Baritone Saxophone in E\u266d", "M13"),
    "eb-clarinet": ("Clarinet in E\u266d", "-m3"),
    "f-horn": ("Horn in F", "P5"),
    "english-horn": ("English Horn in F", "P5"),
    "a-clarinet": ("Clarinet in A", "m3"),
}
_INSTRUMENT_ALIASES = {
    "bb": "bb-clarinet", "b-flat": "bb-clarinet", "clarinet": "bb-clarinet", "bb-clar": "bb-clarinet",
    "trumpet": "bb-trumpet", "bb-trp": "bb-trumpet", "cornet": "bb-trumpet", "bb-cornet": "bb-trumpet",
    "eb": "alto-sax", "e-flat": "alto-sax", "eb-alto-sax": "alto-sax", "alto": "alto-sax",
    "alto-saxophone": "alto-sax", "eb-alto": "alto-sax", "bb-tenor-sax": "tenor-sax", "tenor": "tenor-sax",
    "tenor-saxophone": "tenor-sax", "bb-soprano-sax": "soprano-sax", "eb-baritone-sax": "baritone-sax",
    "bari-sax": "baritone-sax", "f": "f-horn", "horn": "f-horn", "french-horn": "f-horn", "horn-in-f": "f-horn",
    "cor-anglais": "english-horn", "bb-bass-clarinet": "bass-clarinet",
}
#: Semitones -> the interval name used for a plain number (+2 is a major second).
_SEMITONE_NAMES = {0: "P1", 1: "m2", 2: "M2", 3: "m3", 4: "M3", 5: "P4", 6: "A4", 7: "P5", 8: "m6", 9: "M6",
                   10: "m7", 11: "M7", 12: "P8"}
_NUMBER_RE = re.compile(r"^([+-]?)(\d{1,2})$")
_INTERVAL_RE = re.compile(r"^([+-]?)([PMmAd])(\d{1,2})$")


@dataclass(frozen=True)
class Transposition:
    """One transposition request, resolved.

    interval: music21 interval name with its direction ("M2", "-m3").
    instrument: the target instrument's printed name, or None for a plain interval.
    label: how the chat names it ("B\u266d clarinet", "up a major second").
    """

    interval: str
    instrument: str | None
    label: str

    @property
    def moves_sound(self) -> bool:
        """True for a plain interval (the music itself moves); False for an instrument's written pitch."""
        return self.instrument is None

    @property
    def semitones(self) -> int:
        """Signed semitones of the interval."""
        return int(m21interval.Interval(self.interval).semitones)


def parse_transposition(text: str) -> Transposition:
    """Read a ``transpose:`` value: an interval (+2, -m3, P5) or a target instrument (Bb-clarinet, alto-sax).

    Raises:
        OptionsError: neither an interval of at most two octaves nor an instrument this knows.
    """
    norm = "-".join(text.strip().replace("\u266d", "b").replace("_", " ").split())
    number = _NUMBER_RE.match(norm)
    if number:
        semis = int(number.group(2))
        if semis > 24:
            raise OptionsError(f"transpose:{text} is more than two octaves.", hint="Use up to 24 semitones.")
        octaves, rest = divmod(semis, 12)
        name = _SEMITONE_NAMES[rest] if not octaves else _compound(_SEMITONE_NAMES[rest], octaves)
        return _interval_transposition(("-" if number.group(1) == "-" else "") + name)
    named = _INTERVAL_RE.match(norm)
    if named:
        try:
            m21interval.Interval(named.group(2) + named.group(3))
        except Exception:  # noqa: BLE001 - music21 raises several types for impossible intervals (P3, M5)
            raise OptionsError(f"'{text}' is not an interval.",
                               hint="Write it like transpose:+2, transpose:-m3 or transpose:P5.") from None
        if int(named.group(3)) > 15:
            raise OptionsError(f"transpose:{text} is more than two octaves.", hint="Use up to a fifteenth.")
        return _interval_transposition(("-" if named.group(1) == "-" else "") + named.group(2) + named.group(3))
    word = norm.lower()
    word = _INSTRUMENT_ALIASES.get(word, word)
    if word not in TRANSPOSING_INSTRUMENTS:
        raise OptionsError(f"'{text}' is not an interval or a transposing instrument I know.",
                           hint="Use an interval (transpose:+2, transpose:-m3) or an instrument: "
                                + ", ".join(TRANSPOSING_INSTRUMENTS) + ".")
    name, written = TRANSPOSING_INSTRUMENTS[word]
    return Transposition(interval=written, instrument=name, label=name)


def _compound(simple: str, octaves: int) -> str:
    quality, number = simple[0], int(simple[1:])
    return f"{quality}{number + 7 * octaves}"


def _interval_transposition(name: str) -> Transposition:
    down = name.startswith("-")
    nice = m21interval.Interval(name.lstrip("-")).niceName.lower()
    return Transposition(interval=name, instrument=None, label=f"{'down' if down else 'up'} a {nice}")


def transpose_notation(notation, transposition: Transposition):
    """Transpose a Notation in place: the score (notes, keys, chord symbols), its key text and, for an interval, the MIDI.

    Args:
        notation: a core.notation.Notation from notate().
        transposition: from parse_transposition.

    Returns:
        The same Notation, transposed; drum parts are left alone.
    """
    step = m21interval.Interval(transposition.interval)
    score: stream.Score = notation.score
    for part in score.parts:
        if _is_percussion(part):
            continue
        part.transpose(step, inPlace=True)
        if transposition.instrument:
            part.partName = transposition.instrument
            inst = part.getInstrument(returnDefault=False)
            if inst is None:
                inst = m21instrument.Instrument()
                part.insert(0, inst)
            inst.partName = transposition.instrument
            if not transposition.moves_sound:
                # Written for the instrument: the MusicXML says how it sounds (<transpose>), so a
                # notation program plays it, and transposes it back, at concert pitch.
                inst.transposition = step.reverse()
                part.atSoundingPitch = False
    new_key = _transposed_key(notation.key, step)
    if abs(new_key.sharps) > MAX_KEY_ACCIDENTALS:
        flip = m21interval.Interval("d2" if new_key.sharps > 0 else "-d2")
        for part in score.parts:
            if not _is_percussion(part):
                part.transpose(flip, inPlace=True)
        new_key = new_key.transpose(flip)
    notation.key = f"{new_key.tonic.name.replace('-', 'b')} {new_key.mode}"
    if transposition.moves_sound:
        for midi_part in notation.midi_parts:
            if not midi_part.is_drum:
                midi_part.notes = [replace(q, pitch=max(0, min(127, q.pitch + int(step.semitones))))
                                   for q in midi_part.notes]
    return notation


def _transposed_key(key_text: str, step: m21interval.Interval) -> m21key.Key:
    tonic, mode = key_text.split()
    return m21key.Key(tonic.replace("b", "-") if len(tonic) > 1 else tonic, mode).transpose(step)


def _is_percussion(part: stream.Part) -> bool:
    from music21 import clef

    first = part.recurse().getElementsByClass(clef.Clef).first()
    return isinstance(first, clef.PercussionClef)


__all__ = ["TRANSPOSING_INSTRUMENTS", "Transposition", "parse_transposition", "transpose_notation"]
