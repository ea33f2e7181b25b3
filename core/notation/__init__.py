"""Readable notation from transcribed notes: rhythm, meter, key, arrangement, score.

Exports: Notation, MidiPart, notate, write_musicxml, write_midi.

notate() turns Tracks (notes in seconds) into a music21 Score plus the analysis
(tempo and tempo map, meter, key, pickup, bars). Modules: rhythm (beat tracking),
meter (meter, beat level, downbeats, pickup), quantize (beat-grid quantization),
keys (key and spelling), arrange (voices, hands, piano reduction), chords (chord
symbols), build (music21 score), writers (MusicXML, score MIDI), notate (the
composition of these).
"""

from .notate import MidiPart, Notation, notate
from .writers import write_midi, write_musicxml

__all__ = ["MidiPart", "Notation", "notate", "write_midi", "write_musicxml"]
