"""Meter, notated beat level and downbeat phase from a tracked pulse.

Exports: analyze_meter, beat_division, METER_TEMPLATES.

The pulse from rhythm.track_beats is divided into tatums (2 or 3 per pulse,
whichever fits the note onsets better). Every candidate bar structure is a
metrical-weight template over tatums (Lerdahl/Jackendoff-style dot heights);
onset salience, bass notes and harmonic change along the tatum grid are
correlated with each template at each phase. The best structure is then
labelled with the beat unit whose tempo is most plausible (so a 2/4 rag and a
4/4 allegro come out right even though their pulses look alike).
"""

from __future__ import annotations

import math

import numpy as np

from .rhythm import BeatGrid, OnsetEvent

# (bar length in tatums, tatums per notated-beat group) -> weights per tatum.
# "simple" structures group tatums in twos, "compound" in threes.
METER_TEMPLATES: dict[str, tuple[int, list[float]]] = {
    "duple": (4, [4, 1, 2, 1]),
    "triple": (6, [4, 1, 2, 1, 2, 1]),
    "quadruple": (8, [4, 1, 2, 1, 3, 1, 2, 1]),
    "compound-duple": (6, [4, 1, 1, 2, 1, 1]),
    "compound-triple": (9, [4, 1, 1, 2, 1, 1, 2, 1, 1]),
    "compound-quadruple": (12, [4, 1, 1, 2, 1, 1, 3, 1, 1, 2, 1, 1]),
    "single-triple": (3, [4, 1, 1]),
}
#: Structures allowed for each pulse division, with a prior bonus (common meters first).
_STRUCTURES = {
    2: {"duple": 0.02, "triple": 0.0, "quadruple": 0.03, "compound-duple": -0.02},
    3: {"compound-duple": 0.03, "compound-triple": -0.03, "compound-quadruple": 0.0, "single-triple": -0.05},
}
#: Notated beat tempo that reads most naturally (quarter or dotted quarter per minute).
PREFERRED_BEAT_BPM = 96.0


def beat_division(beats_s: np.ndarray, events: list[OnsetEvent]) -> int:
    """2 when onsets between beats sit on halves/quarters, 3 when on thirds."""
    if len(beats_s) < 2 or not events:
        return 2
    times = np.array([e.time_s for e in events])
    weights = np.array([e.weight for e in events])
    pos = np.interp(times, beats_s, np.arange(len(beats_s)))
    frac = pos - np.floor(pos)
    inner = (frac > 0.12) & (frac < 0.88)
    if inner.sum() < 3:
        return 2
    f, w = frac[inner], weights[inner]
    err2 = np.minimum(np.abs(f[:, None] - np.array([0.25, 0.5, 0.75])[None, :]), 1).min(axis=1)
    err3 = np.abs(f[:, None] - np.array([1 / 3, 2 / 3])[None, :]).min(axis=1)
    # Sixteenths in a duple beat would fit a 1/6 grid poorly, triplets fit 1/4 poorly.
    cost2 = float(np.sum(w * np.minimum(err2, 0.1) ** 2))
    cost3 = float(np.sum(w * np.minimum(err3, 0.1) ** 2))
    return 3 if cost3 < 0.6 * cost2 else 2


def _tatum_times(beats_s: np.ndarray, division: int) -> np.ndarray:
    idx = np.arange((len(beats_s) - 1) * division + 1) / division
    return np.interp(idx, np.arange(len(beats_s)), beats_s)


def _tatum_features(tatums: np.ndarray, events: list[OnsetEvent]) -> np.ndarray:
    """Per-tatum salience: onsets, bass onsets and harmonic change."""
    n = len(tatums)
    onset = np.zeros(n)
    bass = np.zeros(n)
    chroma = np.zeros((n, 12))
    if n < 2:
        return onset
    period = np.median(np.diff(tatums))
    lows = np.array([e.low_pitch for e in events]) if events else np.zeros(0)
    bass_line = np.percentile(lows, 35) if len(lows) else 0
    for ev in events:
        j = int(np.argmin(np.abs(tatums - ev.time_s)))
        if abs(tatums[j] - ev.time_s) > 0.3 * period:
            continue
        onset[j] += ev.weight
        if ev.low_pitch <= bass_line:
            bass[j] += ev.weight
        for p in ev.pitches:
            chroma[j, p % 12] += 1.0
    change = np.zeros(n)
    span = 2
    for j in range(span, n - span):
        before = chroma[j - span:j].sum(axis=0)
        after = chroma[j:j + span].sum(axis=0)
        nb, na = np.linalg.norm(before), np.linalg.norm(after)
        if nb > 0 and na > 0:
            change[j] = 1.0 - float(before @ after) / (nb * na)
    feats = []
    for f in (onset, bass, change):
        s = f.std()
        feats.append((f - f.mean()) / s if s > 0 else np.zeros(n))
    return feats[0] + 0.8 * feats[1] + 0.8 * feats[2]


def _best_structure(feature: np.ndarray, division: int) -> tuple[str, int, float]:
    best = ("quadruple" if division == 2 else "compound-duple", 0, -math.inf)
    for name, bonus in _STRUCTURES[division].items():
        length, weights = METER_TEMPLATES[name]
        if len(feature) < 2 * length:
            continue
        tmpl = np.array(weights, dtype=float)
        tmpl = (tmpl - tmpl.mean()) / tmpl.std()
        reps = int(math.ceil(len(feature) / length)) + 1
        for phase in range(length):
            pattern = np.tile(tmpl, reps)[length - phase:length - phase + len(feature)]
            score = float(np.mean(feature * pattern)) + bonus
            if score > best[2]:
                best = (name, phase, score)
    return best


def _label(structure: str, tatum_bpm: float) -> tuple[str, int, float, int]:
    """(time signature, tatums per notated beat, quarters per beat, beats per bar)."""
    length = METER_TEMPLATES[structure][0]
    options: list[tuple[str, int, float, int]] = []
    if structure in ("duple", "triple", "quadruple"):
        for unit in (1, 2, 4):
            if length % unit:
                continue
            beats = length // unit
            if beats in (2, 3, 4):
                options.append((f"{beats}/4", unit, 1.0, beats))
    elif structure == "single-triple":
        options.append(("3/4", 1, 1.0, 3))
    else:
        beats = length // 3
        options.append((f"{beats * 3}/8", 3, 1.5, beats))
    def cost(opt):
        beat_bpm = tatum_bpm / opt[1]
        return abs(math.log2(beat_bpm / PREFERRED_BEAT_BPM))
    return min(options, key=cost)


def analyze_meter(beats_s: np.ndarray, events: list[OnsetEvent], *, first_note_s: float,
                  time_signature: str | None = None) -> BeatGrid:
    """Turn a tracked pulse into the notated beat grid (meter, downbeats, pickup).

    Args:
        beats_s: pulse times from rhythm.track_beats (covering all notes).
        events: onset events from rhythm.onset_events.
        first_note_s: onset of the first note (the pickup is measured from it).
        time_signature: a user-given meter ("6/8") to keep, or None to detect.

    Returns:
        BeatGrid whose beats start at the first notated beat (pickup or downbeat).
    """
    division = beat_division(beats_s, events)
    tatums = _tatum_times(beats_s, division)
    feature = _tatum_features(tatums, events)
    tatum_bpm = 60.0 / float(np.median(np.diff(tatums)))
    if time_signature:
        ts, unit, beat_q, per_bar = _label_given(time_signature, division, tatum_bpm)
        phase = _best_phase(feature, _template(per_bar, unit, compound=beat_q == 1.5))
    else:
        structure, phase, _ = _best_structure(feature, division)
        ts, unit, beat_q, per_bar = _label(structure, tatum_bpm)
    beat_idx = np.arange(phase % unit, len(tatums), unit)
    beats = tatums[beat_idx]
    first_down = int(np.searchsorted(beat_idx, phase % (unit * per_bar)))
    return _grid_from(beats, first_down, per_bar, beat_q, ts, first_note_s)


def _template(per_bar: int, unit: int, *, compound: bool) -> np.ndarray:
    """Generic metrical weights over one bar of tatums: downbeat, beats, the rest."""
    weights = np.ones(per_bar * unit)
    weights[::unit] = 2.0
    if per_bar == 4:
        weights[2 * unit] = 3.0
    weights[0] = 4.0
    return weights


def _best_phase(feature: np.ndarray, weights: np.ndarray) -> int:
    length = len(weights)
    if len(feature) < length or weights.std() == 0:
        return 0
    tmpl = (weights - weights.mean()) / weights.std()
    reps = int(math.ceil(len(feature) / length)) + 1
    scores = [float(np.mean(feature * np.tile(tmpl, reps)[length - p:length - p + len(feature)]))
              for p in range(length)]
    return int(np.argmax(scores))


def _label_given(ts: str, division: int, tatum_bpm: float) -> tuple[str, int, float, int]:
    """Notated beat of a user-given meter on the tatum grid found."""
    num, den = (int(x) for x in ts.split("/"))
    if den == 8 and num % 3 == 0 and num > 3:
        return ts, 3, 1.5, num // 3
    beat_q = 4.0 / den
    # The tracked pulse may be a beat with triplets (division 3) or a whole bar.
    units = (1, 3) if division == 3 else (1, 2, 4)
    unit = min(units, key=lambda u: abs(math.log2(tatum_bpm / u * beat_q / PREFERRED_BEAT_BPM)))
    return ts, unit, beat_q, num


def _grid_from(beats: np.ndarray, first_down: int, per_bar: int, beat_q: float, ts: str,
               first_note_s: float) -> BeatGrid:
    """Start the grid at the first notated beat (pickup or downbeat) and count the pickup."""
    beats = np.asarray(beats, dtype=float)
    if len(beats) < 2:
        beats = np.array([first_note_s, first_note_s + 0.6])
    period0 = beats[1] - beats[0]
    pos_first = (first_note_s - beats[0]) / period0 if first_note_s < beats[0] else float(
        np.interp(first_note_s, beats, np.arange(len(beats))))
    # The bar holding the first note starts at the last downbeat before it (a note a
    # little early still counts as on the downbeat).
    bar0 = first_down + int(math.floor((pos_first + 0.25 - first_down) / per_bar)) * per_bar
    if bar0 < 0:
        head = beats[0] - period0 * np.arange(-bar0, 0, -1)
        beats = np.concatenate([head, beats])
        pos_first -= bar0
        bar0 = 0
    empty = int(math.floor(pos_first - bar0 + 0.25))
    empty = min(max(empty, 0), per_bar - 1)
    pickup = per_bar - empty if empty > 0 else 0
    return BeatGrid(beats[bar0 + empty:], beat_q, per_bar, ts, pickup)
