"""The instruments stemscribe knows: staff, clef, range, transposition, engine.

Exports: Instrument, INSTRUMENTS, lookup_instrument, instrument_names.

Clef names: "treble", "bass", "alto", "tenor", "treble_8" (treble, sounds an
octave lower: guitar, tenor voice), "bass_8" (bass, sounds an octave lower:
bass guitar, double bass), "percussion", and "grand" (a piano grand staff).
Transposition is the interval from sounding to written pitch in music21 form
("M2" means written a major second above sounding), or None for concert pitch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .errors import OptionsError


@dataclass(frozen=True, slots=True)
class Instrument:
    """How one instrument is written.

    key: the option word ("guitar"); name: the staff label ("Guitar").
    gm_program: General MIDI program 0..127 (ignored for drums).
    low / high: sounding MIDI range used to discard impossible notes.
    engine: preferred transcription engine for this instrument.
    family: "keyboard", "strings", "winds", "brass", "voice", "guitar", "bass", "drums".
    octave_ghosts: its tone sounds strong pitches an octave up (an organ's 4' stops and
        couplers), which a piano model writes as extra notes (engines drop them).
    held_tone: a keyboard whose tone holds at full level while the key is down (organ);
        a piano model ends its notes early, so the "organ" engine holds them.
    """

    key: str
    name: str
    gm_program: int
    clef: str
    low: int
    high: int
    family: str
    transposition: str | None = None
    engine: str = "basic-pitch"
    aliases: tuple[str, ...] = ()
    polyphonic: bool = False
    octave_ghosts: bool = False
    held_tone: bool = False


_ALL = (
    Instrument("piano", "Piano", 0, "grand", 21, 108, "keyboard", engine="transkun",
               aliases=("keys", "keyboard", "grand-piano", "epiano"), polyphonic=True),
    Instrument("organ", "Organ", 19, "grand", 24, 96, "keyboard", engine="transkun",
               aliases=("church-organ", "harmonium"), polyphonic=True, octave_ghosts=True, held_tone=True),
    Instrument("guitar", "Guitar", 24, "treble_8", 40, 88, "guitar",
               aliases=("acoustic-guitar", "classical-guitar", "electric-guitar", "gtr"), polyphonic=True),
    Instrument("bass", "Bass", 33, "bass_8", 28, 67, "bass",
               aliases=("bass-guitar", "electric-bass", "double-bass", "contrabass", "upright-bass")),
    Instrument("violin", "Violin", 40, "treble", 55, 103, "strings", aliases=("fiddle",)),
    Instrument("viola", "Viola", 41, "alto", 48, 91, "strings"),
    Instrument("cello", "Cello", 42, "bass", 36, 81, "strings", aliases=("violoncello",)),
    Instrument("flute", "Flute", 73, "treble", 59, 98, "winds", aliases=("whistle", "tin-whistle", "recorder")),
    Instrument("oboe", "Oboe", 68, "treble", 58, 93, "winds"),
    Instrument("clarinet", "Clarinet in B\u266d", 71, "treble", 50, 94, "winds", transposition="M2"),
    Instrument("bassoon", "Bassoon", 70, "bass", 34, 75, "winds"),
    Instrument("alto-sax", "Alto Saxophone", 65, "treble", 49, 81, "winds", transposition="M6",
               aliases=("sax", "saxophone", "alto-saxophone")),
    Instrument("tenor-sax", "Tenor Saxophone", 66, "treble", 44, 76, "winds", transposition="M9",
               aliases=("tenor-saxophone",)),
    Instrument("trumpet", "Trumpet in B\u266d", 56, "treble", 54, 84, "brass", transposition="M2",
               aliases=("cornet",)),
    Instrument("trombone", "Trombone", 57, "bass", 40, 77, "brass"),
    Instrument("voice", "Voice", 52, "treble", 45, 84, "voice",
               aliases=("vocals", "vocal", "singer", "soprano", "alto-voice")),
    Instrument("tenor-voice", "Tenor", 52, "treble_8", 45, 72, "voice", aliases=("tenor", "male-voice")),
    Instrument("melody", "Melody", 73, "treble", 48, 100, "melody", aliases=("lead", "tune", "treble")),
    Instrument("low-melody", "Melody", 42, "bass", 28, 72, "melody", aliases=("bass-line", "low")),
    Instrument("drums", "Drums", 0, "percussion", 35, 81, "drums", engine="drums",
               aliases=("drum-kit", "kit", "percussion")),
)

#: Every instrument by its option word.
INSTRUMENTS: dict[str, Instrument] = {i.key: i for i in _ALL}
_ALIASES: dict[str, str] = {a: i.key for i in _ALL for a in i.aliases}


def instrument_names() -> list[str]:
    """Option words accepted for instrument:..., canonical names first."""
    return list(INSTRUMENTS) + sorted(_ALIASES)


def lookup_instrument(word: str) -> Instrument:
    """Find an instrument by option word or alias, case- and space-insensitive.

    Raises:
        OptionsError: unknown word; the hint suggests the closest known names.
    """
    norm = word.strip().lower().replace(" ", "-").replace("_", "-")
    if norm in INSTRUMENTS:
        return INSTRUMENTS[norm]
    if norm in _ALIASES:
        return INSTRUMENTS[_ALIASES[norm]]
    close = difflib.get_close_matches(norm, instrument_names(), n=3, cutoff=0.6)
    hint = f"Did you mean {' or '.join(close)}?" if close else "Known: " + ", ".join(INSTRUMENTS) + "."
    raise OptionsError(f"I don't know the instrument '{word}'.", hint=hint)
