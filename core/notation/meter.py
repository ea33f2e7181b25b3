"""Meter, notated beat level and downbeat phase from a tracked pulse.

Exports: analyze_meter, beat_division, pickup_evidence, joint_meter, meter_hypotheses, score_hypotheses,
METER_TEMPLATES.

Two deciders: the template rules below, and a scorer fitted on the corpus bench's train
split (joint_meter; weights in meter_model.py, bench/corpus_fit.py). The scorer writes its
reading when sure of the meter (JOINT_DECIDES_CONFIDENCE), otherwise the rules decide, and
it always ranks the alternatives result.json offers.

The pulse from rhythm.track_beats is divided into tatums (2 or 3 per pulse,
whichever fits the note onsets better). Every candidate bar structure is a
metrical-weight template over tatums (Lerdahl/Jackendoff-style dot heights);
onset salience, bass notes and harmonic change along the tatum grid are
correlated with each template at each phase. The best structure is then
labelled with the beat unit whose tempo is most plausible.

Two refinements keep the result musical:
- Running sixteenths (rags, reels, marches) leave the eighth level without any
  metrical contrast; the structure is then read at the sixteenth level, where
  beats and bars stand out again, and written in 2/4.
- Bar lines fall on tracked pulses. The first pulse at or after the first note
  is a downbeat unless the music says otherwise, so notes before it form a
  pickup however short (notate trims it to an eighth or a sixteenth). A tune
  that opens with quicker notes leading into a longer one (two eighths into a
  quarter, a dotted eighth and a sixteenth into a quarter) opens with them as
  its pickup, the landing note on the downbeat (_anacrusis_landing); another
  phase is taken only when it fits better bar after bar (pickup_evidence) on
  onset salience, bass, harmonic change and phrase ends (notes followed by a
  long wait, the final note), not because of a couple of long notes mid-phrase.
"""

from __future__ import annotations

import math

import numpy as np

from .rhythm import BeatGrid, OnsetEvent, polyphony

try:
    from .meter_model import MODEL as _FITTED
except ImportError:   # not fitted yet: the linear weights below score the hypotheses
    _FITTED = None
# The model's numbers as arrays once, not on every score.
METER_MODEL = None if _FITTED is None else [
    {k: (v if k == "features" or not isinstance(v, list) else np.asarray(v, dtype=float)) for k, v in m.items()}
    for m in _FITTED]

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
    2: {"duple": 0.0, "triple": 0.0, "quadruple": 0.03, "compound-duple": -0.02},
    3: {"compound-duple": 0.03, "compound-triple": -0.03, "compound-quadruple": 0.0, "single-triple": -0.05},
}
#: Weight of the bass-onset and harmonic-change cues next to onset salience ...
HARMONY_CUE_WEIGHT = 0.8
#: ... and the share of it they keep in a single melodic line.
MELODY_CUE_SHARE = 0.25
#: Bar-by-bar consistency (t statistic) a phase needs over "the first note is a downbeat"
#: before the score opens with a pickup bar.
PICKUP_MIN_EVIDENCE = 3.5
#: An opening figure is a pickup when each of its notes lasts at most this share of the note it
#: leads into (two eighths into a quarter: 0.5; a dotted eighth and a sixteenth: 0.75, sung unevenly) ...
ANACRUSIS_MAX_RATIO = 0.85
#: ... the note it leads into lasts at least this share of a pulse, and the figure has at most
#: this many notes (onset events) and lasts less than a bar.
ANACRUSIS_MIN_LANDING_PULSES = 0.9
ANACRUSIS_MAX_NOTES = 3
#: Phase-score margin within which a first note halfway between pulses keeps the downbeat.
PHASE_TIE = 0.02
#: Weight of phrase ends (onsets followed by a long wait) in the downbeat-phase choice.
PHRASE_END_CUE_WEIGHT = 1.0
#: An onset starts a phrase end when the next comes more than 2**this typical inter-onset times later
#: (a quarter in a jig's quarter-eighth is rhythm, not a phrase end).
PHRASE_END_OCTAVES = 1.0
#: The last onset counts as held this many typical inter-onset times (the end of the final phrase).
FINAL_NOTE_GAPS = 4.0
#: The eighth-level bar fit below which the metre may live at the sixteenth level instead ...
SIXTEENTH_LEVEL_MAX_COARSE = 0.45
#: ... and how many times better the sixteenth-level fit must be to move there.
SIXTEENTH_LEVEL_RATIO = 1.8
#: ... and only when at least this share of onsets falls on sixteenths between the eighths.
SIXTEENTH_MIN_SHARE = 0.15
#: A pulse whose off-beat onsets sit near two thirds and almost never at one third is read as
#: swung eighths, not compound time, when their median comes earlier than this and at most this
#: share of them have a first third. 2:1 is 0.667: a 6/8 tune of quarter-eighth figures played a
#: little unevenly stays 6/8, and a 2:1 shuffle written quarter-eighth in 12/8 is as true
#: (swing:yes writes it as swing).
SWING_NOT_COMPOUND_RATIO = 0.64
SWING_NOT_COMPOUND_THIRDS = 0.1
#: Repetition after whole bars (_parallelism_bonus): the lead one family of bar lengths must have
#: over the others before it counts, and the fit bonus per unit of lead beyond that.
PARALLELISM_MARGIN = 0.08
PARALLELISM_WEIGHT = 2.0
#: Decide meter, tempo level and downbeat with the fitted joint scorer (joint_meter) when no
#: meter is given and the music is not swung; False keeps the template rules below and uses
#: the scorer only to rank the alternatives. Off: on the corpus validation split the scorer is
#: better (meter 0.396 against 0.358, x1.5/x2/3 tempo errors 1.2 % against 8.2 %), but on the
#: dev set it writes 3/10 meters right against 10/10 (2/4 for 4/4 chorales).
#: Kept on for the beat division alone (_division_disagrees): validation x1.5/x2/3 8.2 % -> 2.5 %,
#: tempo strict 0.660 -> 0.717, meter 0.358 -> 0.377; dev set unchanged (10/10 meters).
USE_JOINT_SCORER = True
#: The fitted scorer writes its reading when its meter has at least this probability (marginal over
#: tempo and downbeat); below it the template rules decide and the scorer ranks the alternatives.
JOINT_DECIDES_CONFIDENCE = 0.8
#: With the scorer off, its reading still wins when it reads the beat division otherwise than the
#: rules (tempo x1.5 or x2/3 apart) with at least this share of its tempo probability.
JOINT_DIVISION_CONFIDENCE = 0.5
#: Tempo alternatives within this ratio of the written tempo are the same tempo.
ALTERNATIVE_SAME_TEMPO = 0.08
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


def _swung(beats_s: np.ndarray, events: list[OnsetEvent]) -> bool:
    """Whether onsets between pulses are swung eighths rather than compound time's eighths."""
    from .quantize import detect_swing

    pos = np.interp([e.time_s for e in events], beats_s, np.arange(len(beats_s)))
    return detect_swing(pos, max_ratio=SWING_NOT_COMPOUND_RATIO, max_thirds=SWING_NOT_COMPOUND_THIRDS) is not None


def _tatum_times(beats_s: np.ndarray, division: int) -> np.ndarray:
    idx = np.arange((len(beats_s) - 1) * division + 1) / division
    return np.interp(idx, np.arange(len(beats_s)), beats_s)


def _nearest_tatum(tatums: np.ndarray, time_s: float, period: float) -> int | None:
    """The tatum an onset falls on: the nearest, if within 0.3 of a tatum period (else None)."""
    j = int(np.argmin(np.abs(tatums - time_s)))
    return j if abs(tatums[j] - time_s) <= 0.3 * period else None


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
        j = _nearest_tatum(tatums, ev.time_s, period)
        if j is None:
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
    # In a single line the "bass" is only its lowest notes and every new note is a
    # "harmonic change": weaker cues than real bass notes and chord changes.
    poly = polyphony(events)
    harmony = HARMONY_CUE_WEIGHT * (poly + (1.0 - poly) * MELODY_CUE_SHARE)
    return feats[0] + harmony * (feats[1] + feats[2])


def _pattern(weights: list[float] | np.ndarray, phase: int, n: int) -> np.ndarray:
    """Standardised metrical weights along n tatums, downbeats at tatums == phase (mod length)."""
    tmpl = np.asarray(weights, dtype=float)
    tmpl = (tmpl - tmpl.mean()) / tmpl.std()
    length = len(tmpl)
    return tmpl[(np.arange(n) - phase) % length]


def _phase_scores(feature: np.ndarray, weights: list[float] | np.ndarray) -> np.ndarray:
    """Correlation-like fit of a bar template at every phase."""
    return np.array([float(np.mean(feature * _pattern(weights, p, len(feature)))) for p in range(len(weights))])


def _best_structure(feature: np.ndarray, division: int,
                    parallel: dict[str, float] | None = None) -> tuple[str, float]:
    """The bar structure whose template fits best at its best phase, and that fit (prior included).

    ``parallel`` adds each structure's repetition bonus (_parallelism_bonus) to
    the comparison; the fit returned leaves it out. The phase itself is chosen
    later, by _anchor_phase.
    """
    best = ("quadruple" if division == 2 else "compound-duple", -math.inf, -math.inf)
    for name, bonus in _STRUCTURES[division].items():
        length, weights = METER_TEMPLATES[name]
        if len(feature) < 2 * length:
            continue
        fit = float(np.max(_phase_scores(feature, weights))) + bonus
        ranked = fit + (parallel or {}).get(name, 0.0)
        if ranked > best[2]:
            best = (name, fit, ranked)
    return best[0], best[1]


def _onset_profile(tatums: np.ndarray, events: list[OnsetEvent]) -> np.ndarray:
    """Per tatum: which pitch classes start there, and whether anything does (13 columns of 0/1)."""
    profile = np.zeros((len(tatums), 13))
    if len(tatums) < 2:
        return profile
    period = _tatum_s(tatums)
    for ev in events:
        j = _nearest_tatum(tatums, ev.time_s, period)
        if j is not None:
            profile[j, 12] = 1.0
            profile[j, [p % 12 for p in ev.pitches]] = 1.0
    return profile


def _repetition(profile: np.ndarray, lag: int) -> float:
    """How much of the music recurs ``lag`` tatums later (cosine of the profile with itself shifted)."""
    a, b = profile[:-lag], profile[lag:]
    norm = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / norm if norm > 0 else 0.0


def _parallelism_bonus(profile: np.ndarray, division: int) -> dict[str, float]:
    """Fit bonus per bar structure from what repeats after whole bars (GTTM's parallelism).

    Tunes repeat their figures after one, two or four bars: "Happy Birthday"
    after six beats (two bars of 3/4, not a whole number of 4/4 bars), a march
    after eight. Each structure's repetition is the best of the profile's
    self-similarity at 1, 2, 4 and 8 bars of its length (at most half the
    music). Structures whose bar lengths divide one another form a family (2/4
    and 4/4; 6/8 and 12/8) and share the family's best; a family whose
    repetition beats every other family's by more than PARALLELISM_MARGIN gets
    PARALLELISM_WEIGHT times the excess. Short excerpts, which repeat little,
    differ by less than the margin and are left to the templates.
    """
    names = [n for n in _STRUCTURES[division] if len(profile) >= 2 * METER_TEMPLATES[n][0]]
    own: dict[str, float] = {}
    for name in names:
        length = METER_TEMPLATES[name][0]
        lags = [k * length for k in (1, 2, 4, 8) if k * length <= len(profile) // 2]
        own[name] = max((_repetition(profile, lag) for lag in lags), default=0.0)

    def related(a: str, b: str) -> bool:
        la, lb = METER_TEMPLATES[a][0], METER_TEMPLATES[b][0]
        return la % lb == 0 or lb % la == 0

    family = {a: max(own[b] for b in names if related(a, b)) for a in names}
    bonus = {}
    for a in names:
        rivals = [family[b] for b in names if not related(a, b)]
        excess = family[a] - max(rivals, default=family[a]) - PARALLELISM_MARGIN
        bonus[a] = PARALLELISM_WEIGHT * max(0.0, excess)
    return bonus


def pickup_evidence(feature: np.ndarray, weights: list[float] | np.ndarray, phase: int, phase0: int,
                    span: tuple[int, int]) -> float:
    """How consistently, bar by bar, phase fits the music better than phase0 (a t statistic).

    Each bar-long stretch of the played span votes with its own score difference;
    two long notes in an otherwise even melody do not make a pickup, a
    difference repeated in most bars (accents, bass, harmonic changes, long notes
    on the downbeats) does.

    Args:
        feature: per-tatum salience (from the tatum features).
        weights: the bar template (metrical weight per tatum of one bar).
        phase, phase0: the candidate and the reference downbeat phase (tatums).
        span: (first, last + 1) tatum of the played music; only full bars in it count.

    Returns:
        mean per-bar gain of phase over phase0 divided by its standard error
        (0 with fewer than two bars; inf when every bar gains the same).
    """
    length = len(weights)
    lo, hi = span
    diff = feature * (_pattern(weights, phase, len(feature)) - _pattern(weights, phase0, len(feature)))
    diff = diff[lo:hi]
    bars = len(diff) // length
    if bars < 2:
        return 0.0
    per_bar = diff[:bars * length].reshape(bars, length).sum(axis=1)
    spread = float(per_bar.std(ddof=1))
    mean = float(per_bar.mean())
    if spread == 0:
        return math.inf if mean > 0 else 0.0
    return mean / (spread / math.sqrt(bars))


def _anchor_phase(feature: np.ndarray, weights: list[float] | np.ndarray, first_tatums: tuple[int, int],
                  last_tatum: int, division: int, landing_tatum: int | None = None) -> int:
    """The downbeat phase (tatum mod bar length): the first pulse unless the music says otherwise.

    Bar lines go on tracked pulses (tatums that are multiples of division); the
    phase that puts a downbeat on the first pulse at or after the first note is
    the default, so a note before that pulse is an anacrusis, however short
    (a first note halfway between pulses starts the bar when it fits as well).
    An opening anacrusis figure moves that default onto the note it leads into.
    Another phase is taken only when it fits better bar after bar
    (pickup_evidence at least PICKUP_MIN_EVIDENCE).

    Args:
        feature: per-tatum salience for the phase choice.
        weights: the bar template.
        first_tatums: the first note's tatum and the first pulse at or after it.
        last_tatum: the last onset's tatum.
        division: tatums per tracked pulse.
        landing_tatum: the pulse an opening anacrusis figure leads into (_anacrusis_landing), if any.
    """
    length = len(weights)
    scores = _phase_scores(feature, weights)
    note_tatum, first_pulse = first_tatums
    default = first_pulse % length
    if landing_tatum is not None and landing_tatum - note_tatum < length:
        default = landing_tatum % length
    elif 2 * (note_tatum % division) == division and scores[note_tatum % length] >= scores[default] - PHASE_TIE:
        # A first note halfway between pulses: the pulse may have been tracked on the
        # off-beats (a stride bass's chords), so the first note starts the bar unless the
        # pulse fits better.
        default = note_tatum % length
    aligned = [p for p in range(length) if (p - default) % division == 0 and p != default]
    if not aligned:
        return default
    phase = max(aligned, key=lambda p: scores[p])
    evidence = pickup_evidence(feature, weights, phase, default, (note_tatum, last_tatum + 1))
    return phase if evidence >= PICKUP_MIN_EVIDENCE else default


def _anacrusis_landing(tatums: np.ndarray, events: list[OnsetEvent], division: int) -> int | None:
    """The pulse an opening anacrusis figure leads into, or None when the music opens without one.

    Tunes that start with a pickup mostly start with quicker notes leading into
    a longer one on the downbeat: two eighths into a quarter (a hymn, a folk
    air), a dotted eighth and a sixteenth into a quarter ("Happy Birthday").
    Without accents (an even performance, a synthesizer) this figure is often
    the only sign of the pickup; a tune opening on its downbeat starts with
    notes as long as the ones that follow, or with a long note.

    The figure is the first one to ANACRUSIS_MAX_NOTES onset events, each
    lasting (to the next onset) at most ANACRUSIS_MAX_RATIO of the note they
    lead into, which lasts at least ANACRUSIS_MIN_LANDING_PULSES of a pulse and
    falls on a tracked pulse.

    Returns:
        The landing note's tatum (a multiple of ``division``), or None.
    """
    if len(tatums) < 2 or len(events) < 3:
        return None
    times = np.sort(np.array([e.time_s for e in events]))[:ANACRUSIS_MAX_NOTES + 2]
    iois = np.diff(times)
    period = _tatum_s(tatums)
    for k in range(1, min(ANACRUSIS_MAX_NOTES, len(iois) - 1) + 1):
        leads, landing = iois[:k], iois[k]
        if landing < ANACRUSIS_MIN_LANDING_PULSES * division * period:
            continue
        if float(np.max(leads)) > ANACRUSIS_MAX_RATIO * landing:
            continue
        j = _nearest_tatum(tatums, times[k], period)
        return j if j is not None and j % division == 0 else None
    return None


def _phrase_end_feature(tatums: np.ndarray, events: list[OnsetEvent]) -> np.ndarray:
    """Per tatum: how strongly an onset there ends a phrase (standardised).

    Phrase ends (an onset followed by a long wait for the next: a held note, a
    fermata, a breath) fall on strong beats, downbeats most of all; the last
    onset of the piece ends its final phrase. Measured as log2 of the time to
    the next onset over the typical inter-onset time, less PHRASE_END_OCTAVES,
    from 0 (an ordinary note, or a long note in a long-short rhythm) to 3.
    """
    n = len(tatums)
    held = np.zeros(n)
    if n < 2 or len(events) < 3:
        return held
    times = np.array([e.time_s for e in events])
    gaps = np.diff(times)
    typical = float(np.median(gaps))
    gaps = np.append(gaps, FINAL_NOTE_GAPS * typical)
    period = _tatum_s(tatums)
    for t, gap in zip(times, gaps):
        j = _nearest_tatum(tatums, t, period)
        if j is not None:
            held[j] = max(held[j], float(np.clip(np.log2(gap / typical) - PHRASE_END_OCTAVES, 0.0, 3.0)))
    spread = held.std()
    return (held - held.mean()) / spread if spread > 0 else np.zeros(n)


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
                  time_signature: str | None = None, swing: bool | None = None) -> BeatGrid:
    """Turn a tracked pulse into the notated beat grid (meter, downbeats, pickup).

    Args:
        beats_s: pulse times from rhythm.track_beats (covering all notes).
        events: onset events from rhythm.onset_events.
        first_note_s: onset of the first note (the pickup is measured from it).
        time_signature: a user-given meter ("6/8") to keep, or None to detect.
        swing: True reads long-short pairs as swung eighths in simple time (swing:yes),
            False as compound time; None decides from how long-short they are.

    Returns:
        BeatGrid whose beats start at the first notated beat (pickup or downbeat).
    """
    swung = swing is not False and (swing or _swung(beats_s, events))
    grid = _rule_meter(beats_s, events, first_note_s=first_note_s, time_signature=time_signature, swing=swing)
    joint = None if time_signature or swung else joint_meter(beats_s, events, first_note_s=first_note_s,
                                                              rule=grid)
    if joint is not None and USE_JOINT_SCORER and joint.alternatives[0][1] >= JOINT_DECIDES_CONFIDENCE:
        return joint
    if joint is not None:
        if _division_disagrees(grid, joint):
            return joint
        _rank_with(grid, joint)
    return grid


def _division_disagrees(grid: BeatGrid, joint: BeatGrid) -> bool:
    """Whether the rules and the joint scorer read the beat division differently (tempo x1.5 or x2/3 apart)
    and the scorer is sure of its reading (JOINT_DIVISION_CONFIDENCE of its tempo mass)."""
    rule_bpm = float(np.median(grid.tempo_curve_bpm()))
    joint_bpm = float(np.median(joint.tempo_curve_bpm()))
    ratio = joint_bpm / rule_bpm
    frac = math.log2(ratio) % 1.0   # x1.5 and x3 -> 0.585, x2/3 and x4/3 -> 0.415
    third = min(abs(frac - math.log2(1.5)), abs(frac - math.log2(4 / 3))) < 0.1
    return third and joint.tempo_alternatives[0][1] >= JOINT_DIVISION_CONFIDENCE


def _rank_with(grid: BeatGrid, joint: BeatGrid) -> None:
    """Give the rule-based grid the joint scorer's ranking, its own meter and tempo first."""
    meters = dict(joint.alternatives)
    grid.alternatives = [(grid.time_signature, meters.get(grid.time_signature, 0.0))] + [
        (ts, p) for ts, p in joint.alternatives if ts != grid.time_signature]
    chosen = float(np.median(grid.tempo_curve_bpm()))
    tempi = [(bpm, p) for bpm, p in joint.tempo_alternatives[1:]]
    own = sum(p for bpm, p in tempi if abs(bpm / chosen - 1) <= ALTERNATIVE_SAME_TEMPO)
    grid.tempo_alternatives = [(chosen, own)] + [(bpm, p) for bpm, p in tempi
                                                 if abs(bpm / chosen - 1) > ALTERNATIVE_SAME_TEMPO]


def _rule_meter(beats_s: np.ndarray, events: list[OnsetEvent], *, first_note_s: float,
                time_signature: str | None, swing: bool | None) -> BeatGrid:
    """The template-rule meter decision (analyze_meter's when the joint scorer is off)."""
    division = beat_division(beats_s, events)
    if division == 3 and not time_signature and swing is not False and (swing or _swung(beats_s, events)):
        division = 2
    tatums = _tatum_times(beats_s, division)
    feature = _tatum_features(tatums, events)
    if time_signature:
        ts, unit, beat_q, per_bar = _label_given(time_signature, division, _tatum_bpm(tatums))
        weights = _template(per_bar, unit, compound=beat_q == 1.5)
    else:
        parallel = _parallelism_bonus(_onset_profile(tatums, events), division)
        structure, score = _best_structure(feature, division, parallel)
        fine = _sixteenth_level(beats_s, events, division, score)
        if fine is not None:
            division, tatums, feature = fine
            structure = "quadruple"
        ts, unit, beat_q, per_bar = _label(structure, _tatum_bpm(tatums))
        weights = METER_TEMPLATES[structure][1]
    played = np.searchsorted(tatums, [first_note_s - 0.25 * _tatum_s(tatums), _last_onset(events)])
    first_pulse = int(math.ceil(played[0] / division) * division)
    anchor_feature = feature + PHRASE_END_CUE_WEIGHT * _phrase_end_feature(tatums, events)
    landing = _anacrusis_landing(tatums, events, division)
    phase = _anchor_phase(anchor_feature, weights, (int(played[0]), first_pulse), int(played[1]), division,
                          landing)
    beat_idx = np.arange(phase % unit, len(tatums), unit)
    beats = tatums[beat_idx]
    first_down = int(np.searchsorted(beat_idx, phase % (unit * per_bar)))
    return _grid_from(beats, first_down, per_bar, beat_q, ts, first_note_s)


def _tatum_s(tatums: np.ndarray) -> float:
    return float(np.median(np.diff(tatums))) if len(tatums) > 1 else 0.25


def _tatum_bpm(tatums: np.ndarray) -> float:
    return 60.0 / _tatum_s(tatums)


def _last_onset(events: list[OnsetEvent]) -> float:
    return max((e.time_s for e in events), default=0.0)


def _sixteenth_share(beats_s: np.ndarray, events: list[OnsetEvent]) -> float:
    """Share of onsets on the second or fourth sixteenth of a pulse."""
    if not events or len(beats_s) < 2:
        return 0.0
    pos = np.interp([e.time_s for e in events], beats_s, np.arange(len(beats_s)))
    frac = pos - np.floor(pos)
    return float(np.mean((np.abs(frac - 0.25) < 0.08) | (np.abs(frac - 0.75) < 0.08)))


def _sixteenth_level(beats_s: np.ndarray, events: list[OnsetEvent], division: int,
                     coarse_score: float) -> tuple[int, np.ndarray, np.ndarray] | None:
    """The grid in sixteenths, when that is where the metre lives (2/4 marches, rags, reels).

    Running sixteenths fill every eighth of the pulse, so at the eighth level all
    tatums look alike and no bar structure stands out; at the sixteenth level
    the beats, their halves and the bass/harmony pattern stand out again. The
    bar is then two pulses of sixteenths (2/4), the way such music is written,
    rather than four beats of sixteenths (a bar of sixteen).

    Returns:
        (tatums per pulse, tatum times, features) or None to keep the eighth level.
    """
    if division != 2:
        return None
    tatums = _tatum_times(beats_s, 4)
    feature = _tatum_features(tatums, events)
    _, weights = METER_TEMPLATES["quadruple"]
    if len(feature) < 2 * len(weights):
        return None
    fit = float(np.max(_phase_scores(feature, weights)))
    if (coarse_score > SIXTEENTH_LEVEL_MAX_COARSE or fit < SIXTEENTH_LEVEL_RATIO * max(coarse_score, 0.05)
            or _sixteenth_share(beats_s, events) < SIXTEENTH_MIN_SHARE):
        return None
    return 4, tatums, feature


def _template(per_bar: int, unit: int, *, compound: bool) -> np.ndarray:
    """Generic metrical weights over one bar of tatums: downbeat, beats, the rest."""
    weights = np.ones(per_bar * unit)
    weights[::unit] = 2.0
    if per_bar == 4:
        weights[2 * unit] = 3.0
    weights[0] = 4.0
    return weights


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


def alternatives_of(grid: BeatGrid) -> dict:
    """Ranked meter and tempo alternatives of a grid (the chosen one first, scores 0..1)."""
    meters = getattr(grid, "alternatives", None) or [(grid.time_signature, 1.0)]
    tempi = getattr(grid, "tempo_alternatives", None) or [
        (float(np.median(grid.tempo_curve_bpm())) if len(grid.beats_s) > 1 else 0.0, 1.0)]
    return {"meter": [{"time_signature": ts, "score": round(float(sc), 3)} for ts, sc in meters],
            "tempo": [{"bpm": round(float(b), 1), "score": round(float(sc), 3)} for b, sc in tempi]}


# ----------------------------------------------------------------------------- joint meter scorer
#
# Meter, notated-beat tempo and downbeat chosen together (issue 17). Every hypothesis is
# (time signature, eighth length in tracked pulses, downbeat phase in eighths); it is
# scored by a linear function of named features (meter_hypotheses) with the weights in
# METER_SCORER_WEIGHTS. Beat division (binary or ternary) is an explicit part of each
# hypothesis: the eighth length 1/3 of a pulse (ternary) against 1/2 (binary), with its own
# evidence, how much of the onset weight falls on that hypothesis's eighth and sixteenth
# grid (grid_on8, grid_on16, grid_off).

#: Meters the scorer chooses from: (eighths per bar, eighths per notated beat, quarters per beat,
#: beats per bar as written).
SCORER_METERS: dict[str, tuple[int, int, float, int]] = {
    "2/4": (4, 2, 1.0, 2), "3/4": (6, 2, 1.0, 3), "4/4": (8, 2, 1.0, 4), "2/2": (8, 4, 2.0, 2),
    "3/8": (3, 1, 0.5, 3), "6/8": (6, 3, 1.5, 2), "9/8": (9, 3, 1.5, 3), "12/8": (12, 3, 1.5, 4)}
#: Metrical weight of each eighth of the bar (downbeat 4, half bar 3, beats 2, the rest 1).
SCORER_TEMPLATES: dict[str, list[float]] = {
    "2/4": [4, 1, 2, 1], "3/4": [4, 1, 2, 1, 2, 1], "4/4": [4, 1, 2, 1, 3, 1, 2, 1],
    "2/2": [4, 1, 1, 1, 2, 1, 1, 1], "3/8": [4, 1, 1], "6/8": [4, 1, 1, 2, 1, 1],
    "9/8": [4, 1, 1, 2, 1, 1, 2, 1, 1], "12/8": [4, 1, 1, 2, 1, 1, 3, 1, 1, 2, 1, 1]}
#: Beat-period eighth lengths tried, in tracked pulses (1/2: the pulse is a quarter of a binary
#: beat; 1/3: a dotted quarter of a ternary one; 2/3: the pulse was a ternary mis-read, x1.5).
SCORER_EIGHTH_PULSES = (0.25, 1 / 3, 0.5, 2 / 3, 1.0, 1.5)
#: Notated-beat tempo (beats per minute) the tempo features are centred on.
SCORER_BEAT_BPM = 90.0
#: Cues measured per eighth (_eighth_features) and the metrical levels their means are taken at.
SCORER_CUES = ("onset", "bass", "change", "phrase_end", "long_note")
SCORER_LEVELS = ("down", "half", "beat")
#: Feature names, in order (meter_hypotheses builds them).
SCORER_FEATURES = ("onset", "bass", "change", "phrase_end", "long_note", "repeat", "grid_on8", "grid_on16",
                   "grid_off", "tempo_z", "tempo_z2", "pickup_none", "pickup_beat", "landing",
                   *(f"is_{ts}" for ts in SCORER_METERS),
                   # Per metrical level (downbeat, half bar, other beats): the mean of each cue there.
                   *(f"{cue}_{level}" for cue in SCORER_CUES for level in SCORER_LEVELS),
                   "repeat_1", "repeat_2", "repeat_4", "quarter_z", "ends_on_down",
                   # Whole-piece context (the same for every hypothesis; it matters through the model's
                   # interactions with the meter): chord size, onsets per tracked pulse.
                   "polyphony", "density",
                   # Hypermeter: how much more the phrase ends gather on every 2nd, 4th, 8th downbeat.
                   "hyper_2", "hyper_4", "hyper_8",
                   # Agreement with the template rules' reading (_rule_meter): its meter, its quarter
                   # tempo (within 8 %), a downbeat on its first downbeat. The model learns how far to
                   # trust them.
                   "rule_meter", "rule_tempo", "rule_down",
                   # Note values as the hypothesis would write them: the median time between onsets in
                   # its eighths (log2), the share of notes a beat long or longer, shorter than an eighth.
                   "ioi_eighths", "ioi_beat_or_more", "ioi_sub_eighth")
#: Linear weights, used only where meter_model.py is missing (the fitted model scores otherwise);
#: fitted on the corpus bench's TRAIN split only (bench/corpus_fit.py,
#: conditional-logit maximum likelihood with L2 0.01, seed 17, damaged performances); rerun it
#: to refit (train top-1 hypothesis 0.380 of 342 performances, two seeds per piece).
METER_SCORER_WEIGHTS: dict[str, float] = {
    "onset": 4.9779,
    "bass": -0.4154,
    "change": 3.3426,
    "phrase_end": 0.9392,
    "long_note": 1.098,
    "repeat": 15.307,
    "grid_on8": 9.097,
    "grid_on16": -4.5425,
    "grid_off": -9.619,
    "tempo_z": -0.904,
    "tempo_z2": -0.9975,
    "pickup_none": 3.0105,
    "pickup_beat": 2.2539,
    "landing": 0.8055,
    "is_2/4": 0.7159,
    "is_3/4": 0.6881,
    "is_4/4": 0.4722,
    "is_2/2": -0.4593,
    "is_3/8": 2.1929,
    "is_6/8": 0.2314,
    "is_9/8": -0.121,
    "is_12/8": -1.4681,
}


def _std(x: np.ndarray) -> np.ndarray:
    s = x.std()
    return (x - x.mean()) / s if s > 0 else np.zeros_like(x)


def _eighth_features(tatums: np.ndarray, events: list[OnsetEvent]) -> dict[str, np.ndarray]:
    """Per-eighth standardised cues: onsets, bass onsets, harmonic change, phrase ends, note length."""
    n = len(tatums)
    onset, bass, long_note = np.zeros(n), np.zeros(n), np.zeros(n)
    chroma = np.zeros((n, 12))
    period = _tatum_s(tatums)
    lows = np.array([e.low_pitch for e in events])
    bass_line = np.percentile(lows, 35)
    times = np.array([e.time_s for e in events])
    iois = np.append(np.diff(times), np.median(np.diff(times)) * FINAL_NOTE_GAPS) if len(times) > 1 else np.ones(1)
    for ev, ioi in zip(events, iois):
        j = _nearest_tatum(tatums, ev.time_s, period)
        if j is None:
            continue
        onset[j] += ev.weight
        if ev.low_pitch <= bass_line:
            bass[j] += ev.weight
        long_note[j] = max(long_note[j], float(np.clip(np.log2(max(ioi, 1e-3) / period), 0.0, 4.0)))
        for p in ev.pitches:
            chroma[j, p % 12] += 1.0
    change = np.zeros(n)
    for j in range(2, n - 2):
        before, after = chroma[j - 2:j].sum(axis=0), chroma[j:j + 2].sum(axis=0)
        nb, na = np.linalg.norm(before), np.linalg.norm(after)
        if nb > 0 and na > 0:
            change[j] = 1.0 - float(before @ after) / (nb * na)
    return dict(onset=_std(onset), bass=_std(bass), change=_std(change),
                phrase_end=_phrase_end_feature(tatums, events), long_note=_std(long_note))


def _grid_shares(beats_s: np.ndarray, events: list[OnsetEvent], eighth_pulses: float) -> tuple[float, float, float]:
    """Share of onset weight on the eighth grid, on its sixteenths only, and off both."""
    pos = np.interp([e.time_s for e in events], beats_s, np.arange(len(beats_s))) / eighth_pulses
    w = np.array([e.weight for e in events])
    frac = pos - np.round(pos)
    on8 = np.abs(frac) < 0.17
    on16 = ~on8 & (np.abs(np.abs(frac) - 0.5) < 0.12)
    total = float(w.sum()) or 1.0
    return float(w[on8].sum()) / total, float(w[on16].sum()) / total, float(w[~on8 & ~on16].sum()) / total


def _level_masks(length: int, beat_e: int) -> list[np.ndarray]:
    """Boolean masks over the eighths of a bar: the downbeat, the half bar (even bars of four or
    more beats), the other beats."""
    k = np.arange(length)
    down = k == 0
    beats = length // beat_e
    half = (k == length // 2) if beats % 2 == 0 and beats >= 4 else np.zeros(length, dtype=bool)
    beat = (k % beat_e == 0) & ~down & ~half
    return [down, half, beat]


def _hypermeter(phrase_end: np.ndarray, phase: int, length: int, lo: int, hi: int) -> list[float]:
    """For groups of 2, 4 and 8 bars: how far the phrase-end cue on the best downbeat of the group
    stands above its mean over all downbeats (0 when there are too few bars)."""
    first = lo + (phase - lo) % length
    values = phrase_end[first:hi:length]
    out = []
    for group in (2, 4, 8):
        if len(values) < 2 * group:
            out.append(0.0)
            continue
        means = [float(values[r::group].mean()) for r in range(group)]
        out.append(max(means) - float(values.mean()))
    return out


def meter_hypotheses(beats_s: np.ndarray, events: list[OnsetEvent], first_note_s: float,
                     rule: BeatGrid | None = None
                     ) -> tuple[list[tuple[str, float, int]], np.ndarray, dict[float, np.ndarray]]:
    """Every (meter, eighth length in pulses, downbeat phase) hypothesis and its features.

    ``rule`` is the template rules' grid of the same pulse (computed when None).

    Returns:
        (hypotheses, feature matrix (one row per hypothesis, SCORER_FEATURES columns),
        eighth-grid times per eighth length).
    """
    hyps: list[tuple[str, float, int]] = []
    rows: list[list[float]] = []
    grids: dict[float, np.ndarray] = {}
    if len(beats_s) < 3 or len(events) < 4:
        return hyps, np.zeros((0, len(SCORER_FEATURES))), grids
    pulse_s = float(np.median(np.diff(beats_s)))
    last = _last_onset(events)
    if rule is None:
        rule = _rule_meter(beats_s, events, first_note_s=first_note_s, time_signature=None, swing=None)
    rule_bpm = float(np.median(rule.tempo_curve_bpm()))
    rule_down_s = float(rule.beats_s[min(rule.pickup_beats, len(rule.beats_s) - 1)])
    landing_time = None
    base_landing = _anacrusis_landing(_tatum_times(beats_s, 2), events, 2)
    if base_landing is not None:
        landing_time = float(_tatum_times(beats_s, 2)[base_landing])
    poly = float(np.mean([len(ev.pitches) for ev in events]))
    onsets = np.sort([ev.time_s for ev in events])
    iois = np.maximum(np.diff(onsets), 1e-3)
    density = len(events) / max(1.0, float(len(beats_s) - 1))
    for e in SCORER_EIGHTH_PULSES:
        idx = np.arange(0, len(beats_s) - 1 + 1e-9, e)
        tatums = np.interp(idx, np.arange(len(beats_s)), beats_s)
        if len(tatums) < 8:
            continue
        grids[e] = tatums
        feats = _eighth_features(tatums, events)
        on8, on16, off = _grid_shares(beats_s, events, e)
        profile = _onset_profile(tatums, events)
        lo, hi = np.searchsorted(tatums, [first_note_s - 0.25 * _tatum_s(tatums), last + 1e-6])
        j0 = _nearest_tatum(tatums, first_note_s, _tatum_s(tatums))
        j0 = int(np.argmin(np.abs(tatums - first_note_s))) if j0 is None else j0
        jl = None if landing_time is None else int(np.argmin(np.abs(tatums - landing_time)))
        for ts, (length, beat_e, _, _) in SCORER_METERS.items():
            if hi - lo < 2 * length:
                continue
            beat_bpm = 60.0 / (beat_e * e * pulse_s)
            z = math.log2(beat_bpm / SCORER_BEAT_BPM)
            cues = {name: _phase_scores(f[lo:hi], SCORER_TEMPLATES[ts]) for name, f in feats.items()}
            fits = [k * length <= len(profile) // 2 for k in (1, 2, 4)]
            reps = [_repetition(profile, k * length) if fit else 0.0 for k, fit in zip((1, 2, 4), fits)]
            rep = max((r for r, fit in zip(reps, fits) if fit), default=0.0)
            zq = math.log2(60.0 / (2 * e * pulse_s) / SCORER_BEAT_BPM)
            j_last = _nearest_tatum(tatums, last, _tatum_s(tatums))
            j_rule = int(np.argmin(np.abs(tatums - rule_down_s)))
            same_tempo = float(abs(60.0 / (2 * e * pulse_s) / rule_bpm - 1) <= ALTERNATIVE_SAME_TEMPO)
            in_eighths = iois / (e * pulse_s)
            values = [math.log2(float(np.median(in_eighths))), float(np.mean(in_eighths >= 0.9 * beat_e)),
                      float(np.mean(in_eighths < 0.75))]
            levels = _level_masks(length, beat_e)
            played = np.arange(lo, hi)
            # _phase_scores' phase is relative to tatum lo; turn it into a phase mod length of the grid.
            for phase in range(length):
                rel = (phase - lo) % length
                d = (phase - j0) % length
                row = [cues["onset"][rel], cues["bass"][rel], cues["change"][rel], cues["phrase_end"][rel],
                       cues["long_note"][rel], rep, on8, on16, off, z, z * z,
                       float(d == 0), float(0 < d <= beat_e), float(jl is not None and (jl - phase) % length == 0)]
                row += [float(ts == m) for m in SCORER_METERS]
                pos = (played - phase) % length
                for name in SCORER_CUES:
                    f = feats[name][lo:hi]
                    row += [float(f[mask[pos]].mean()) if mask[pos].any() else 0.0 for mask in levels]
                row += [*reps, zq, float(j_last is not None and (j_last - phase) % length == 0), poly, density]
                row += _hypermeter(feats["phrase_end"], phase, length, lo, hi)
                row += [float(ts == rule.time_signature), same_tempo, float((j_rule - phase) % length == 0)]
                row += values
                hyps.append((ts, e, phase))
                rows.append(row)
    return hyps, np.array(rows, dtype=float), grids


def mlp_scores(features: np.ndarray, model: dict | list[dict]) -> np.ndarray:
    """Scores of hypothesis rows under a fitted one-hidden-layer model (bench/corpus_fit.py),
    or the mean score of an ensemble of them."""
    if isinstance(model, list):
        return np.mean([mlp_scores(features, m) for m in model], axis=0)
    if list(model["features"]) != list(SCORER_FEATURES):
        raise ValueError("the meter model was fitted on other features: rerun bench/corpus_fit.py")
    x = (features - np.asarray(model["mean"])) / np.asarray(model["scale"])
    hidden = np.maximum(0.0, x @ np.asarray(model["w1"]) + np.asarray(model["b1"]))
    return hidden @ np.asarray(model["w2"]) + float(model["b2"])


def score_hypotheses(features: np.ndarray, weights: dict[str, float] | None = None) -> np.ndarray:
    """Scores of hypothesis feature rows: the fitted model's, or linear under ``weights``."""
    if weights is None and METER_MODEL is not None:
        return mlp_scores(features, METER_MODEL)
    w = weights or METER_SCORER_WEIGHTS
    return features @ np.array([w.get(name, 0.0) for name in SCORER_FEATURES])


def joint_meter(beats_s: np.ndarray, events: list[OnsetEvent], *, first_note_s: float,
                rule: BeatGrid | None = None) -> BeatGrid | None:
    """The best hypothesis as a BeatGrid, with ranked meter and tempo alternatives; None if too little music.

    The grid carries ``alternatives`` [(time signature, probability)] (marginal over tempo and
    phase) and ``tempo_alternatives`` [(quarter bpm, probability)], best first.
    """
    hyps, feats, grids = meter_hypotheses(beats_s, events, first_note_s, rule)
    if not hyps:
        return None
    scores = score_hypotheses(feats)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    best = int(np.argmax(scores))
    ts, e, phase = hyps[best]
    length, unit, beat_q, per_bar = SCORER_METERS[ts]
    tatums = grids[e]
    beat_idx = np.arange(phase % unit, len(tatums), unit)
    beats = tatums[beat_idx]
    first_down = int(np.searchsorted(beat_idx, phase % length))
    grid = _grid_from(beats, first_down, per_bar, beat_q, ts, first_note_s)
    meters: dict[str, float] = {}
    tempi: dict[float, float] = {}
    pulse_s = float(np.median(np.diff(beats_s)))
    for (h_ts, h_e, _), p in zip(hyps, probs):
        meters[h_ts] = meters.get(h_ts, 0.0) + float(p)
        bpm = round(60.0 / (2 * h_e * pulse_s), 1)
        tempi[bpm] = tempi.get(bpm, 0.0) + float(p)
    grid.alternatives = sorted(meters.items(), key=lambda kv: -kv[1])
    chosen = float(np.median(grid.tempo_curve_bpm()))
    ranked = sorted(tempi.items(), key=lambda kv: -kv[1])
    grid.tempo_alternatives = [(chosen, ranked[0][1])] + [kv for kv in ranked[1:]]
    return grid
