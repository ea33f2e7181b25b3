"""Chord symbols for lead-sheet style scores and piano reductions.

Exports: chord_symbols.

Each harmonic window (half a bar in 4/4 and 12/8, a bar otherwise) gets the
triad or seventh chord whose tones carry most of the window's sounding
duration, with a bonus when its root is in the bass. A symbol is written only
where the harmony changes.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .keys import Speller
from .quantize import QNote

# kind -> (intervals above the root, figure suffix, simplicity prior)
_CHORDS = {
    "major": ((0, 4, 7), "", 0.10),
    "minor": ((0, 3, 7), "m", 0.08),
    "dominant-seventh": ((0, 4, 7, 10), "7", 0.02),
    "minor-seventh": ((0, 3, 7, 10), "m7", 0.0),
    "major-seventh": ((0, 4, 7, 11), "maj7", -0.02),
    "diminished": ((0, 3, 6), "dim", -0.02),
}
#: Windows whose notes sound for less than this (quarters, summed) get no symbol.
MIN_WINDOW_WEIGHT_Q = 0.5


def _window_q(beat_q: Fraction, beats_per_bar: int) -> Fraction:
    return beat_q * (2 if beats_per_bar == 4 else beats_per_bar)


def chord_symbols(notes: list[QNote], *, beat_q: Fraction, beats_per_bar: int, pickup_q: Fraction,
                  speller: Speller) -> list[tuple[Fraction, str]]:
    """(offset in quarters, music21 chord figure such as 'B-m7') at each harmony change."""
    if not notes:
        return []
    window = _window_q(beat_q, beats_per_bar)
    end = max(n.end for n in notes)
    start = pickup_q if pickup_q > 0 else Fraction(0)
    out: list[tuple[Fraction, str]] = []
    previous = None
    at = start
    while at < end:
        hi = at + window
        weights = np.zeros(12)
        bass_weights = np.zeros(12)
        lowest = min((n.pitch for n in notes if n.onset < hi and n.end > at), default=None)
        for n in notes:
            overlap = min(n.end, hi) - max(n.onset, at)
            if overlap <= 0:
                continue
            weights[n.pitch % 12] += float(overlap)
            if lowest is not None and n.pitch <= lowest + 4:
                bass_weights[n.pitch % 12] += float(overlap)
        if weights.sum() >= MIN_WINDOW_WEIGHT_Q:
            figure = _best_chord(weights, bass_weights, speller)
            if figure != previous:
                out.append((at, figure))
                previous = figure
        at = hi
    return out


def _best_chord(weights: np.ndarray, bass: np.ndarray, speller: Speller) -> str:
    total = weights.sum()
    best, best_score = "C", -np.inf
    for root in range(12):
        for intervals, suffix, prior in _CHORDS.values():
            tones = [(root + i) % 12 for i in intervals]
            inside = weights[tones].sum() / total
            missing = sum(1 for t in tones if weights[t] == 0) / len(tones)
            score = inside - 0.35 * missing + prior + 0.15 * (bass[root] / (bass.sum() + 1e-9))
            if score > best_score:
                best, best_score = speller.names[root].replace("b", "-") + suffix, score
    return best
