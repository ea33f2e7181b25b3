"""The melody / accompaniment split (core.split) on constructed note lists, and its use in routing. No models."""

from __future__ import annotations

import numpy as np

from stemscribe.core.audio import Audio
from stemscribe.core.notes import Note
from stemscribe.core.options import Options
from stemscribe.core.routing import route_parts
from stemscribe.core.split import split_melody, top_line

BEAT_S = 0.5
CHORDS = [(48, 52, 55), (53, 57, 60), (55, 59, 62), (48, 52, 55)]  # C F G C, around middle C
TUNE = [72, 74, 76, 77, 79, 77, 76, 74, 72, 71, 72, 74, 76, 74, 72, 72]  # stepwise, an octave above


def _comping(bars: int = 4) -> list[Note]:
    """Block chords on every beat, four beats a bar."""
    notes = []
    for bar in range(bars):
        for beat in range(4):
            start = (bar * 4 + beat) * BEAT_S
            notes += [Note(start, start + BEAT_S * 0.9, p) for p in CHORDS[bar % len(CHORDS)]]
    return notes


def _tune(bars: int = 4) -> list[Note]:
    """Eighth notes after a dotted start: half the onsets fall between the chords'."""
    notes, time, k = [], 0.25, 0
    while time < bars * 4 * BEAT_S - 0.3:
        length = BEAT_S if k % 3 == 0 else BEAT_S / 2
        notes.append(Note(time, time + length * 0.95, TUNE[k % len(TUNE)]))
        time += length
        k += 1
    return notes


def test_melody_over_chords_is_split_into_the_tune_and_the_chords():
    tune, chords = _tune(), _comping()
    melody, accompaniment, decision = split_melody(tune + chords)
    assert decision.split, decision.reason
    assert sorted((n.start_s, n.pitch) for n in melody) == sorted((n.start_s, n.pitch) for n in tune)
    assert len(accompaniment) == len(chords)
    assert decision.tracks == ("Melody", "Accompaniment")
    assert "split into Melody" in decision.reason
    assert decision.to_dict()["numbers"]["independent"] >= 0.3


def test_octave_ghosts_of_the_tune_do_not_take_its_place():
    tune = _tune()
    ghosts = [Note(n.start_s + 0.01, n.end_s - 0.05, n.pitch + 12, velocity=30) for n in tune[::2]]
    melody, _, decision = split_melody(tune + ghosts + _comping())
    assert decision.split, decision.reason
    assert {n.pitch for n in melody} <= set(TUNE)


def test_a_plain_chordal_part_stays_one_part():
    # A hymn-like part: four voices moving together, its top voice a stepwise line.
    notes = []
    for k, top in enumerate(TUNE * 2):
        start = k * BEAT_S
        notes += [Note(start, start + BEAT_S * 0.95, p) for p in (top - 24, top - 12, top - 8, top)]
    melody, accompaniment, decision = split_melody(notes)
    assert not decision.split
    assert melody == [] and len(accompaniment) == len(notes)
    assert "chordal" in decision.reason


def test_a_single_line_stays_one_part():
    _, accompaniment, decision = split_melody(_tune())
    assert not decision.split and "single line" in decision.reason
    assert len(accompaniment) == len(_tune())


def test_a_top_line_of_scattered_leaps_is_not_a_melody():
    rng = np.random.default_rng(3)
    chords = _comping()
    leaps = [Note(0.25 + k * 0.5, 0.8 + k * 0.5, int(p)) for k, p in enumerate(rng.choice([62, 74, 86, 67, 79], 30))]
    _, _, decision = split_melody(chords + leaps)
    assert not decision.split


def test_top_line_is_in_time_order_and_one_note_per_onset():
    notes = _tune() + _comping()
    line = [notes[i] for i in top_line(notes)]
    assert all(a.start_s < b.start_s for a, b in zip(line, line[1:]))


class _FakeEngine:
    def __init__(self, notes):
        self.notes = notes

    def transcribe(self, samples, sample_rate, **kwargs):
        return list(self.notes)


class _FakeModels:
    def __init__(self, notes):
        self.engine = _FakeEngine(notes)

    def get(self, name):
        return self.engine


def _audio() -> Audio:
    return Audio(np.zeros((1, 44100), dtype=np.float32), 44100, "x")


def test_routing_writes_an_other_stem_as_melody_and_accompaniment_and_records_why():
    models = _FakeModels(_tune() + _comping())
    tracks, verdicts = route_parts([("other", _audio())], mix=_audio(), models=models, options=Options(),
                                   guard=False)
    assert [t.name for t in tracks] == ["Melody", "Accompaniment"]
    assert verdicts[0].split["split"] is True and verdicts[0].to_dict()["split"]["reason"]
    tracks, verdicts = route_parts([("other", _audio())], mix=_audio(), models=models, options=Options(),
                                   guard=False, split=False)
    assert len(tracks) == 1 and verdicts[0].split is None


def test_routing_leaves_named_stems_and_multitrack_files_whole():
    models = _FakeModels(_tune() + _comping())
    tracks, verdicts = route_parts([("piano", _audio())], mix=_audio(), models=models, options=Options(), guard=False)
    assert len(tracks) == 1 and verdicts[0].split is None
    tracks, verdicts = route_parts([("other.wav", _audio())], mix=None, models=models, options=Options())
    assert len(tracks) == 1 and verdicts[0].split is None


BASS_LINE = [36, 41, 43, 36]  # C F G C roots, an octave under the chords


def _bass(bars: int = 4) -> list[Note]:
    """Half notes on the chord roots."""
    return [Note((bar * 4 + half * 2) * BEAT_S, (bar * 4 + half * 2 + 1.9) * BEAT_S, BASS_LINE[bar % 4])
            for bar in range(bars) for half in range(2)]


def test_a_bass_line_left_under_the_chords_is_taken_out_as_a_bass_part():
    from stemscribe.core.split import split_bass

    bass, rest, decision = split_bass(_bass() + _comping(), label="the other stem")
    assert decision.split and decision.tracks == ("Bass",)
    assert sorted({n.pitch for n in bass}) == [36, 41, 43]
    assert len(rest) == len(_comping()) and "separated bass stem was silent" in decision.reason
    # Chords alone have no bass line under them: their lowest notes move with the chord, 6 semitones under it.
    _, kept, decision = split_bass(_comping(), label="the other stem")
    assert not decision.split and len(kept) == len(_comping()) and "not apart from the rest" in decision.reason
    # A tune alone over nothing is not a bass either.
    assert not split_bass(_tune(), label="the other stem")[2].split


def _tone(seconds=2.0, level=0.3) -> Audio:
    t = np.arange(int(seconds * 44100)) / 44100
    return Audio((level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None], 44100, "x")


def test_routing_writes_the_bass_from_other_when_the_bass_stem_came_out_silent():
    models = _FakeModels(_tune() + _bass() + _comping())
    silent = Audio(np.zeros((1, 88200), dtype=np.float32), 44100, "bass")
    tracks, verdicts = route_parts([("drums", _tone()), ("bass", silent), ("other", _tone())], mix=_tone(),
                                   models=models, options=Options())
    assert verdicts[0].decision != "dropped" and verdicts[1].decision == "dropped"
    assert [t.name for t in tracks][1:] == ["Melody", "Accompaniment", "Bass"]
    assert tracks[-1].instrument == "bass" and verdicts[2].split["bass"]["split"] is True
    # Without drums (an ensemble separated on request) the lowest voice stays in its part.
    tracks, verdicts = route_parts([("bass", silent), ("other", _tone())], mix=_tone(), models=models,
                                   options=Options())
    assert [t.name for t in tracks] == ["Melody", "Accompaniment"] and "bass" not in verdicts[1].split


def test_the_chat_line_says_what_the_split_did():
    from stemscribe.core.guard import StemVerdict
    from stemscribe.core.pipeline import stem_summary_line

    verdicts = [StemVerdict("drums", "stem", "drums: used"), StemVerdict("bass", "dropped", "bass: silent"),
                StemVerdict("other", "stem", "other: used", split={"split": True, "bass": {"split": True}}),
                StemVerdict("vocals", "dropped", "vocals: silent")]
    assert stem_summary_line(verdicts) == (
        "Separation: the other stem written as Melody and Accompaniment (a tune over chords); bass written from "
        "the other stem (the separated bass stem was silent); vocals left out (silent).")


def test_a_tune_held_over_comping_that_starts_with_the_chords_is_still_a_melody():
    """A sax holding half notes over chords struck on every beat: every tune note starts with a chord."""
    held = [Note(i * 2 * BEAT_S, (i + 1) * 2 * BEAT_S - 0.05, TUNE[i]) for i in range(8)]
    dyads = [n for n in _comping() if n.pitch not in (55, 60, 62)]  # two-note chords on every beat
    melody, accompaniment, decision = split_melody(held + dyads, label="the other stem")
    assert decision.split and [n.pitch for n in melody] == TUNE[:8]
    assert decision.numbers["independent"] == 1.0
    # The chords' own top voice, struck and released with each chord, is not.
    assert not split_melody(_comping())[2].split
