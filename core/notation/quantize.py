"""Quantization of performed notes onto a detected beat grid.

Exports: QNote, clean_notes, choose_subdivisions, quantize_notes, detect_swing, unswing.

Times become exact quarter-note Fractions measured from the first notated beat.
Each beat picks its own subdivision (straight 1/2/4 or triplet 3/6 in simple
meters; 3/6 or duplet 2 in compound meters) from the onsets that fall in it,
so a triplet passage inside straight music is written as triplets and not as
a ragged sixteenth approximation.

Swung eighths (long-short pairs, the second eighth at about two thirds of the
beat) are written the way jazz and blues charts write them: as plain eighths,
under a "Swing" tempo mark. Left alone, the per-beat choice reads them as a
dotted eighth and a sixteenth, or as triplets, on every beat. detect_swing finds
a recording whose off-beat onsets gather between 0.55 and 0.71 of the beat (a
dotted rhythm sits at 0.75, straight eighths at 0.5); unswing maps that position
to the half beat before quantizing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..notes import Note
from .rhythm import BeatGrid

#: Notes shorter than this are dropped as transcription noise (ghost notes).
GHOST_MIN_DURATION_S = 0.035
#: Notes softer than this are dropped as ghost notes.
GHOST_MIN_VELOCITY = 12
#: Two notes of one pitch separated by less than this are one fragmented note.
FRAGMENT_GAP_S = 0.02
#: ... and the later piece is this much softer (a re-attack is about as loud as the note).
FRAGMENT_VELOCITY_RATIO = 0.5
#: Onset tolerance (in beats) that the subdivision cost treats as "on the grid".
GRID_TOLERANCE_BEATS = 0.07

#: Extra cost of triplets in a simple-meter beat with fewer than two onsets off the beat:
#: a lone onset near a third of the beat is far more often a late eighth or a sixteenth
#: (or a fragment of a held note) than a triplet, and a single triplet eighth between
#: rests reads badly. On the dev set this removes 3 of 6 triplet beats, all spurious,
#: and no score-note F1 moves.
LONE_TRIPLET_COST = 3.0

#: Swing: the off-beat onsets that count (fraction of the beat) and the window of a swung eighth.
SWING_OFFBEAT = (0.12, 0.88)
SWING_WINDOW = (0.55, 0.85)
#: The median swung position must be under this (a dotted eighth + sixteenth sits at 0.75).
SWING_MAX_RATIO = 0.71
#: At least this many swung onsets, and this share of all off-beat onsets.
SWING_MIN_ONSETS = 8
SWING_MIN_SHARE = 0.6
#: At most this many straight eighths (0.42-0.55) and first triplet thirds / sixteenths
#: (0.25-0.42), relative to the swung onsets.
SWING_MAX_STRAIGHT = 0.2
SWING_MAX_THIRDS = 0.25
#: Swing ratio used when the user asks for swing:yes and the recording gives no measure of it.
DEFAULT_SWING_RATIO = 2 / 3

# Subdivision candidates and their simplicity priors (cost added per beat).
_SIMPLE_DIVISIONS = {1: 0.0, 2: 0.3, 4: 1.0, 3: 1.6, 6: 3.0}
_COMPOUND_DIVISIONS = {1: 0.0, 3: 0.3, 6: 1.0, 2: 2.2}


@dataclass(frozen=True, slots=True)
class QNote:
    """A note on the score: onset and end in quarter notes (exact), MIDI pitch, velocity."""

    onset: Fraction
    end: Fraction
    pitch: int
    velocity: int = 80

    @property
    def length(self) -> Fraction:
        return self.end - self.onset


def clean_notes(notes: list[Note], *, low: int = 0, high: int = 127) -> list[Note]:
    """Drop ghost notes and out-of-range pitches; join fragments of one held note."""
    kept = [n for n in notes if n.end_s - n.start_s >= GHOST_MIN_DURATION_S
            and n.velocity >= GHOST_MIN_VELOCITY and low <= n.pitch <= high]
    by_pitch: dict[int, list[Note]] = {}
    for n in sorted(kept, key=lambda n: n.start_s):
        run = by_pitch.setdefault(n.pitch, [])
        if run and n.start_s - run[-1].end_s < FRAGMENT_GAP_S and n.velocity < FRAGMENT_VELOCITY_RATIO * run[-1].velocity:
            prev = run[-1]
            run[-1] = Note(prev.start_s, max(prev.end_s, n.end_s), prev.pitch, prev.velocity)
        else:
            run.append(n)
    return sorted((n for run in by_pitch.values() for n in run), key=lambda n: (n.start_s, n.pitch))


def choose_subdivisions(positions: np.ndarray, *, compound: bool) -> dict[int, int]:
    """Subdivision per beat index from the fractional beat positions of all onsets."""
    candidates = _COMPOUND_DIVISIONS if compound else _SIMPLE_DIVISIONS
    finest = 6
    # An onset just before a beat belongs to that beat.
    beat_of = np.floor(positions + 0.5 / (2 * finest)).astype(int)
    chosen: dict[int, int] = {}
    for b in np.unique(beat_of):
        frac = positions[beat_of == b] - b
        off_beat = np.unique(np.round(frac[np.abs(frac) > GRID_TOLERANCE_BEATS] * 12))
        best, best_cost = 1, math.inf
        for div, prior in candidates.items():
            if not compound and div in (3, 6) and len(off_beat) < 2:
                prior += LONE_TRIPLET_COST
            err = np.abs(frac * div - np.round(frac * div)) / div
            cost = float(np.sum(np.minimum(err / GRID_TOLERANCE_BEATS, 3.0) ** 2)) + prior
            if cost < best_cost:
                best, best_cost = div, cost
        chosen[int(b)] = best
    return chosen


def detect_swing(positions: np.ndarray, *, max_ratio: float = SWING_MAX_RATIO,
                 max_thirds: float = SWING_MAX_THIRDS) -> float | None:
    """The swing ratio of a simple-meter recording (where its second eighths sit), or None.

    Args:
        positions: onset positions in beats (from BeatGrid.beat_position).
        max_ratio: the latest median position that counts as swing.
        max_thirds: the most onsets near the first third of the beat, per swung onset.

    Returns:
        The median position of the swung second eighths within the beat (about
        0.6-0.7), or None when the eighths are straight, dotted, or too few to tell.
    """
    frac = np.mod(np.asarray(positions, dtype=float), 1.0)
    off = frac[(frac >= SWING_OFFBEAT[0]) & (frac <= SWING_OFFBEAT[1])]
    swung = off[(off >= SWING_WINDOW[0]) & (off <= SWING_WINDOW[1])]
    if len(swung) < SWING_MIN_ONSETS or len(swung) < SWING_MIN_SHARE * len(off):
        return None
    straight = np.count_nonzero((off >= 0.42) & (off < SWING_WINDOW[0]))
    thirds = np.count_nonzero((off >= 0.25) & (off < 0.42))
    ratio = float(np.median(swung))
    if ratio > max_ratio or straight > SWING_MAX_STRAIGHT * len(swung) or thirds > max_thirds * len(swung):
        return None
    return ratio


def unswing(positions: np.ndarray, ratio: float) -> np.ndarray:
    """Map swung beat positions onto straight ones: ``ratio`` of the beat goes to its half."""
    pos = np.asarray(positions, dtype=float)
    base = np.floor(pos)
    frac = pos - base
    straight = np.where(frac <= ratio, 0.5 * frac / ratio, 0.5 + 0.5 * (frac - ratio) / (1.0 - ratio))
    return base + straight


def _snap(pos: float, divisions: dict[int, int], default: int) -> Fraction:
    base = math.floor(pos + 1 / 24)
    div = divisions.get(base, default)
    k = round((pos - base) * div)
    return Fraction(base) + Fraction(k, div)


def quantize_notes(notes: list[Note], grid: BeatGrid, divisions: dict[int, int],
                   swing: float | None = None) -> list[QNote]:
    """Quantize notes (seconds) to QNotes (quarters from the first notated beat).

    Args:
        notes: cleaned notes of one part.
        grid: the notated beat grid.
        divisions: subdivision per beat index (from choose_subdivisions on all parts,
            on unswung positions when ``swing`` is given).
        swing: the swing ratio (detect_swing) to write straight, or None.

    Returns:
        QNotes sorted by onset then pitch; duplicates of one pitch at one onset merged.
    """
    if not notes:
        return []
    beat_q = Fraction(grid.beat_quarters).limit_denominator(4)
    compound = grid.beat_quarters == 1.5
    default = 3 if compound else 2
    starts = grid.beat_position(np.array([n.start_s for n in notes]))
    ends = grid.beat_position(np.array([n.end_s for n in notes]))
    if swing is not None:
        starts, ends = unswing(starts, swing), unswing(ends, swing)
    out: dict[tuple[Fraction, int], QNote] = {}
    for n, s, e in zip(notes, starts, ends):
        on = _snap(float(s), divisions, default)
        off = _snap(float(e), divisions, default)
        if off <= on:
            off = on + Fraction(1, divisions.get(math.floor(on), default))
        q = QNote(on * beat_q, off * beat_q, n.pitch, n.velocity)
        key = (q.onset, q.pitch)
        if key not in out or out[key].end < q.end:
            out[key] = q
    return sorted(out.values(), key=lambda q: (q.onset, q.pitch))
