"""Note events and transcribed tracks, the data that flows between stages.

Exports: Note, Track.

Times are seconds in the input recording ("performance time"); pitches are MIDI
numbers (60 = middle C). Drum hits are Notes on a drum Track whose pitch is a
General MIDI percussion key (36 kick, 38 snare, 42 closed hi-hat, 49 crash ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Note:
    """One performed note: onset and offset in seconds, MIDI pitch, velocity 1..127."""

    start_s: float
    end_s: float
    pitch: int
    velocity: int = 80

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(slots=True)
class Track:
    """The notes transcribed for one part of the score.

    name: the part's display name ("Piano", "Bass", "Violin 1").
    instrument: a key of stemscribe.core.instruments.INSTRUMENTS.
    source: where the audio came from: "mix", "stem:bass", "file:bass.wav".
    engine: which engine produced the notes ("basic-pitch", "transkun", "fusion" (the two
        merged, for piano reductions of mixes), "organ" (transkun held by basic-pitch), "drums").
    """

    name: str
    instrument: str
    notes: list[Note] = field(default_factory=list)
    source: str = "mix"
    engine: str = ""
    is_drum: bool = False
