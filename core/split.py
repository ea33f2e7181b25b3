"""Splitting one transcribed part by musical function: a melody on top, its accompaniment below.

Exports: SplitThresholds, SplitDecision, split_melody, split_bass, top_line.

A separated "other" stem often carries a lead instrument over chords (a sax over
piano comping, a fiddle over a strummed guitar). Written as one part it is an
unreadable staff that holds both. ``split_melody`` takes the part's notes and
decides, from the notes alone, whether they are a melody over an accompaniment:

1. the part is polyphonic (on average at least ``min_polyphony`` notes sound at
   each onset), else it is a single line already;
2. its top line (``top_line``: at every onset the highest note sounding, higher
   quieter notes an overtone above a note of the same onset ignored, and
   notes far from the line's local register dropped) is a real line: at least
   ``min_line_kept`` of the top notes stay in its register, it sounds through at
   least ``min_coverage`` of the part's span, with a median step of at most
   ``max_median_step`` semitones;
3. the line is distinct from the rest: at least ``min_independent`` of its notes
   start where no other note starts or are held while other notes start under them
   (a chordal part's top voice is struck and released with its chord), it sits at least ``min_register_gap`` semitones above the rest's
   median, and both sides keep at least ``min_share`` of the notes.

Only then are the notes split; the decision and its numbers are returned either
way, with one plain-English reason for the chat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .notes import Note

#: Intervals (semitones) at which a transcription's ghost notes sit above a real one: octave, twelfth, two octaves.
_OVERTONES = (12, 19, 24)
#: Top-line notes around each one whose median pitch is the line's register there.
_REGISTER_WINDOW = 9


@dataclass(frozen=True)
class SplitThresholds:
    """Where the split's lines are drawn (see the module docstring).

    onset_tolerance_s: onsets this close count as one onset.
    min_line_kept: least share of the top notes that stay in the line's register.
    max_leap: a top-line note further than this (semitones) from the line's local register is not part of it.
    """

    min_notes: int = 16
    min_polyphony: float = 1.5
    min_coverage: float = 0.5
    min_line_kept: float = 0.75
    max_median_step: float = 4.0
    min_independent: float = 0.3
    min_register_gap: float = 3.0
    min_share: float = 0.15
    onset_tolerance_s: float = 0.05
    max_leap: int = 9


@dataclass(frozen=True)
class SplitDecision:
    """Whether a part was split, why, and the measures behind it (plain data for result.json).

    split: True when the notes were split into a melody and an accompaniment.
    reason: one line for the chat.
    numbers: the measures, rounded.
    tracks: the names of the two parts written when split (melody first), else empty.
    """

    split: bool
    reason: str
    numbers: dict = field(default_factory=dict)
    tracks: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Plain data for result.json."""
        data = asdict(self)
        data["tracks"] = list(self.tracks)
        return data


def _sounding_at_onsets(notes: list[Note]) -> float:
    starts = np.array([n.start_s for n in notes])
    ends = np.array([n.end_s for n in notes])
    return float(np.mean([np.count_nonzero((starts <= s + 1e-9) & (ends > s)) for s in starts]))


def _ghost_of(j: int, k: int, starts: np.ndarray, pitches: np.ndarray, velocities: np.ndarray,
              tolerance_s: float) -> bool:
    """Whether note j looks like a transcription's overtone of note k: same onset, an overtone above, quieter."""
    return (abs(starts[j] - starts[k]) <= tolerance_s and int(pitches[j] - pitches[k]) in _OVERTONES
            and velocities[j] < velocities[k])


def top_line(notes: list[Note], *, onset_tolerance_s: float = 0.05, max_leap: int = 9) -> list[int]:
    """Indices (into ``notes``) of the part's top line, in time order.

    A note is on the top line when no higher note sounds at its onset, except a
    quieter higher note that starts with it at an overtone interval above it
    (a transcription's ghost, not a voice). Notes more than ``max_leap``
    semitones from the line's register around them (the median of the nine
    nearest line notes: a chord top poking out while the melody rests, a stray
    harmonic) are dropped.
    """
    return _top_line(notes, onset_tolerance_s, max_leap)[0]


def _top_line(notes: list[Note], onset_tolerance_s: float, max_leap: int) -> tuple[list[int], int]:
    """The top line and how many notes it had before the register check (see ``top_line``)."""
    order = sorted(range(len(notes)), key=lambda i: (notes[i].start_s, -notes[i].pitch))
    starts = np.array([notes[i].start_s for i in order])
    ends = np.array([notes[i].end_s for i in order])
    pitches = np.array([notes[i].pitch for i in order])
    velocities = np.array([notes[i].velocity for i in order])
    line: list[int] = []
    for k, index in enumerate(order):
        at = starts[k] + onset_tolerance_s
        over = np.flatnonzero((starts <= at) & (ends > at) & (pitches > pitches[k]))
        blocking = [j for j in over if not _ghost_of(j, k, starts, pitches, velocities, onset_tolerance_s)]
        if not blocking:
            line.append(k)
    # Of notes starting together on the line, only the highest that is no overtone of another one stays.
    kept: list[int] = []
    group: list[int] = []
    for k in line + [None]:
        if k is not None and group and abs(starts[k] - starts[group[0]]) <= onset_tolerance_s:
            group.append(k)
            continue
        if group:
            real = [g for g in group
                    if not any(_ghost_of(g, h, starts, pitches, velocities, onset_tolerance_s) for h in group)]
            kept.append(max(real or group, key=lambda g: pitches[g]))
        group = [k] if k is not None else []
    before = len(kept)
    if len(kept) >= 3:
        # The line's register around each note: a note far from it is a chord top or a stray, not the tune.
        line_pitches = pitches[kept].astype(float)
        half = _REGISTER_WINDOW // 2
        local = np.array([np.median(line_pitches[max(0, i - half):i + half + 1]) for i in range(len(kept))])
        kept = [k for k, p, m in zip(kept, line_pitches, local) if abs(p - m) <= max_leap]
    return [order[k] for k in kept], before


def _rounded(numbers: dict) -> dict:
    return {key: round(float(value), 3) for key, value in numbers.items()}


def _unsplit(ordered: list[Note], reason: str, numbers: dict) -> tuple[list[Note], list[Note], SplitDecision]:
    """The result of a split that did not happen: no line taken out, every note kept, and why."""
    return [], ordered, SplitDecision(False, reason, _rounded(numbers))


def _coverage(line: list[Note], span_s: float) -> float:
    """Share of ``span_s`` during which a line note sounds (each cut at the next one's onset)."""
    if span_s <= 0 or not line:
        return 0.0
    total = 0.0
    for note, following in zip(line, line[1:] + [None]):
        end = note.end_s if following is None else min(note.end_s, following.start_s)
        total += max(0.0, end - note.start_s)
    return total / span_s


def split_melody(notes: list[Note], *, thresholds: SplitThresholds = SplitThresholds(),
                 names: tuple[str, str] = ("Melody", "Accompaniment"),
                 label: str = "this part") -> tuple[list[Note], list[Note], SplitDecision]:
    """Split a part's notes into its melody and accompaniment when they are a melody over chords.

    Args:
        notes: one part's transcription (any order).
        thresholds: where the lines are drawn.
        names: the two parts' names when split (melody first).
        label: what the reason calls the part ("the other stem").

    Returns:
        (melody notes, accompaniment notes, decision), each in time order. When not
        split, the melody is empty and the accompaniment holds every note.
    """
    t = thresholds
    ordered = sorted(notes, key=lambda n: (n.start_s, n.pitch))

    def keep(why: str, numbers: dict) -> tuple[list[Note], list[Note], SplitDecision]:
        return _unsplit(ordered, f"{label}: kept as one part, {why}", numbers)

    numbers: dict[str, float] = {"notes": float(len(ordered))}
    if len(ordered) < t.min_notes:
        return keep(f"too few notes to tell a melody from its accompaniment ({len(ordered)})", numbers)
    numbers["polyphony"] = _sounding_at_onsets(ordered)
    if numbers["polyphony"] < t.min_polyphony:
        return keep("it is a single line", numbers)
    line_index, candidates = _top_line(ordered, t.onset_tolerance_s, t.max_leap)
    on_line = set(line_index)
    melody = [ordered[i] for i in line_index]
    rest = [n for i, n in enumerate(ordered) if i not in on_line]
    span = max(n.end_s for n in ordered) - ordered[0].start_s
    steps = np.abs(np.diff([n.pitch for n in melody])) if len(melody) > 1 else np.array([99])
    rest_starts = np.array(sorted(n.start_s for n in rest)) if rest else np.array([])
    if rest_starts.size:
        positions = np.searchsorted(rest_starts, [n.start_s for n in melody])
        near = [min(abs(rest_starts[min(p, rest_starts.size - 1)] - n.start_s),
                    abs(rest_starts[max(p - 1, 0)] - n.start_s)) for p, n in zip(positions, melody)]
        # A melody note is on its own rhythm when it starts where no other note does, or when it
        # is held while the accompaniment strikes again under it (a sax holding over comping);
        # a chord's top voice is struck and released with its chord.
        tol = t.onset_tolerance_s
        held_over = [bool(np.any((rest_starts > n.start_s + tol) & (rest_starts < n.end_s - tol))) for n in melody]
        independent = float(np.mean((np.array(near) > tol) | np.array(held_over)))
    else:
        independent = 1.0
    numbers.update(
        melody_share=len(melody) / len(ordered),
        line_kept=len(melody) / max(1, candidates),
        coverage=_coverage(melody, span),
        median_step=float(np.median(steps)),
        independent=independent,
        register_gap=(float(np.median([n.pitch for n in melody])) - float(np.median([n.pitch for n in rest]))
                      if rest else 0.0),
    )
    share = numbers["melody_share"]
    if share < t.min_share or share > 1.0 - t.min_share:
        return keep(f"its top line holds {share:.0%} of the notes, not a melody with an accompaniment", numbers)
    if numbers["line_kept"] < t.min_line_kept:
        return keep(f"its top notes do not form a line (only {numbers['line_kept']:.0%} stay in one register)",
                    numbers)
    if numbers["coverage"] < t.min_coverage:
        return keep(f"its top line sounds only {numbers['coverage']:.0%} of the time", numbers)
    if numbers["median_step"] > t.max_median_step:
        return keep(f"its top line jumps around (median step {numbers['median_step']:.0f} semitones), "
                    "it is not a melody", numbers)
    if numbers["independent"] < t.min_independent:
        return keep(f"its top line moves with the chords ({numbers['independent']:.0%} of its notes start on "
                    "their own), a chordal part", numbers)
    if numbers["register_gap"] < t.min_register_gap:
        return keep(f"its top line is not above the rest ({numbers['register_gap']:.0f} semitones)", numbers)
    rounded = _rounded(numbers)
    reason = (f"{label}: split into {names[0]} ({len(melody)} notes, the top line, "
              f"{numbers['independent']:.0%} of them on their own rhythm) and {names[1]} ({len(rest)} notes)")
    return melody, rest, SplitDecision(True, reason, rounded, tuple(names))


#: A bass line pulled out of a part sits at or below this median pitch (MIDI 52, E3).
BASS_MAX_MEDIAN = 52
#: ... and at least this many semitones below the rest of the part's median.
BASS_MIN_GAP = 7.0
#: Least share of the part's notes a bass line holds (one root under a chord of three or four
#: notes, held while the chords repeat, is a small share).
BASS_MIN_SHARE = 0.05


def split_bass(notes: list[Note], *, thresholds: SplitThresholds = SplitThresholds(),
               label: str = "this part") -> tuple[list[Note], list[Note], SplitDecision]:
    """Pull a bass line out of a part whose lowest notes are one (the bass a separator left in "other").

    htdemucs folds a bass guitar into "other" when drums and a piano play with it (dev 07:
    its bass stem -58 dB); the routing calls this when the bass stem was dropped as silent.
    The bottom line is the top line of the part mirrored in pitch (at every onset the lowest
    note sounding). It is kept when it is a line (``min_line_kept`` of its candidates in one
    register, sounding at least 40 % of the span: a bass rests more than a melody), sits low
    (median <= BASS_MAX_MEDIAN) and BASS_MIN_GAP below the rest, and holds at least
    BASS_MIN_SHARE of the notes (the rest at least ``min_share``).

    Returns:
        (bass notes, the rest, decision) in time order; when not split the bass is empty.
    """
    t = thresholds
    ordered = sorted(notes, key=lambda n: (n.start_s, n.pitch))

    def keep(why: str, numbers: dict) -> tuple[list[Note], list[Note], SplitDecision]:
        return _unsplit(ordered, f"{label}: no bass line taken out, {why}", numbers)

    numbers: dict[str, float] = {"notes": float(len(ordered))}
    if len(ordered) < t.min_notes:
        return keep(f"too few notes ({len(ordered)})", numbers)
    mirrored = [Note(n.start_s, n.end_s, 127 - n.pitch, n.velocity) for n in ordered]
    line_index, candidates = _top_line(mirrored, t.onset_tolerance_s, t.max_leap)
    on_line = set(line_index)
    bass = [ordered[i] for i in sorted(line_index, key=lambda i: ordered[i].start_s)]
    rest = [n for i, n in enumerate(ordered) if i not in on_line]
    if not bass or not rest:
        return keep("it has no lower line under other notes", numbers)
    span = max(n.end_s for n in ordered) - ordered[0].start_s
    bass_median = float(np.median([n.pitch for n in bass]))
    numbers.update(bass_share=len(bass) / len(ordered), line_kept=len(bass) / max(1, candidates),
                   coverage=_coverage(bass, span), bass_median=bass_median,
                   register_gap=float(np.median([n.pitch for n in rest])) - bass_median)
    share = numbers["bass_share"]
    if share < BASS_MIN_SHARE or share > 1.0 - t.min_share:
        return keep(f"its lowest notes hold {share:.0%} of them", numbers)
    if numbers["line_kept"] < t.min_line_kept:
        return keep(f"its lowest notes do not form a line ({numbers['line_kept']:.0%} in one register)", numbers)
    if numbers["coverage"] < 0.4:
        return keep(f"its lowest line sounds only {numbers['coverage']:.0%} of the time", numbers)
    if bass_median > BASS_MAX_MEDIAN:
        return keep(f"its lowest line is not in a bass register (median MIDI {bass_median:.0f})", numbers)
    if numbers["register_gap"] < BASS_MIN_GAP:
        return keep(f"its lowest line is not apart from the rest ({numbers['register_gap']:.0f} semitones)", numbers)
    rounded = _rounded(numbers)
    reason = (f"{label}: its bass line ({len(bass)} notes, median MIDI {bass_median:.0f}) written as Bass, "
              "since the separated bass stem was silent")
    return bass, rest, SplitDecision(True, reason, rounded, ("Bass",))
