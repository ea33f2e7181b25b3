"""Rendered-audio bench generator: deterministic renders, ground truth that matches, held-out material refused."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import corpus_render as cr  # noqa: E402

HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and shutil.which("ffmpeg") is not None
needs_fluidsynth = pytest.mark.skipif(
    not HAVE_FLUIDSYNTH or not cr.SOUNDFONTS["timgm6mb"].exists(),
    reason="fluidsynth, ffmpeg or the TimGM6mb soundfont is not installed (run scripts/bench-deps)")
SCORE_PY = ROOT.parent / "shared" / "bench" / "score.py"


def _tune(key="test/tiny-tune#1", ts="3/4", pickup=1.0):
    """A single-line tune: a pickup quarter, then 6 bars of quarters and halves."""
    notes = [[0.0, 1.0, 67, 0]]
    for b in range(6):
        on = pickup + 3.0 * b
        notes += [[on, 2.0, 60 + (2 * b) % 7, 0], [on + 2.0, 1.0, 64 + b % 3, 0]]
    return dict(key=key, time_signature=ts, pickup_q=pickup, bar_q=3.0, parts=1, notes=notes)


def _chorale(key="test/tiny-chorale#1"):
    notes = []
    for i in range(12):
        for part, base in enumerate((72, 67, 64, 48)):
            notes.append([float(i), 1.0, base + (i % 3), part])
    return dict(key=key, time_signature="4/4", pickup_q=0.0, bar_q=4.0, parts=4, notes=notes)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_kinds_and_instruments():
    line = cr.orchestrate(_tune())
    assert line["kind"] == "line" and line["ensemble"] in {n for n, *_ in cr.LINE_INSTRUMENTS}
    chorale = cr.orchestrate(_chorale())
    assert chorale["kind"] == "ensemble" and chorale["ensemble"] in cr.ENSEMBLES and len(chorale["parts"]) == 4
    two_hands = dict(_chorale(), parts=2, notes=[n for n in _chorale()["notes"] if n[3] < 2])
    assert cr.orchestrate(two_hands)["kind"] == "keyboard"
    assert cr.orchestrate(two_hands)["parts"] == [("piano", 0), ("piano", 0)]


def test_octave_fit_moves_a_low_tune_into_the_flute_range():
    assert cr._octave_fit([48, 50, 52, 55], 60, 93) == 12
    assert cr._octave_fit([72, 74, 76], 60, 93) == 0


def test_held_out_material_is_refused(tmp_path):
    with pytest.raises(ValueError, match="held-out"):
        cr.check_soundfont(Path("/usr/share/sounds/sf3/MuseScore_General.sf3"))
    reserved = sorted(cr.cp.reserved_keys())
    if not reserved:
        pytest.skip("../shared/bench/reserved.txt is not here")
    with pytest.raises(ValueError, match="reserved"):
        cr.make_clip(dict(_tune(), key=reserved[0]), "timgm6mb", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_parts_follow_the_notes():
    ex = _chorale()
    _, perf = cr.perform_clip(ex, 3)
    parts = cr.parts_of_notes(ex, perf)
    assert sorted(parts) == sorted(n[3] for n in ex["notes"])
    for note, part in zip(perf.notes, parts):
        assert note.pitch in {n[2] for n in ex["notes"] if n[3] == part}


@needs_fluidsynth
@pytest.mark.parametrize("condition", cr.CONDITIONS)
def test_same_piece_and_seed_give_identical_files(tmp_path, condition):
    a = cr.make_clip(_tune(), "timgm6mb", tmp_path / "a", seed=4, condition=condition)
    cr.make_clip(_tune(), "timgm6mb", tmp_path / "b", seed=4, condition=condition)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    cr.make_clip(_tune(), "timgm6mb", tmp_path / "c", seed=5, condition=condition)
    da, dc = _digests(tmp_path / "a"), _digests(tmp_path / "c")
    assert da["gt_notes.csv"] != dc["gt_notes.csv"] and da[a["audio"]] != dc[a["audio"]]
    assert da["gt_score_notes.csv"] == dc["gt_score_notes.csv"]  # the written music is the same


@needs_fluidsynth
def test_clip_folder_has_the_dev_set_format(tmp_path):
    import soundfile as sf

    folder = tmp_path / "clip"
    meta = cr.make_clip(_chorale(), "timgm6mb", folder, seed=2, condition="phone")
    on_disk = json.loads((folder / "meta.json").read_text())
    assert on_disk == meta
    for field in ("tempo_bpm", "tempo_beat_bpm", "time_signature", "key", "audio", "soundfont", "condition"):
        assert meta[field] not in (None, "")
    assert meta["time_signature"] == "4/4" and meta["audio"] == "audio.ogg"
    info = sf.info(str(folder / "audio.ogg"))
    assert info.channels == 1 and abs(info.duration - meta["duration_s"]) < 0.1
    with open(folder / "gt_notes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(_chorale()["notes"])
    assert {r["part"] for r in rows} == {p["name"] for p in meta["parts"]}
    assert all(float(r["offset_s"]) > float(r["onset_s"]) >= 0 for r in rows)
    assert max(float(r["offset_s"]) for r in rows) < meta["duration_s"]
    if SCORE_PY.exists():  # the written truth in gt.musicxml is the same as gt_score_notes.csv
        spec = importlib.util.spec_from_file_location("shared_score", SCORE_PY)
        score = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(score)
        est, parsed = score.score_notes(str(folder / "gt.musicxml"))
        assert score.score_note_f1(score.gt_score_notes(str(folder)), est)["score_note_f1"] == 1.0
        assert score.score_info(parsed)[0] == "4/4"


@needs_fluidsynth
def test_the_two_soundfonts_sound_different_but_share_the_truth(tmp_path):
    if not cr.SOUNDFONTS["fluidr3"].exists():
        pytest.skip("FluidR3_GM is not installed (run scripts/bench-deps)")
    cr.make_clip(_tune(), "timgm6mb", tmp_path / "t", seed=1, condition="clean")
    cr.make_clip(_tune(), "fluidr3", tmp_path / "f", seed=1, condition="clean")
    dt, df = _digests(tmp_path / "t"), _digests(tmp_path / "f")
    assert dt["audio.flac"] != df["audio.flac"]
    assert dt["gt_notes.csv"] == df["gt_notes.csv"] and dt["gt.mid"] == df["gt.mid"]
