"""Arranging quantized notes onto staves: voices, piano hands, piano reduction.

Exports: VoiceEvent, assign_voices, split_hands, reduce_to_piano, legato.

A staff holds at most two voices. Notes that start together and end together
form one chord; a line that sustains while another moves goes to a second
voice (upper line in voice 1). Piano material is split between the hands with
every hand chord kept within reach (a tenth).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import groupby

from .quantize import QNote

#: Widest chord one hand plays, in semitones (a major tenth).
HAND_SPAN_SEMITONES = 16
#: Default split between the hands (middle C goes to the right hand).
HAND_SPLIT_PITCH = 60
#: Gaps up to this many quarters between a note and the next are closed (no tiny rests).
LEGATO_GAP_Q = Fraction(1, 4)
#: Notes that start together and end within this many quarters of each other are one chord.
CHORD_END_TOLERANCE_Q = Fraction(1, 4)


@dataclass
class VoiceEvent:
    """A note or chord in one voice: onset, end (quarters), pitches low to high."""

    onset: Fraction
    end: Fraction
    pitches: list[int]
    velocity: int = 80


def assign_voices(notes: list[QNote], *, max_voices: int = 2) -> list[list[VoiceEvent]]:
    """Distribute a staff's notes over voices; chords where onsets and ends agree.

    Returns:
        Voices (upper first), each a list of non-overlapping VoiceEvents in time order.
    """
    voices: list[list[VoiceEvent]] = [[]]
    ordered = sorted(notes, key=lambda n: (n.onset, -n.pitch))
    onsets = sorted({n.onset for n in ordered})
    for k, (onset, group) in enumerate(groupby(ordered, key=lambda n: n.onset)):
        members = _even_chord_ends(list(group), onsets[k + 1] if k + 1 < len(onsets) else None)
        by_end: dict[Fraction, list[QNote]] = {}
        for n in members:
            by_end.setdefault(n.end, []).append(n)
        chords = sorted(by_end.items(), key=lambda kv: -max(n.pitch for n in kv[1]))
        if len(chords) > max_voices:
            # Too many different lengths: shorten all to the shortest, one chord.
            end = min(by_end)
            chords = [(end, members)]
        for end, chord in chords:
            pitches = sorted({n.pitch for n in chord})
            velocity = max(n.velocity for n in chord)
            free = [v for v in voices if not v or v[-1].end <= onset]
            if free:
                target = free[0]
            elif len(voices) < max_voices:
                target = []
                voices.append(target)
            else:
                target = min(voices, key=lambda v: v[-1].end)
                last = target[-1]
                if last.onset < onset:
                    last.end = onset
                else:
                    last.pitches = sorted(set(last.pitches) | set(pitches))
                    last.end = min(last.end, end)
                    continue
            target.append(VoiceEvent(onset, end, pitches, velocity))
    voices = [v for v in voices if v]
    # The voice that sounds higher on average is voice 1.
    voices.sort(key=lambda v: -sum(sum(e.pitches) / len(e.pitches) for e in v) / len(v))
    return [legato(v) for v in voices]


def _even_chord_ends(members: list[QNote], next_onset: Fraction | None,
                     tolerance_q: Fraction = CHORD_END_TOLERANCE_Q) -> list[QNote]:
    """Give notes that start together one end where their ends differ by little.

    Performed chords end raggedly (a piano model hears each string's damper on
    its own); written with their own ends, the notes of one chord fall into two
    voices with rests between them. Ends are grouped from the shortest up: a note
    ending within ``tolerance_q`` (and within half its length) of the group's
    first end joins it, and the group takes its longest end, provided no other
    note of the staff starts before that end (then the shorter notes belong to a
    line that moves on, and keep their ends). A line that clearly outlasts the
    chord keeps its own end (and a voice of its own).

    Args:
        members: notes with one onset.
        next_onset: the staff's next onset after theirs (None at the end).
    """
    if len(members) < 2:
        return members
    out: list[QNote] = []
    group: list[QNote] = []

    def close() -> None:
        end = max(m.end for m in group)
        if next_onset is not None and next_onset < end:
            out.extend(group)
            return
        out.extend(m if m.end == end else QNote(m.onset, end, m.pitch, m.velocity) for m in group)

    for n in sorted(members, key=lambda n: n.end):
        if group and (n.end - group[0].end > tolerance_q or n.end - group[0].end > (n.end - n.onset) / 2):
            close()
            group = []
        group.append(n)
    close()
    return out


def legato(events: list[VoiceEvent], gap_q: Fraction = LEGATO_GAP_Q) -> list[VoiceEvent]:
    """Close small gaps before the next event (performance articulation is not a rest).

    A gap no longer than LEGATO_GAP_Q and no longer than the note itself is
    joined to the note: a detached eighth is written as an eighth, not as a
    sixteenth and a sixteenth rest.
    """
    for a, b in zip(events, events[1:]):
        if a.end > b.onset:
            a.end = b.onset
        elif b.onset - a.end <= gap_q and b.onset - a.end <= (a.end - a.onset):
            a.end = b.onset
    return events


def split_hands(notes: list[QNote]) -> tuple[list[QNote], list[QNote]]:
    """Split piano notes into (right hand, left hand), each chord within reach."""
    right: list[QNote] = []
    left: list[QNote] = []
    for _, group in groupby(sorted(notes, key=lambda n: (n.onset, n.pitch)), key=lambda n: n.onset):
        chord = list(group)
        rh = [n for n in chord if n.pitch >= HAND_SPLIT_PITCH]
        lh = [n for n in chord if n.pitch < HAND_SPLIT_PITCH]
        # An empty hand takes the notes nearest to it if the other hand cannot reach them all.
        if rh and not lh and rh[-1].pitch - rh[0].pitch > HAND_SPAN_SEMITONES:
            while rh[-1].pitch - rh[0].pitch > HAND_SPAN_SEMITONES:
                lh.append(rh.pop(0))
        elif lh and not rh and lh[-1].pitch - lh[0].pitch > HAND_SPAN_SEMITONES:
            while lh[-1].pitch - lh[0].pitch > HAND_SPAN_SEMITONES:
                rh.insert(0, lh.pop())
        right.extend(rh)
        left.extend(lh)
    return right, left


def reduce_to_piano(notes: list[QNote], *, easy: bool) -> tuple[list[QNote], list[QNote]]:
    """Piano reduction of a mix: melody on top, harmony in the middle, bass below.

    Args:
        notes: every pitched note of the mix (quantized).
        easy: keep only the melody (right hand) and the bass line (left hand).

    Returns:
        (right hand notes, left hand notes).
    """
    right: list[QNote] = []
    left: list[QNote] = []
    for _, group in groupby(sorted(notes, key=lambda n: (n.onset, n.pitch)), key=lambda n: n.onset):
        chord = _dedupe(list(group))
        top, bottom = chord[-1], chord[0]
        if len(chord) == 1:
            (right if top.pitch >= HAND_SPLIT_PITCH - 5 else left).append(top)
            continue
        if easy:
            right.append(top if top.pitch >= HAND_SPLIT_PITCH - 5 else _octave_up(top))
            left.append(bottom if bottom.pitch < HAND_SPLIT_PITCH else _octave_down(bottom))
            continue
        rh = [n for n in chord if top.pitch - n.pitch <= 12 and n.pitch >= HAND_SPLIT_PITCH - 7]
        lh = [n for n in chord if n not in rh and n.pitch - bottom.pitch <= 12]
        rh = _fit_span(rh, keep_top=True)
        lh = _fit_span(lh, keep_top=False)
        right.extend(rh)
        left.extend(lh)
    return right, left


def _dedupe(chord: list[QNote]) -> list[QNote]:
    seen: dict[int, QNote] = {}
    for n in chord:
        if n.pitch not in seen or seen[n.pitch].end < n.end:
            seen[n.pitch] = n
    return sorted(seen.values(), key=lambda n: n.pitch)


def _fit_span(chord: list[QNote], *, keep_top: bool) -> list[QNote]:
    chord = sorted(chord, key=lambda n: n.pitch)
    while len(chord) > 1 and chord[-1].pitch - chord[0].pitch > HAND_SPAN_SEMITONES:
        chord.pop(0 if keep_top else -1)
    return chord[-4:] if keep_top else chord[:4]


def _octave_up(n: QNote) -> QNote:
    return QNote(n.onset, n.end, n.pitch + 12, n.velocity)


def _octave_down(n: QNote) -> QNote:
    return QNote(n.onset, n.end, n.pitch - 12, n.velocity)
