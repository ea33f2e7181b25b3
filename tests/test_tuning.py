"""Concert pitch: reading a recording's offset from A440 and transcribing it in tune."""

import json

import numpy as np
import pretty_midi
import pytest

from helpers.notes import matched, performed_notes
from helpers.synth import SAMPLE_RATE_HZ, melody_notes, render_notes, write_audio
from stemscribe.cli import main
from stemscribe.core.errors import OptionsError
from stemscribe.core.notes import Note
from stemscribe.core.options import parse_options
from stemscribe.core.pipeline import _tuning_lines
from stemscribe.core.tuning import Tuning, estimate_tuning, retune, transcribe_in_tune

TUNE = (67, 69, 71, 72, 74, 72, 71, 69, 67, 71, 74, 79)
CHORDS_BY_BAR = [(48, 52, 55, 60), (53, 57, 60, 65), (55, 59, 62, 67), (48, 55, 64, 72)]
CHORDS = [(0.2 + i, 1.1 + i, p) for i, chord in enumerate(CHORDS_BY_BAR) for p in chord]


def circular_gap(a: float, b: float) -> float:
    """Distance in cents between two offsets on the 100-cent circle."""
    return abs((a - b + 50.0) % 100.0 - 50.0)


@pytest.mark.parametrize("cents", [0.0, 17.0, -23.0, 38.0, -45.0, 49.0])
def test_the_offset_of_a_melody_and_of_chords_is_read_within_three_cents(cents):
    for notes in (melody_notes(pitches=TUNE), CHORDS):
        found = estimate_tuning(render_notes(notes, cents=cents), SAMPLE_RATE_HZ)
        assert circular_gap(found.cents, cents) <= 3.0, (notes[:2], cents, found)
        assert found.confidence > 0.5
        assert -50.0 < found.cents <= 50.0


def test_noise_and_silence_are_not_retuned():
    rng = np.random.default_rng(1)
    noise = estimate_tuning(rng.normal(0, 0.1, SAMPLE_RATE_HZ * 5).astype(np.float32), SAMPLE_RATE_HZ)
    assert not noise.corrected and noise.confidence < 0.3
    silence = estimate_tuning(np.zeros(SAMPLE_RATE_HZ * 2, dtype=np.float32), SAMPLE_RATE_HZ)
    assert not silence.corrected and silence.cents == 0.0


def _sung(pitches, depth_cents, cents=0.0, rate_hz=5.5, note_s=0.6):
    """A melody with vibrato of +-depth_cents (a voice or a violin), tuned ``cents`` from A440."""
    rng = np.random.default_rng(0)
    out = []
    for p in pitches:
        t = np.arange(int(note_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
        wobble = depth_cents * np.sin(2 * np.pi * rate_hz * t + rng.uniform(0, 6.28))
        phase = 2 * np.pi * np.cumsum(440.0 * 2 ** ((p - 69) / 12 + (cents + wobble) / 1200)) / SAMPLE_RATE_HZ
        env = np.minimum(t / 0.03, 1) * np.minimum((note_s - t) / 0.05, 1)
        out.append(sum(a * np.sin(k * phase) for k, a in ((1, 1.0), (2, 0.5), (3, 0.3))) * env)
    return (0.2 * np.concatenate(out)).astype(np.float32)


@pytest.mark.parametrize("depth", [20, 35])
def test_vibrato_is_read_through(depth):
    found = estimate_tuning(_sung(TUNE * 2, depth, cents=30), SAMPLE_RATE_HZ)
    assert found.corrected and circular_gap(found.cents, 30) <= 3


@pytest.mark.parametrize("cents", [0, 30])
def test_deep_vibrato_is_left_alone(cents):
    # +-60 cents spreads the peaks round the whole semitone; moving the audio would flip notes.
    assert not estimate_tuning(_sung(TUNE * 2, 60, cents=cents), SAMPLE_RATE_HZ).corrected


def test_small_offsets_are_left_alone_and_large_ones_corrected():
    assert not Tuning(7.0, 0.9).corrected
    assert Tuning(-12.0, 0.9).corrected
    assert not Tuning(30.0, 0.1).corrected, "a vague reading moves nothing"
    assert Tuning(-12.0, 0.9).describe().startswith("The recording is tuned 12 cents flat of A4 = 440 Hz")
    assert Tuning(7.0, 0.9).describe() is None


def test_retuning_moves_pitch_onto_the_grid_and_reports_the_time_scale():
    samples = render_notes(melody_notes(pitches=TUNE), cents=35.0)
    moved, scale = retune(samples, SAMPLE_RATE_HZ, 35.0)
    assert scale == pytest.approx(2 ** (35 / 1200), abs=1e-4)
    assert len(moved) == pytest.approx(len(samples) * scale, abs=2)
    assert circular_gap(estimate_tuning(moved, SAMPLE_RATE_HZ).cents, 0.0) <= 3.0


def test_notes_come_back_in_the_recordings_time():
    seen = []

    def engine(samples, sample_rate, **kwargs):
        seen.append((len(samples), kwargs))
        return [Note(start_s=1.0, end_s=2.0, pitch=60, velocity=80)]

    samples = np.zeros(SAMPLE_RATE_HZ * 3, dtype=np.float32)
    notes = transcribe_in_tune(engine, samples, SAMPLE_RATE_HZ, Tuning(-40.0, 0.9), instrument=None)
    scale = 2 ** (-40 / 1200)
    assert seen[0][0] == pytest.approx(len(samples) * scale, abs=2) and seen[0][1] == {"instrument": None}
    assert notes[0].start_s == pytest.approx(1.0 / scale, rel=1e-4) and notes[0].end_s == pytest.approx(2.0 / scale, rel=1e-4)
    # In tune (or switched off): the engine gets the recording untouched.
    untouched = transcribe_in_tune(engine, samples, SAMPLE_RATE_HZ, Tuning(0.0, 0.0, "off"))
    assert seen[-1][0] == len(samples) and untouched[0].start_s == 1.0


@pytest.mark.parametrize("text, expected", [
    ("tuning:432", 432.0), ("tuning:A=415", 415.0), ("pitch:443hz", 443.0), ("tuning:off", 440.0),
    ("tuning:auto", None), ("concert:a4=440", 440.0),
])
def test_tuning_option_words(text, expected):
    assert parse_options(text).tuning_hz == expected


@pytest.mark.parametrize("text", ["tuning:300", "tuning:sharp", "tuning:a4=500"])
def test_bad_tuning_words_say_what_to_write(text):
    with pytest.raises(OptionsError) as info:
        parse_options(text)
    assert "tuning" in (info.value.message + (info.value.hint or ""))


def test_a_named_reference_is_taken_as_given():
    assert Tuning.given(440.0).source == "off" and not Tuning.given(440.0).corrected
    baroque = Tuning.given(415.0)
    assert baroque.corrected and baroque.cents == pytest.approx(-101.3, abs=0.1)
    assert "A4 = 415 Hz, as you asked" in baroque.describe()


def test_multitrack_names_the_files_that_were_out_of_tune(tmp_path):
    inputs = [tmp_path / "violin.wav", tmp_path / "cello.wav"]
    lines = _tuning_lines(inputs, [Tuning(22.0, 0.9), Tuning(2.0, 0.9)])
    assert lines == ["violin.wav is tuned 22 cents sharp of A4 = 440 Hz (A4 = 446 Hz); "
                     "its notes are written at the nearest pitch."]
    assert _tuning_lines(inputs, [Tuning(2.0, 0.9), Tuning(-3.0, 0.9)]) == []


def _matched(out, notes):
    """How many of ``notes`` (start, end, pitch) the job's notes.mid holds, by pitch and onset."""
    return matched([(start, pitch) for start, _, pitch in notes], performed_notes(out / "notes.mid"))


PIANO = [(0.5 + i * 0.8, 1.2 + i * 0.8, p) for i, chord in enumerate(CHORDS_BY_BAR * 2) for p in chord]


@pytest.fixture(scope="module")
def sharp_piano(tmp_path_factory):
    """Piano chords played 35 cents sharp (an old upright, a tape running fast)."""
    return write_audio(tmp_path_factory.mktemp("clips") / "upright.wav", render_notes(PIANO, cents=35.0))


def test_piano_35_cents_sharp_is_written_at_the_right_pitches(sharp_piano, tmp_path):
    """The whole pipeline with transkun: the chat is told, and the chords come out right."""
    out = tmp_path / "out"
    assert main(["transcribe", str(sharp_piano), "--out", str(out), "--instrument", "piano"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["tuning"]["corrected"] and abs(result["tuning"]["cents"] - 35.0) <= 3.0
    assert any("35 cents sharp" in line for line in result["user_notes"])
    # Rendered in tune, these chords give 27 of 32 (the test tone is not a piano); 35 cents sharp, uncorrected, 11.
    assert _matched(out, PIANO) >= 0.75 * len(PIANO), "notes at the right pitch, in the recording's time"


def test_tuning_off_transcribes_the_recording_as_it_is(sharp_piano, tmp_path):
    out = tmp_path / "out"
    assert main(["transcribe", str(sharp_piano), "tuning:off", "--out", str(out), "--instrument", "piano"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["tuning"]["source"] == "off" and not result["tuning"]["corrected"]
    assert not any("cents" in line for line in result["user_notes"])
    # What the correction is for: the piano model, between two keys, misses most of the chords.
    assert _matched(out, PIANO) < 0.5 * len(PIANO)


def test_a_given_reference_is_used_instead_of_the_detected_one(tmp_path):
    clip = write_audio(tmp_path / "baroque.wav", render_notes(melody_notes(pitches=TUNE), cents=-101.3))
    out = tmp_path / "out"
    assert main(["transcribe", str(clip), "tuning:415", "--out", str(out), "--instrument", "flute"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["tuning"] == {"cents": -101.3, "reference_hz": 415.0, "confidence": 1.0, "source": "given",
                                "corrected": True}
    assert any("A4 = 415 Hz, as you asked" in line for line in result["user_notes"])
    assert _matched(out, melody_notes(pitches=TUNE)) >= len(TUNE) - 1, "written at A415 pitch: G major, not F#"


def test_a_singer_42_cents_flat_with_vibrato_is_written_at_the_right_pitches(tmp_path):
    clip = write_audio(tmp_path / "hummed.ogg", _sung(TUNE, 35, cents=-42))
    out = tmp_path / "out"
    assert main(["transcribe", str(clip), "--out", str(out), "--instrument", "voice"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["tuning"]["corrected"] and abs(result["tuning"]["cents"] + 42) <= 3
    performed = pretty_midi.PrettyMIDI(str(out / "notes.mid"))
    assert [n.pitch for inst in performed.instruments for n in sorted(inst.notes, key=lambda n: n.start)] == list(TUNE)
