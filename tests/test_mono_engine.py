"""The mono engine's f0-to-notes step: one note per sung note through vibrato and glides."""

import numpy as np

from stemscribe.core.engines.mono import HOP_S, f0_to_notes


def _hz(midi):
    return 440.0 * 2 ** ((np.asarray(midi) - 69) / 12)


def test_held_vibrato_note_is_one_note():
    t = np.arange(0, 2.0, HOP_S)
    midi = 67 + 0.6 * np.sin(2 * np.pi * 5.5 * t)  # +-60 cents at 5.5 Hz
    notes = f0_to_notes(_hz(midi), np.full(t.size, 0.9), np.full(t.size, -20.0), HOP_S)
    assert len(notes) == 1
    assert notes[0].pitch == 67


def test_glide_between_two_notes_is_two_notes():
    t = np.arange(0, 2.0, HOP_S)
    midi = np.where(t < 0.9, 60.0, np.where(t > 1.1, 64.0, 60 + 4 * (t - 0.9) / 0.2))
    notes = f0_to_notes(_hz(midi), np.full(t.size, 0.9), np.full(t.size, -20.0), HOP_S)
    assert [n.pitch for n in notes] == [60, 64]
