"""Beat division (binary or ternary) on constructed 3/4, 6/8, 3/8 and 2/2 note lists, slow and fast."""

from __future__ import annotations

import numpy as np
import pytest

from stemscribe.core.notation import meter, rhythm
from stemscribe.core.notes import Note

# One bar of rhythm per meter, (onset, length) in eighths, downbeat first.
BARS = {
    "3/4": [(0, 2), (2, 1), (3, 1), (4, 2)],            # quarter, two eighths, quarter
    "6/8": [(0, 2), (2, 1), (3, 2), (5, 1)],            # quarter-eighth, quarter-eighth
    "3/8": [(0, 2), (2, 1)],                            # quarter-eighth
    "2/2": [(0, 4), (4, 2), (6, 1), (7, 1)],            # half, quarter, two eighths
}
BAR_EIGHTHS = {"3/4": 6, "6/8": 6, "3/8": 3, "2/2": 8}
#: Eighths per notated beat, and the division of that beat.
BEAT_EIGHTHS = {"3/4": (2, 2), "6/8": (3, 3), "3/8": (3, 3), "2/2": (4, 2)}


def _notes(ts: str, eighth_s: float, bars: int = 12) -> list[Note]:
    out = []
    for b in range(bars):
        for k, (on, length) in enumerate(BARS[ts]):
            t = 0.5 + (b * BAR_EIGHTHS[ts] + on) * eighth_s
            out.append(Note(t, t + 0.9 * length * eighth_s, 60 + (b + k) % 5, 100 if on == 0 else 70))
    return out


@pytest.mark.parametrize("ts", sorted(BARS))
@pytest.mark.parametrize("eighth_s", [0.36, 0.17])
def test_division_at_the_notated_beat(ts, eighth_s):
    """Given beats at the notated beat, ternary meters divide in 3, binary ones in 2."""
    notes = _notes(ts, eighth_s)
    beat_e, division = BEAT_EIGHTHS[ts]
    if ts == "3/8":
        beat_e = 3   # one dotted-quarter beat per bar
    beats = 0.5 + np.arange(0, 12 * BAR_EIGHTHS[ts] + 1, beat_e) * eighth_s
    assert meter.beat_division(beats, rhythm.onset_events(notes)) == division


@pytest.mark.parametrize("ts", sorted(BARS))
@pytest.mark.parametrize("eighth_s", [0.36, 0.17])
def test_grid_evidence_prefers_the_true_division(ts, eighth_s):
    """The joint scorer's division evidence: the true eighth grid holds the onsets, the other leaves them off."""
    notes = _notes(ts, eighth_s)
    events = rhythm.onset_events(notes)
    beat_e, division = BEAT_EIGHTHS[ts]
    beats = 0.5 + np.arange(0, 12 * BAR_EIGHTHS[ts] + 1, beat_e) * eighth_s
    true_on8, _, true_off = meter._grid_shares(beats, events, 1 / beat_e)
    wrong = 1 / (beat_e + 1) if division == 2 else 1 / (beat_e - 1)
    wrong_on8, _, wrong_off = meter._grid_shares(beats, events, wrong)
    assert true_on8 > 0.95 and true_off < 0.05
    assert wrong_on8 < true_on8 - 0.05


@pytest.mark.parametrize("ts", ["3/4", "6/8"])
def test_tracked_pulse_is_not_a_ternary_misread(ts):
    """From the notes alone the written tempo is the true one or an octave of it, never x1.5 / x2/3."""
    eighth_s = 0.25
    notes = _notes(ts, eighth_s, bars=16)
    beats, events = rhythm.track_beats(notes, None, 22050, pitched=notes)
    grid = meter.analyze_meter(beats, events, first_note_s=0.5)
    quarter_bpm = 60.0 / (2 * eighth_s)
    ratio = float(np.median(grid.tempo_curve_bpm())) / quarter_bpm
    octave = np.log2(ratio)
    assert abs(octave - round(octave)) < 0.1, ratio


def test_shipped_meter_model_matches_the_features():
    """The fitted scorer (core/notation/meter_model.py) was fitted on today's features and is in use."""
    assert meter.METER_MODEL is not None and meter.USE_JOINT_SCORER
    notes = _notes("6/8", 0.2)
    beats, events = rhythm.track_beats(notes, None, 22050, pitched=notes)
    hyps, feats, _ = meter.meter_hypotheses(beats, events, 0.5)
    assert feats.shape == (len(hyps), len(meter.SCORER_FEATURES))
    scores = meter.score_hypotheses(feats)
    assert np.all(np.isfinite(scores)) and scores.std() > 0
    stale = [dict(m, features=list(m["features"])[:-1]) for m in meter.METER_MODEL]
    with pytest.raises(ValueError):
        meter.mlp_scores(feats, stale)


@pytest.mark.parametrize("ts", sorted(BARS))
@pytest.mark.parametrize("eighth_s", [0.36, 0.17])
def test_written_tempo_keeps_the_beat_division(ts, eighth_s):
    """The whole decision (tracked pulse, rules, fitted scorer) never reads a ternary beat as binary or
    back: the written quarter tempo is the true one, or twice or half of it, never x1.5 or x2/3."""
    notes = _notes(ts, eighth_s, bars=16)
    beats, events = rhythm.track_beats(notes, None, 22050, pitched=notes)
    grid = meter.analyze_meter(beats, events, first_note_s=0.5)
    true_bpm = 60.0 / (2 * eighth_s)
    ratio = float(np.median(grid.tempo_curve_bpm())) / true_bpm
    assert min(abs(np.log2(ratio) - k) for k in (-1, 0, 1)) < 0.1, (grid.time_signature, ratio)
    assert grid.time_signature.endswith("/8") == (BEAT_EIGHTHS[ts][1] == 3), grid.time_signature
