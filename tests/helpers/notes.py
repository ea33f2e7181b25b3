"""Counting transcribed notes against the notes a test clip was rendered from.

Exports: matched, performed_notes.
"""

from __future__ import annotations

from pathlib import Path

import pretty_midi

from stemscribe.core.notes import Note


def matched(expected: list[tuple[float, int]], notes: list[Note], tol_s: float = 0.05) -> int:
    """How many (onset, pitch) pairs have a note within tol_s at that pitch (each note used once)."""
    used: set[int] = set()
    hits = 0
    for onset, pitch in expected:
        for i, n in enumerate(notes):
            if i not in used and n.pitch == pitch and abs(n.start_s - onset) <= tol_s:
                used.add(i)
                hits += 1
                break
    return hits


def performed_notes(path: Path) -> list[Note]:
    """The notes of a notes.mid (performance time), sorted by start."""
    midi = pretty_midi.PrettyMIDI(str(path))
    notes = [Note(n.start, n.end, n.pitch, n.velocity) for inst in midi.instruments for n in inst.notes]
    return sorted(notes, key=lambda n: (n.start_s, n.pitch))
