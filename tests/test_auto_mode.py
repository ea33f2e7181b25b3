"""Auto mode decides from the notes heard, not the timbre, and says why; engines fall back when deaf.

The decisions are fed constructed note streams (a melody, chords, drum hits) with spectral
profiles chosen to mislead: a singer's breath made the old profile read "several
instruments", so a monophonic stream must win over a polyphonic-looking spectrum.
"""

from __future__ import annotations

import numpy as np
import pytest

from stemscribe.core.analysis import MixProfile
from stemscribe.core.auto import (
    FALLBACK_MIN_NOTES, LINE_MAX_OVERLAP, SUNG_DEVIATION, attack_count, check_engine, choose_line_engine, kind_of, note_stream,
    solo_instrument,
)
from stemscribe.core.engines.mono import MonoLine, semitone_deviation
from stemscribe.core.instruments import INSTRUMENTS
from stemscribe.core.notes import Note
from stemscribe.core.options import Mode, Options
from stemscribe.core.pipeline import _transcribe_single, choose_mode, needs_probe
from stemscribe.core.progress import Reporter
from stemscribe.core.tuning import Tuning


def _profile(**changes) -> MixProfile:
    """A spectral profile; the defaults look like several sustained instruments (CQT polyphony 1.6)."""
    base = dict(percussive_ratio=0.05, kick_ratio=0.001, decay_share=0.2, swell_share=0.35, polyphony=1.6,
                low_pitch=55.0, high_pitch=79.0, median_pitch=67.0, voiced_fraction=0.9)
    base.update(changes)
    return MixProfile(**base)


def _melody(n=24, legato_s=0.0, start=60):
    """A scale-wise tune: one note at a time, each 0.3 s (optionally overlapping the next by legato_s)."""
    steps = [0, 2, 4, 5, 7, 5, 4, 2]
    return [Note(0.3 * i, 0.3 * (i + 1) + legato_s, start + steps[i % 8], 90) for i in range(n)]


def _chords(n=12, low=48):
    """Block triads with a bass note under them, 0.6 s each."""
    notes = []
    for i in range(n):
        root = low + [0, 5, 7, 0][i % 4]
        for p in (root - 12, root, root + 4, root + 7, root + 12):
            notes.append(Note(0.6 * i, 0.6 * (i + 1), p, 80))
    return notes


def _drum_hits(n=40):
    """Short hits at scattered pitches (what a pitch model hears in a drum kit), a few at once."""
    rng = np.random.default_rng(3)
    notes = []
    for i in range(n):
        t = 0.25 * i
        for p in rng.choice(np.arange(36, 90), size=2, replace=False):
            notes.append(Note(t, t + 0.06, int(p), 70))
    return notes


AUTO = Options()


def test_a_monophonic_stream_is_a_solo_line_even_when_the_spectrum_looks_like_an_ensemble():
    stream = note_stream(_melody(legato_s=0.03))  # legato joins overlap a little
    assert stream.line and stream.overlap < LINE_MAX_OVERLAP
    mode, reason = choose_mode(AUTO, 1, _profile(), None, stream=stream)
    assert mode is Mode.SOLO
    assert reason == "it plays one note at a time, so it's written as a single melody line"
    # Without the note stream the same profile would have been reduced to piano: the stream decides.
    assert choose_mode(AUTO, 1, _profile(), None)[0] is Mode.PIANO
    assert solo_instrument(kind_of(_profile(), stream), stream, _profile()).key == "melody"


def test_a_low_line_gets_the_bass_clef_staff():
    stream = note_stream(_melody(start=40))
    assert solo_instrument(kind_of(_profile(), stream), stream, _profile()).key == "low-melody"


def test_a_monophonic_stream_with_a_kick_is_still_a_line_not_a_band():
    profile = _profile(kick_ratio=0.05, percussive_ratio=0.2, polyphony=1.8)
    assert profile.is_band
    mode, _ = choose_mode(AUTO, 1, profile, None, separation_available=lambda: True, stream=note_stream(_melody()))
    assert mode is Mode.SOLO


def test_struck_chords_over_a_wide_range_are_a_piano_on_a_grand_staff():
    profile = _profile(decay_share=0.45, swell_share=0.1, polyphony=2.4, low_pitch=36.0, high_pitch=76.0)
    stream = note_stream(_chords())
    assert stream.chords
    mode, reason = choose_mode(AUTO, 1, profile, None, stream=stream)
    assert (mode, reason) == (Mode.SOLO, "it plays chords over a wide range, struck like a piano, "
                                         "so it's written on a grand staff")
    assert solo_instrument(kind_of(profile, stream), stream, profile).key == "piano"


def test_sustained_chords_of_several_voices_are_reduced_to_a_grand_staff():
    stream = note_stream(_chords())
    mode, reason = choose_mode(AUTO, 1, _profile(), None, stream=stream)
    assert (mode, reason) == (Mode.PIANO, "several voices sound together, so they're reduced to a grand staff")


def test_drums_alone_go_on_a_percussion_staff():
    profile = _profile(percussive_ratio=0.7, kick_ratio=0.08, decay_share=0.5, swell_share=0.1)
    stream = note_stream(_drum_hits())
    mode, reason = choose_mode(AUTO, 1, profile, None, separation_available=lambda: True, stream=stream)
    assert mode is Mode.SOLO and "drums alone" in reason
    assert solo_instrument(kind_of(profile, stream), stream, profile).key == "drums"


def test_a_band_with_drums_is_separated_when_it_can_be_and_reduced_when_not():
    profile = _profile(percussive_ratio=0.15, kick_ratio=0.05, polyphony=2.2)
    stream = note_stream(_chords())
    assert choose_mode(AUTO, 1, profile, None, separation_available=lambda: True, stream=stream)[0] is Mode.STEMS
    mode, reason = choose_mode(AUTO, 1, profile, None, separation_available=lambda: False, stream=stream)
    assert mode is Mode.PIANO and "isn't installed" in reason


def test_the_probe_runs_only_where_it_decides_something():
    assert needs_probe(Options(), 1, None)
    assert needs_probe(Options(mode=Mode.SOLO), 1, None)
    assert not needs_probe(Options(), 2, None)
    assert not needs_probe(Options(stems=True), 1, None)
    assert not needs_probe(Options(mode=Mode.SOLO), 1, INSTRUMENTS["flute"])
    assert not needs_probe(Options(mode=Mode.PIANO), 1, None)


def test_an_engine_that_hears_far_fewer_notes_is_replaced_and_the_reason_says_how_many():
    why = check_engine("transkun", 2, "basic-pitch", 11)
    assert why == ("the piano model heard only 2 note onsets where basic-pitch heard 11, "
                   "so basic-pitch's notes are written")
    assert check_engine("transkun", 9, "basic-pitch", 11) == ""
    # Too few notes on the other side to judge: keep the choice.
    assert check_engine("transkun", 0, "basic-pitch", FALLBACK_MIN_NOTES - 1) == ""


def test_chord_notes_and_octave_ghosts_are_one_attack_so_they_do_not_look_like_more_music():
    """An organ's generic basic-pitch notes double every chord an octave up: twice the notes, the same attacks."""
    chords = _chords(12)
    assert attack_count(chords) == 12
    assert check_engine("organ", attack_count(chords[::2]), "basic-pitch", attack_count(chords)) == ""


class _FakeMono:
    """A pitch tracker that returns fixed notes and a fixed pitch deviation."""

    def __init__(self, notes, deviation):
        self.line = MonoLine(notes=notes, deviation=deviation, voiced_share=0.8)

    def transcribe_line(self, samples, sample_rate, *, instrument=None, progress=None):
        return self.line


SILENCE = np.zeros(16000, dtype=np.float32)


def test_a_line_whose_pitch_wavers_goes_to_the_pitch_tracker_and_says_so():
    tracked = _melody(8)
    choice = choose_line_engine(SILENCE, 16000, INSTRUMENTS["melody"], mono=_FakeMono(tracked, SUNG_DEVIATION + 0.05),
                                basic_pitch_notes=lambda: _melody(10), tuning=None)
    assert choice.engine == "mono" and choice.notes == tracked
    assert "wavers like a voice" in choice.why


def test_a_steady_line_goes_to_basic_pitch():
    heard = _melody(10)
    choice = choose_line_engine(SILENCE, 16000, INSTRUMENTS["melody"], mono=_FakeMono(_melody(9), 0.08),
                                basic_pitch_notes=lambda: heard, tuning=None)
    assert (choice.engine, choice.notes, choice.why) == ("basic-pitch", heard, "")


def test_a_pitch_tracker_that_hears_almost_nothing_falls_back_to_basic_pitch_with_a_reason():
    heard = _melody(20)
    choice = choose_line_engine(SILENCE, 16000, INSTRUMENTS["voice"], mono=_FakeMono(_melody(2), 0.25),
                                basic_pitch_notes=lambda: heard, tuning=None, prefer_mono=True)
    assert choice.engine == "basic-pitch" and choice.notes == heard
    assert choice.why == ("the pitch tracker heard only 2 note onsets where basic-pitch heard 20, "
                          "so basic-pitch's notes are written")


class _FakeEngine:
    def __init__(self, notes):
        self.notes = notes

    def transcribe(self, samples, sample_rate, *, instrument=None, progress=None, params=None):
        return list(self.notes)


class _FakeEngines:
    def __init__(self, **engines):
        self.engines = engines

    def get(self, name):
        return self.engines[name]


class _FakeToolkit:
    def __init__(self, **engines):
        self.engines = _FakeEngines(**engines)


def test_the_piano_model_hearing_almost_nothing_falls_back_to_the_probes_notes():
    """The saxophone case: sent to the piano model, which wrote 2 notes of 11."""
    from stemscribe.core.auto import listen

    samples = np.zeros(44100, dtype=np.float32)
    probe_notes = _melody(11)
    probe = listen(_FakeEngine(probe_notes), samples, 44100, Tuning.given(440.0))
    profile = _profile(decay_share=0.45, swell_share=0.1, polyphony=2.4, low_pitch=36.0, high_pitch=76.0)
    toolkit = _FakeToolkit(transkun=_FakeEngine(_melody(2)))
    track, why = _transcribe_single(samples, 44100, Mode.SOLO, INSTRUMENTS["piano"], Options(), profile, toolkit,
                                    Reporter(), Tuning.given(440.0), probe)
    assert track.engine == "basic-pitch" and len(track.notes) == 11
    assert why == ("Notes: the piano model heard only 2 note onsets where basic-pitch heard 11, "
                   "so basic-pitch's notes are written.")


def test_semitone_deviation_tells_held_pitches_from_vibrato_whatever_the_tuning():
    t = np.arange(0, 3.0, 0.01)
    steps = 60 + np.floor(t / 0.5)  # a new semitone every half second
    flat = 440.0 * 2 ** ((steps - 0.3 - 69) / 12)  # the whole line 30 cents flat
    assert semitone_deviation(flat) < 0.02
    sung = 440.0 * 2 ** ((steps + 0.7 * np.sin(2 * np.pi * 5.5 * t) - 69) / 12)
    assert semitone_deviation(sung) > SUNG_DEVIATION


def _sung_tone(midi_curve, sample_rate=16000):
    """A voice-like harmonic tone following a pitch curve given per sample."""
    hz = 440.0 * 2 ** ((midi_curve - 69) / 12)
    phase = 2 * np.pi * np.cumsum(hz) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    fade = np.minimum(1.0, np.minimum(np.arange(tone.size), np.arange(tone.size)[::-1]) / (0.05 * sample_rate))
    return (0.3 * tone * fade).astype(np.float32)


@pytest.fixture(scope="module")
def mono_engine():
    from stemscribe.core.engines.mono import MonoEngine

    return MonoEngine(threads=1)


def test_the_pitch_tracker_writes_one_note_for_a_held_vibrato_note(mono_engine):
    sr = 16000
    t = np.arange(int(2.0 * sr)) / sr
    line = mono_engine.transcribe_line(_sung_tone(67 + 0.6 * np.sin(2 * np.pi * 5.5 * t), sr), sr)
    assert [n.pitch for n in line.notes] == [67]
    assert line.deviation >= SUNG_DEVIATION


def test_the_pitch_tracker_writes_a_glide_as_its_two_notes_not_a_run(mono_engine):
    sr = 16000
    t = np.arange(int(2.4 * sr)) / sr
    curve = np.where(t < 1.0, 60.0, np.where(t > 1.25, 65.0, 60 + 5 * (t - 1.0) / 0.25))
    line = mono_engine.transcribe_line(_sung_tone(curve, sr), sr)
    assert [n.pitch for n in line.notes] == [60, 65]


def test_chords_that_barely_overlap_still_count_as_chords_by_their_onsets():
    """Staccato chords (a phone's band-pass leaves little ring): notes start together, so not a line."""
    notes = [Note(0.5 * i, 0.5 * i + 0.1, p, 80) for i in range(12) for p in (60, 64, 67)]
    stream = note_stream(notes)
    assert stream.together == 1.0 and not stream.line and stream.chords
    # A model's ghosts of a melody note (its octave, its twelfth) starting with it are not a chord.
    ghosts = [Note(n.start_s, n.end_s, n.pitch + (12 if i % 2 else 19), 40) for i, n in enumerate(_melody(16)[::2])]
    assert note_stream(_melody(16) + ghosts).together == 0.0
    # A third above is.
    thirds = [Note(n.start_s, n.end_s, n.pitch + 4, 60) for n in _melody(16)]
    assert note_stream(_melody(16) + thirds).together == 1.0


def test_overlapping_notes_that_never_start_together_are_a_line_unless_the_instrument_rings():
    """A legato line through a room or a phone's codec overlaps its neighbours; a piano's arpeggios ring on."""
    smeared = note_stream(_melody(24, legato_s=0.12))
    assert not smeared.line and not smeared.chords and smeared.together == 0.0
    assert kind_of(_profile(polyphony=2.0, low_pitch=36.0, high_pitch=80.0), smeared) == "line"
    struck_keyboard = _profile(decay_share=0.45, swell_share=0.1, polyphony=2.0, low_pitch=36.0, high_pitch=80.0)
    assert kind_of(struck_keyboard, smeared) == "keyboard"


class _NoTracker(_FakeEngines):
    def get(self, name):
        if name == "mono":
            raise ImportError("No module named 'torchcrepe'")
        return super().get(name)


def test_without_a_pitch_tracker_installed_basic_pitch_writes_the_line():
    from stemscribe.core.auto import listen

    samples = np.zeros(44100, dtype=np.float32)
    probe = listen(_FakeEngine(_melody(12)), samples, 44100, Tuning.given(440.0))
    toolkit = _FakeToolkit()
    toolkit.engines = _NoTracker()
    track, why = _transcribe_single(samples, 44100, Mode.SOLO, None, Options(), _profile(), toolkit, Reporter(),
                                    Tuning.given(440.0), probe)
    assert (track.engine, track.instrument, len(track.notes), why) == ("basic-pitch", "melody", 12, "")


def test_doctor_reports_the_pitch_tracker():
    from stemscribe.cmd_doctor import Status, check_pitch_tracker
    from stemscribe.settings import Settings

    check = check_pitch_tracker(Settings())
    assert check.status is Status.OK and "tiny.pth" in check.detail


def test_a_line_with_long_release_tails_is_a_line_however_much_its_notes_overlap():
    tails = note_stream(_melody(24, legato_s=0.25))  # each note rings well into the next
    assert tails.overlap >= 0.40 and tails.together == 0.0
    assert kind_of(_profile(polyphony=2.0, low_pitch=36.0, high_pitch=80.0), tails) == "line"
