"""Corpus bench generator (deterministic, reserved pieces left out) and the meter confidence ranking."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import corpus_perform as cp  # noqa: E402
from stemscribe.bots.common import close_meter_note, summary_line  # noqa: E402
from stemscribe.core.notation import meter, rhythm  # noqa: E402
from stemscribe.core.notes import Note  # noqa: E402


def _excerpt(ts="6/8", pickup=0.5):
    notes = []
    bar = 3.0
    for b in range(12):
        for k, (on, d) in enumerate([(0, 1.0), (1.0, 0.5), (1.5, 1.0), (2.5, 0.5)]):
            notes.append([pickup + b * bar + on, d, 62 + (b + k) % 7, 0])
    notes.insert(0, [0.0, 0.5, 60, 0])
    return dict(key="test/made-up#1", time_signature=ts, pickup_q=pickup, bar_q=bar, parts=1, notes=notes)


def test_same_seed_same_events():
    a = cp.perform(_excerpt(), 5)
    b = cp.perform(_excerpt(), 5)
    c = cp.perform(_excerpt(), 6)
    assert a.notes == b.notes and a.tempo_bpm == b.tempo_bpm and a.conditions == b.conditions
    assert a.notes != c.notes


def test_damage_changes_the_notes_and_truth_is_kept():
    clean = cp.perform(_excerpt(), 3, damage=False)
    damaged = cp.perform(_excerpt(), 3, damage=True)
    assert len(clean.notes) == len(_excerpt()["notes"])
    assert clean.notes != damaged.notes
    assert clean.time_signature == "6/8" and clean.pickup_q == 0.5
    lo, hi = cp.BEAT_BPM_RANGE["6/8"]
    assert 0.7 * lo * 1.5 < clean.tempo_bpm < 1.3 * hi * 1.5


def test_reserved_pieces_are_recognised():
    reserved = cp.reserved_keys()
    assert reserved, "reserved.txt not found"
    assert cp.is_reserved("essenFolksong/irl.abc#1", reserved)
    assert cp.is_reserved("bach/bwv269.mxl", reserved)
    assert not cp.is_reserved("essenFolksong/irl.abc#2", reserved)


def test_split_is_fixed_by_path():
    keys = [f"essenFolksong/han1.abc#{i}" for i in range(200)]
    splits = [cp.split_of(k) for k in keys]
    assert splits == [cp.split_of(k) for k in keys]
    assert 0.25 < splits.count("validation") / len(keys) < 0.55


def _waltz(bars=16, quarter_s=0.5):
    notes = []
    for b in range(bars):
        t = 0.5 + b * 3 * quarter_s
        notes.append(Note(t, t + 0.9 * quarter_s, 48, 110))
        for k in (1, 2):
            notes.append(Note(t + k * quarter_s, t + (k + 0.8) * quarter_s, 64 + (b % 3), 60))
            notes.append(Note(t + k * quarter_s, t + (k + 0.8) * quarter_s, 67 + (b % 3), 60))
        notes.append(Note(t, t + 2.5 * quarter_s, 72 + (b % 4), 90))
    return notes


def test_ranking_is_sorted_and_holds_the_written_meter():
    notes = _waltz()
    beats, events = rhythm.track_beats(notes, None, 22050, pitched=notes)
    grid = meter.analyze_meter(beats, events, first_note_s=0.5)
    alts = meter.alternatives_of(grid)
    names = [a["time_signature"] for a in alts["meter"]]
    scores = [a["score"] for a in alts["meter"]]
    assert names[0] == grid.time_signature
    assert scores[1:] == sorted(scores[1:], reverse=True)
    assert abs(sum(scores) - 1.0) < 0.02
    assert len(set(names)) == len(names) >= 3
    assert alts["tempo"][0]["bpm"] == pytest.approx(float(np.median(grid.tempo_curve_bpm())), abs=0.1)
    joint = meter.joint_meter(beats, events, first_note_s=0.5)
    probs = [p for _, p in joint.alternatives]
    assert probs == sorted(probs, reverse=True)


def test_close_alternatives_get_one_line():
    close = {"time_signature": "3/4", "alternatives": {"meter": [
        {"time_signature": "3/4", "score": 0.45}, {"time_signature": "6/8", "score": 0.40}]}}
    far = {"time_signature": "3/4", "alternatives": {"meter": [
        {"time_signature": "3/4", "score": 0.9}, {"time_signature": "6/8", "score": 0.05}]}}
    assert close_meter_note(close) == "3/4 or 6/8: I wrote 3/4"
    assert close_meter_note(far) == ""
    assert close_meter_note({}) == ""
    assert "3/4 or 6/8: I wrote 3/4" in summary_line(dict(close, mode="solo"))
    assert "I wrote" not in summary_line(dict(far, mode="solo"))


def test_notation_carries_the_alternatives():
    from stemscribe.core.notation import notate
    from stemscribe.core.notes import Track
    from stemscribe.core.options import Options

    n = notate([Track("Piano", "piano", _waltz())], layout="solo", options=Options(), audio_mono=None,
               sample_rate=22050, title="t")
    meters = n.alternatives["meter"]
    assert meters[0]["time_signature"] == n.time_signature
    assert len(meters) >= 2 and all(set(m) == {"time_signature", "score"} for m in meters)
    assert n.alternatives["tempo"][0]["bpm"] > 0


def test_exact_performance_is_steady_and_keeps_the_default_draws():
    """perform(exact=True) plays like a sequencer; the default performance is unchanged by the option."""
    exact = cp.perform(_excerpt(), 4, damage=False, exact=True)
    plain = cp.perform(_excerpt(), 4, damage=False)
    assert exact.conditions["tempo_curve"] == "exact"
    assert plain.notes == cp.perform(_excerpt(), 4, damage=False, exact=False).notes
    # Every bar starts one bar length after the last (the excerpt's bars are 3 quarters).
    bar_s = 3 * 60 / exact.tempo_bpm
    starts = [min(n.start_s for n in exact.notes if abs(n.start_s - (exact.downbeat_s + b * bar_s)) < 0.1)
              for b in range(10)]
    assert np.ptp(np.diff(starts)) < 0.03, starts
