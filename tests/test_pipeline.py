"""The whole pipeline through the `stemscribe transcribe` command, on short synthesized clips."""

import json
import subprocess
from pathlib import Path

import music21
import pytest
from PIL import Image

from helpers.scores import long_piano_score, write_musicxml
from helpers.synth import melody_notes, render_notes, write_audio
from stemscribe.cli import main
from stemscribe.core.pipeline import OUTPUT_FILES, title_from_filename

C_MAJOR_SCALE = (60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60, 60)


@pytest.fixture(scope="module")
def melody_clip(tmp_path_factory):
    """16 quarter notes of a C major scale at 100 bpm, as an OGG/Opus voice note."""
    path = tmp_path_factory.mktemp("clips") / "c-major-scale.ogg"
    return write_audio(path, render_notes(melody_notes(pitches=C_MAJOR_SCALE)))


@pytest.fixture(scope="module")
def melody_result(melody_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code = main(["transcribe", str(melody_clip), "--out", str(out), "--instrument", "flute",
                 "--title", 'Scale "study" #(system "touch /tmp/stemscribe-pwned")'])
    assert code == 0
    return out


def test_writes_every_contract_file(melody_result):
    for name in OUTPUT_FILES:
        path = melody_result / name
        assert path.exists() and path.stat().st_size > 0, name
    assert not Path("/tmp/stemscribe-pwned").exists()


def test_result_json_describes_the_score(melody_result):
    result = json.loads((melody_result / "result.json").read_text())
    assert result["mode"] == "solo" and result["mode_reason"]
    assert result["time_signature"] and result["key"] and result["tempo_bpm"] > 0
    assert abs(result["duration_s"] - 10.4) < 1.0
    assert result["parts"][0]["clef"] in ("treble", "treble_8")
    assert result["parts"][0]["note_count"] >= 12
    assert result["pages"] == 1
    assert result["files"] == list(OUTPUT_FILES), "a one-page score has preview.png and no other preview"
    assert not list(melody_result.glob("preview-*"))
    for stage in ("decode", "transcribe", "notate", "engrave"):
        assert stage in result["timings_s"]


def test_musicxml_holds_the_melody(melody_result):
    text = (melody_result / "score.musicxml").read_text()
    assert '<creator type="composer">' not in text, "no composer given: none written (music21 would say Music21)"
    assert '<creator type="transcriber">stemscribe</creator>' in text
    score = music21.converter.parse(str(melody_result / "score.musicxml"))
    pitches = [p.midi for n in score.recurse().notes for p in n.pitches]
    sounding = [p for p in pitches]
    # Every scale tone is there, in order, whatever the durations chosen.
    assert len(sounding) >= 14
    assert set(C_MAJOR_SCALE) <= set(sounding)
    assert str(score.metadata.bestTitle).startswith("Scale")


def test_preview_is_a_readable_picture(melody_result):
    with Image.open(melody_result / "preview.png") as img:
        width, height = img.size
    assert 600 <= width <= 2000 and 100 <= height <= 3000


def test_a_long_score_lists_every_page_preview_in_result_json(melody_clip, tmp_path, monkeypatch):
    # A clip short enough for a test engraves to one page: the engraving stage is pointed at a
    # three-page score instead (real LilyPond all the same).
    from stemscribe.core import engrave as engrave_module

    real_engrave = engrave_module.engrave
    long_xml = write_musicxml(long_piano_score(bars=105), tmp_path / "long.musicxml")
    monkeypatch.setattr(engrave_module, "engrave",
                        lambda musicxml_path, out_dir, **kwargs: real_engrave(long_xml, out_dir, **kwargs))
    out = tmp_path / "out"
    assert main(["transcribe", str(melody_clip), "--out", str(out), "--instrument", "flute"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["pages"] == 3
    assert result["files"] == ["score.pdf", "preview.png", "preview-2.png", "preview-3.png", "score.ly",
                               "score.musicxml", "score.mid", "notes.mid", "result.json"]
    for name in result["files"]:
        assert (out / name).stat().st_size > 0, name
    with Image.open(out / "preview-3.png") as last_page:
        assert last_page.format == "PNG" and last_page.width >= 1000


def test_notes_mid_is_in_performance_time(melody_result):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(melody_result / "notes.mid"))
    onsets = sorted(n.start for inst in pm.instruments for n in inst.notes)
    assert abs(onsets[0] - 0.5) < 0.08  # the first note starts after the 0.5 s lead-in


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_text("not audio at all"), "audio"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: write_audio(p, render_notes([(0, 1, 60)], duration_s=3.0) * 0.0), "silent"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, make, expected):
    path = tmp_path / ("input.ogg" if expected == "silent" else "input.mp3")
    make(path)
    code = main(["transcribe", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err.lower()


def test_missing_file_is_a_user_error_not_a_traceback(tmp_path, capsys):
    code = main(["transcribe", str(tmp_path / "nope.ogg"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "No such file" in capsys.readouterr().err


def test_stems_mode_without_weights_names_the_fix(melody_clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STEMSCRIBE_MODELS_DIR", str(tmp_path / "no-models"))
    code = main(["transcribe", str(melody_clip), "--out", str(tmp_path / "out"), "--mode", "stems"])
    assert code == 2
    assert "stemscribe models fetch" in capsys.readouterr().err


def test_chat_style_option_words_after_the_file(melody_clip, tmp_path):
    out = tmp_path / "out"
    assert main(["transcribe", str(melody_clip), "mode:solo", "time:3/4", "key:G", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["time_signature"] == "3/4" and result["key"] == "G major"


def test_multitrack_makes_one_part_per_file(tmp_path):
    high = write_audio(tmp_path / "flute.wav", render_notes(melody_notes(pitches=(72, 74, 76, 77, 79, 77, 76, 74))))
    low = write_audio(tmp_path / "cello.wav", render_notes(melody_notes(pitches=(48, 43, 45, 41, 48, 43, 45, 41))))
    out = tmp_path / "out"
    assert main(["transcribe", str(high), str(low), "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["mode"] == "multitrack"
    names = [p["name"] for p in result["parts"]]
    assert len(names) == 2 and "Flute" in names[0] and "Cello" in names[1]
    assert [p["clef"] for p in result["parts"]] == ["treble", "bass"]


def test_multitrack_with_stems_yes_needs_no_separation_model(tmp_path, monkeypatch):
    monkeypatch.setenv("STEMSCRIBE_MODELS_DIR", str(tmp_path / "no-models"))
    a = write_audio(tmp_path / "flute.wav", render_notes(melody_notes(pitches=(72, 74, 76, 77))))
    b = write_audio(tmp_path / "cello.wav", render_notes(melody_notes(pitches=(48, 43, 45, 41))))
    assert main(["transcribe", str(a), str(b), "stems:yes", "--out", str(tmp_path / "out")]) == 0


def test_a_swung_melody_reads_in_four_four_with_a_swing_mark(tmp_path):
    beat = 60 / 126
    pitches = [67, 69, 71, 72, 74, 72, 71, 69, 67, 64, 65, 67, 69, 67, 65, 64] * 2
    notes = [(0.5 + (i // 2) * beat + (0.62 * beat if i % 2 else 0.0),
              0.5 + (i // 2) * beat + (0.62 * beat if i % 2 else 0.0) + 0.3 * beat, p) for i, p in enumerate(pitches)]
    clip = write_audio(tmp_path / "blues-head.wav", render_notes(notes + [(0.5 + 16 * beat, 0.5 + 18 * beat, 67)]))
    out = tmp_path / "out"
    assert main(["transcribe", str(clip), "--out", str(out), "--instrument", "flute"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["time_signature"] == "4/4" and result["swing"] == pytest.approx(0.62, abs=0.03)
    assert any("Swing mark" in line and "swing:no" in line for line in result["user_notes"])
    score = music21.converter.parse(str(out / "score.musicxml"))
    assert {float(n.quarterLength) for n in score.recurse().notes}.issubset({0.5, 2.0})


def test_title_and_composer_come_from_the_files_tags(melody_clip, tmp_path):
    tagged = tmp_path / "01 track final v2.mp3"
    evil = 'Autumn "Leaves" \\ #(system "touch /tmp/stemscribe-pwned-tag")'
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(melody_clip), "-metadata", f"title={evil}",
                    "-metadata", "composer=Joseph Kosma", str(tagged)], check=True)
    out = tmp_path / "out"
    assert main(["transcribe", str(tagged), "--out", str(out), "--instrument", "flute"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["title"] == evil and result["composer"] == "Joseph Kosma"
    score = music21.converter.parse(str(out / "score.musicxml"))
    assert score.metadata.bestTitle == evil and score.metadata.composer == "Joseph Kosma"
    assert (out / "score.pdf").exists() and not Path("/tmp/stemscribe-pwned-tag").exists()
    # The user's words still win over the tags.
    out2 = tmp_path / "out2"
    assert main(["transcribe", str(tagged), 'title:"My Leaves"', "--out", str(out2), "--instrument", "flute"]) == 0
    assert json.loads((out2 / "result.json").read_text())["title"] == "My Leaves"


@pytest.mark.parametrize("name, title", [
    ("my_song-take2.wav", "My song take2"),
    ("Autumn Leaves.mp3", "Autumn Leaves"),
    ("Bach BWV 66.wav", "Bach BWV 66"),
    ("cafe.mp3", "Cafe"),
    ("voice-note.ogg", "Untitled"),  # the Telegram bot's name for a voice note
    ("New Recording 12.m4a", "Untitled"),
    ("PTT-20261125-WA0003.opus", "Untitled"),
    ("audio_2026-11-25_21-00-03.ogg", "Untitled"),
    ("Screen Recording 2026-11-25 at 12.00.00 PM.mov", "Untitled"),
    ("a1b2c3d4-e5f6.ogg", "Untitled"),
])
def test_title_from_the_file_name_unless_a_device_made_it_up(name, title):
    assert title_from_filename(Path(name)) == title
