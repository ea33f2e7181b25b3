"""Stems mode end to end: tiny demucs weights in a models folder, a synthetic band, the real CLI.

The tiny model's random weights separate nothing useful, which is exactly the
case the artifact guard exists for: whatever it decides per stem, the score must
come out with one staff per kept part, the drums on a percussion staff, the
decisions recorded in result.json, and the stems written as audio on request.
"""

import json

import music21
import numpy as np
import pytest

from helpers.separation_models import band_parts, make_models_dir
from helpers.synth import write_audio
from stemscribe.cli import main

SR = 44100


@pytest.fixture(scope="module")
def band_clip(tmp_path_factory):
    parts = band_parts(SR)
    mix = sum(parts.values())
    return write_audio(tmp_path_factory.mktemp("band") / "garage-band.wav", 0.8 * mix / np.abs(mix).max())


@pytest.fixture(scope="module")
def stems_result(band_clip, tmp_path_factory):
    import os

    models = make_models_dir(tmp_path_factory.mktemp("models"), ("htdemucs",))
    out = tmp_path_factory.mktemp("out")
    old = os.environ.get("STEMSCRIBE_MODELS_DIR")
    os.environ["STEMSCRIBE_MODELS_DIR"] = str(models)
    try:
        code = main(["transcribe", str(band_clip), "--out", str(out), "mode:stems", "stems:yes", "format:flac"])
    finally:
        if old is None:
            os.environ.pop("STEMSCRIBE_MODELS_DIR")
        else:
            os.environ["STEMSCRIBE_MODELS_DIR"] = old
    assert code == 0
    return out, json.loads((out / "result.json").read_text())


def test_every_stem_has_a_recorded_decision(stems_result):
    _, result = stems_result
    assert result["mode"] == "stems"
    notes = [n for n in result["user_notes"] if n.startswith("Separation:")]
    assert len(notes) <= 1  # the chat gets one line about the guard, not one per stem
    decisions = {s["name"]: s["decision"] for s in result["stems"]}
    assert set(decisions) == {"drums", "bass", "other", "vocals"}
    assert set(decisions.values()) <= {"stem", "mix", "dropped"}
    for stem in result["stems"]:
        assert stem["reason"] and isinstance(stem["numbers"], dict)


def test_one_staff_per_kept_part_and_a_percussion_staff(stems_result):
    out, result = stems_result
    kept = [s["name"] for s in result["stems"] if s["decision"] != "dropped"]
    assert len(result["parts"]) == len([p for p in result["parts"] if p["note_count"] > 0])
    assert 1 <= len(result["parts"]) <= len(kept)
    score = music21.converter.parse(str(out / "score.musicxml"))
    # guitar and bass parts also get a tab staff (a part of their own in MusicXML, a TAB clef)
    tabs = [p for p in score.parts if isinstance(p.recurse().getElementsByClass(music21.clef.Clef).first(),
                                                  music21.clef.TabClef)]
    assert len(tabs) == len([p for p in result["parts"] if p.get("tab")])
    assert len(score.parts) - len(tabs) == len(result["parts"])
    drums = [p for p in result["parts"] if p["instrument"] == "drums"]
    assert drums and drums[0]["clef"] == "percussion"
    unpitched = [n for n in score.recurse().notes if isinstance(n, music21.note.Unpitched)]
    assert unpitched, "drum hits are written as unpitched notes"
    assert (out / "score.pdf").stat().st_size > 1000
    assert "\\drummode" in (out / "score.ly").read_text() or "percussion" in (out / "score.ly").read_text()


def test_stems_come_back_as_audio(stems_result):
    out, result = stems_result
    stems = sorted(f for f in result["files"] if f.startswith("stems/"))
    assert stems == ["stems/bass.flac", "stems/drums.flac", "stems/other.flac", "stems/vocals.flac"]
    for name in stems:
        assert (out / name).stat().st_size > 1000


def test_stems_only_without_a_score(band_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("STEMSCRIBE_MODELS_DIR", str(make_models_dir(tmp_path / "models", ("htdemucs",))))
    out = tmp_path / "out"
    assert main(["transcribe", str(band_clip), "--out", str(out), "stems:yes", "score:no"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert not (out / "score.pdf").exists()
    assert sorted(p.name for p in (out / "stems").iterdir()) == ["bass.ogg", "drums.ogg", "other.ogg", "vocals.ogg"]
    assert result["files"][-1] == "result.json"
