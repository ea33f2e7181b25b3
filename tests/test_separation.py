"""Stem separation: model registry, chunked separation, the artifact guard, per-part routing.

Models are tiny random-weight demucs networks saved with demucs's own
serialization (tests/helpers/separation_models.py); engines in the routing tests
are recording fakes, so nothing here needs a network or real weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from helpers.separation_models import IdentitySplitter, band_parts, make_models_dir, tiny_htdemucs
from stemscribe.core.audio import Audio, decode
from stemscribe.core.errors import CancelledError, ModelMissingError, TransientError
from stemscribe.core.guard import StemVerdict, assess_stem, note_agreement
from stemscribe.core.instruments import INSTRUMENTS
from stemscribe.core.models import ModelRegistry, fetch
from stemscribe.core.notes import Note
from stemscribe.core.options import Options
from stemscribe.core.progress import CancelToken, Reporter, Stage
from stemscribe.core.routing import guess_instrument, instrument_for_name, part_display_name, route_parts
from stemscribe.core.separate import Separator, crossfade_weights, plan_chunks, write_stems


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A models folder with tiny htdemucs and htdemucs_ft (bag of 4) stand-ins."""
    return make_models_dir(tmp_path_factory.mktemp("models"), ("htdemucs", "htdemucs_ft"))


def _registry(folder: Path, tmp_path: Path) -> ModelRegistry:
    # An empty hub folder and no HF cache: only the folder under test may supply weights.
    return ModelRegistry(folder, hub_dir=tmp_path / "hub", use_hf_cache=False)


# ------------------------------------------------------------------------------- registry

def test_registry_lists_installed_and_missing_models(models_dir, tmp_path):
    statuses = {s.name: s for s in _registry(models_dir, tmp_path).list()}
    assert statuses["htdemucs"].present and statuses["htdemucs"].path == models_dir
    assert statuses["htdemucs"].size_bytes == sum(p.stat().st_size for p in models_dir.glob("955717e8-*.th"))
    assert statuses["htdemucs_ft"].present
    assert not statuses["htdemucs_6s"].present and statuses["htdemucs_6s"].missing == ("5c90dfd2",)


def test_registry_loads_single_model_and_bag_from_local_folder(models_dir, tmp_path):
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    registry = _registry(models_dir, tmp_path)
    model = registry.load("htdemucs")
    assert isinstance(model, BagOfModels) and len(model.models) == 1
    assert isinstance(model.models[0], HTDemucs) and model.sources == ["drums", "bass", "other", "vocals"]
    # the saved weights round-trip (stored as float16, as demucs stores them)
    reference = tiny_htdemucs(["drums", "bass", "other", "vocals"], seed=0).state_dict()
    loaded = model.models[0].state_dict()
    assert all(np.allclose(loaded[k].numpy(), reference[k].numpy(), atol=1e-2) for k in reference)
    assert registry.load("htdemucs") is model  # loaded once per process
    assert len(registry.load("htdemucs_ft").models) == 4


def test_registry_also_finds_the_torch_hub_cache(models_dir, tmp_path):
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for file in models_dir.glob("955717e8-*.th"):
        (checkpoints / file.name).write_bytes(file.read_bytes())
    registry = ModelRegistry(tmp_path / "empty", hub_dir=tmp_path / "hub", use_hf_cache=False)
    assert registry.status("htdemucs").present
    assert registry.load("htdemucs").sources == ["drums", "bass", "other", "vocals"]


def test_missing_weights_raise_model_missing_with_the_fetch_command(tmp_path):
    registry = _registry(tmp_path / "nothing-here", tmp_path)
    with pytest.raises(ModelMissingError) as caught:
        registry.load("htdemucs")
    error = caught.value
    assert "Stem separation isn't installed on this server" in error.message
    assert "`stemscribe models fetch htdemucs`" in error.hint
    assert "STEMSCRIBE_MODELS_DIR" in error.hint and str(tmp_path / "nothing-here") in error.hint
    assert error.to_dict()["type"] == "ModelMissingError"


def test_corrupt_weight_file_is_reported_as_missing_not_a_crash(models_dir, tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (original,) = models_dir.glob("955717e8-*.th")
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / original.name).write_bytes(bytes(data))
    with pytest.raises(ModelMissingError, match="damaged"):
        _registry(folder, tmp_path).load("htdemucs")


def test_fetch_verifies_checksums_and_builds_a_loadable_folder(models_dir, tmp_path, monkeypatch):
    from stemscribe.core import models as models_module

    (good,) = models_dir.glob("955717e8-*.th")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / good.name).write_bytes(good.read_bytes())
    monkeypatch.setattr(models_module, "_remote_files", lambda: {"955717e8": (mirror / good.name).as_uri()})
    target = tmp_path / "fetched"
    seen = []
    status = fetch("htdemucs", target, progress=lambda done, total: seen.append(done))
    assert status.present and (target / "htdemucs.yaml").is_file() and (target / good.name).is_file()
    assert seen and seen[-1] == good.stat().st_size
    assert _registry(target, tmp_path).load("htdemucs").sources[0] == "drums"

    # same name, wrong bytes: the hash prefix in the name does not match -> refused, nothing left behind
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    (bad / good.name).write_bytes(b"not a model")
    monkeypatch.setattr(models_module, "_remote_files", lambda: {"955717e8": (bad / good.name).as_uri()})
    with pytest.raises(TransientError, match="corrupt"):
        fetch("htdemucs", tmp_path / "fetched-bad")
    assert not list((tmp_path / "fetched-bad").glob("*.th")) and not list((tmp_path / "fetched-bad").glob(".fetch-*"))


def test_models_command_lists_and_reports_missing(models_dir, tmp_path, capsys):
    from stemscribe import cmd_models
    from stemscribe.settings import Settings

    parser = argparse.ArgumentParser()
    cmd_models.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "list", "--dir", str(models_dir)])
    assert args.func(args, Settings()) == 0
    out = capsys.readouterr().out
    assert "htdemucs " in out and "installed" in out and "stemscribe models fetch htdemucs_6s" in out
    args = parser.parse_args(["models", "list", "--dir", str(tmp_path / "none")])
    assert args.func(args, Settings()) == 1


# ------------------------------------------------------------------------------- chunking

@pytest.mark.parametrize("length,chunk,fade", [(1, 10, 2), (10, 10, 2), (23, 10, 2), (24, 10, 2),
                                               (100_003, 7_000, 1_000), (7_999, 7_000, 1_000)])
def test_chunk_plan_covers_every_sample_once_after_fades(length, chunk, fade):
    spans = plan_chunks(length, chunk, fade)
    assert spans[0][0] == 0 and spans[-1][1] == length
    total = np.zeros(length)
    for index, (start, end) in enumerate(spans):
        fade_in = spans[index - 1][1] - start if index else 0
        fade_out = end - spans[index + 1][0] if index + 1 < len(spans) else 0
        assert fade_in in (0, fade) and fade_out in (0, fade) and end - start >= fade_in + fade_out
        total[start:end] += crossfade_weights(end - start, fade_in=fade_in, fade_out=fade_out)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def _chirp(seconds: float, sample_rate: int, channels: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    left = 0.5 * np.sin(2 * np.pi * (110 * t + 200 * t ** 2))  # 110 Hz rising through ~5 kHz
    right = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([left, right][:channels]).astype(np.float32)


def test_chunk_joins_neither_click_nor_drop_samples():
    # 9.37 s in 2 s pieces with 0.5 s fades: six joins, none on a segment boundary of the model.
    signal = _chirp(9.37, 44100, 2)
    separator = Separator(IdentitySplitter(segment_s=1.5), threads=1, chunk_s=2.0, crossfade_s=0.5)
    stems = separator.separate(Audio(signal, 44100, "chirp"))
    assert list(stems) == ["drums", "bass", "other", "vocals"]
    for gain, stem in zip((0.1, 0.2, 0.3, 0.4), stems.values()):
        assert stem.samples.shape == signal.shape and stem.sample_rate == 44100
        error = stem.samples - gain * signal
        assert np.max(np.abs(error)) < 1e-5  # a dropped or repeated sample would cost ~0.1
    summed = sum(stem.samples for stem in stems.values())
    # no click: the output's sample-to-sample steps stay those of the chirp itself
    assert np.max(np.abs(np.diff(summed, axis=1))) <= np.max(np.abs(np.diff(signal, axis=1))) + 1e-5


def test_mono_input_at_another_rate_gives_mono_stems_of_the_same_length():
    signal = _chirp(3.01, 22050, 1)
    stems = Separator(IdentitySplitter(segment_s=1.0), threads=1, chunk_s=1.3, crossfade_s=0.2).separate(
        Audio(signal, 22050, "mono"))
    for gain, stem in zip((0.1, 0.2, 0.3, 0.4), stems.values()):
        assert stem.samples.shape == (1, signal.shape[1]) and stem.sample_rate == 22050
        middle = slice(200, -200)  # resampling there and back rings a little at the very ends
        assert np.max(np.abs(stem.samples[0, middle] - gain * signal[0, middle])) < 2e-3


def test_tiny_htdemucs_separates_in_pieces_with_progress(models_dir, tmp_path):
    model = _registry(models_dir, tmp_path).load("htdemucs")
    seen: list[tuple[Stage, float, str]] = []
    audio = Audio(_chirp(6.3, 44100, 2), 44100, "song")
    stems = Separator(model, threads=1, chunk_s=2.5, crossfade_s=0.5).separate(
        audio, Reporter(lambda *event: seen.append(event)))
    assert set(stems) == {"drums", "bass", "other", "vocals"}
    assert all(s.samples.shape == audio.samples.shape and np.isfinite(s.samples).all() for s in stems.values())
    fractions = [fraction for stage, fraction, _ in seen]
    assert all(stage is Stage.SEPARATE for stage, _, _ in seen)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 4  # 0 + 3 pieces
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        Separator(model, threads=1, chunk_s=2.5, crossfade_s=0.5).separate(audio, Reporter(cancel=token))


def test_separator_rejects_bad_settings(models_dir, tmp_path):
    model = _registry(models_dir, tmp_path).load("htdemucs")
    with pytest.raises(ValueError):
        Separator(model, segment_s=10.0)  # above the tiny model's 4 s training segment
    with pytest.raises(ValueError):
        Separator(model, chunk_s=1.0, crossfade_s=0.5)


def test_write_stems_as_opus_and_flac(tmp_path):
    stems = {"bass": Audio(_chirp(1.0, 44100, 2), 44100, "bass")}
    opus = write_stems(stems, tmp_path, fmt="opus")
    assert opus["bass"] == tmp_path / "stems" / "bass.ogg" and opus["bass"].read_bytes()[:4] == b"OggS"
    flac = write_stems(stems, tmp_path, fmt="flac")["bass"]
    back = decode(flac, sample_rate=44100)
    assert back.samples.shape == (2, 44100) and np.max(np.abs(back.samples - stems["bass"].samples)) < 1e-3
    with pytest.raises(ValueError):
        write_stems({"../evil": stems["bass"]}, tmp_path)


# ------------------------------------------------------------------------------- guard

SR = 22050


def _audio(samples: np.ndarray) -> Audio:
    return Audio(samples[None].astype(np.float32), SR, "")


@pytest.fixture(scope="module")
def band():
    parts = band_parts(SR)
    return parts, sum(parts.values())


def _assess(band, name, stem, **kwargs) -> StemVerdict:
    parts, mix = band
    others = {k: _audio(v) for k, v in parts.items() if k != name}
    instrument = INSTRUMENTS[{"bass": "bass", "vocals": "voice", "drums": "drums"}[name]]
    return assess_stem(name, _audio(stem), _audio(mix), others=others, instrument=instrument, **kwargs)


@pytest.mark.parametrize("name", ["bass", "vocals", "drums"])
def test_guard_trusts_clean_stems(band, name):
    verdict = _assess(band, name, band[0][name])
    assert verdict.decision == "stem" and verdict.trusted, verdict
    assert verdict.reason == f"{name}: used the separated stem"
    assert verdict.numbers["bleed"] < 0.3 and verdict.numbers["in_band"] > 0.8


def test_guard_sends_mangled_stems_to_the_mix(band):
    parts, mix = band
    noise = np.random.default_rng(3).standard_normal(mix.size).astype(np.float32) * float(np.std(parts["bass"]))
    cases = {
        "bleed": parts["bass"] * 0.3 + parts["vocals"],  # the melody leaked in and dominates
        "copy": 0.4 * mix,                               # separation did nothing
        "noise": noise,                                  # hiss where the bass should be
    }
    for case, stem in cases.items():
        verdict = _assess(band, "bass", stem)
        assert verdict.decision == "mix", (case, verdict)
        assert verdict.reason.startswith("bass: written from the mix") and "\n" not in verdict.reason
    assert "vocals stem" in _assess(band, "bass", cases["bleed"]).reason


def test_guard_drops_near_silent_stems(band):
    verdict = _assess(band, "bass", band[0]["bass"] * 1e-3)
    assert verdict.decision == "dropped" and "nearly silent (62 dB below the mix)" in verdict.reason  # bass is 2 dB under the mix


def test_guard_falls_back_when_the_mix_does_not_confirm_the_stems_notes(band):
    parts, _ = band
    mix_notes = [Note(0.5 * i, 0.5 * i + 0.4, p) for i, p in enumerate([72, 74, 76, 77, 79, 77, 76, 74] * 2)]
    # a melody stem whose transcription invents notes a tritone away from what is played
    invented = [Note(n.start_s + 0.01, n.end_s, n.pitch + 6) for n in mix_notes]
    verdict = _assess(band, "vocals", parts["vocals"], stem_notes=invented, mix_notes=mix_notes)
    assert verdict.decision == "mix" and verdict.numbers["note_support"] == 0.0
    agreeing = [Note(n.start_s + 0.02, n.end_s, n.pitch - 12 * (i % 2)) for i, n in enumerate(mix_notes)]
    verdict = _assess(band, "vocals", parts["vocals"], stem_notes=agreeing, mix_notes=mix_notes)
    assert verdict.decision == "stem" and verdict.numbers["note_support"] == 1.0
    assert _assess(band, "vocals", parts["vocals"], stem_notes=[], mix_notes=mix_notes).decision == "dropped"


def test_note_agreement_only_counts_the_stems_range():
    mix = [Note(1.0, 1.5, 40), Note(2.0, 2.5, 70)]
    numbers = note_agreement([Note(1.01, 1.4, 40), Note(2.0, 2.4, 70)], mix, low=28, high=55)
    assert numbers == {"stem_notes": 2.0, "mix_notes_in_range": 1.0, "note_support": 0.5}


# ------------------------------------------------------------------------------- routing

@pytest.mark.parametrize("name,expected", [
    ("bass.wav", "bass"), ("Lead Vox.flac", "voice"), ("keys.mp3", "piano"), ("drums", "drums"),
    ("vocals", "voice"), ("guitar", "guitar"), ("piano", "piano"), ("violin1.ogg", "violin"),
    ("melody-alto-sax.ogg", "alto-sax"), ("melody-fiddle.ogg", "violin"), ("comping-piano.ogg", "piano"),
    ("02_Kick.wav", "drums"), ("BV harmony.wav", "voice"), ("clarinet.ogg", "clarinet"),
    ("other", None), ("take 3.wav", None),
])
def test_names_map_to_instruments(name, expected):
    found = instrument_for_name(name)
    assert (found.key if found else None) == expected


def test_part_labels():
    assert part_display_name("vocals", INSTRUMENTS["voice"]) == "Voice"
    assert part_display_name("Lead Vox.flac", INSTRUMENTS["voice"]) == "Lead Vox"
    assert part_display_name("violin1.ogg", INSTRUMENTS["violin"]) == "Violin 1"


def test_guess_instrument_from_register_and_polyphony():
    chords = [Note(t, t + 1, p) for t in range(4) for p in (36, 60, 64, 67, 84)]
    assert guess_instrument(chords).key == "piano"
    assert guess_instrument([Note(t, t + 1, p) for t in range(4) for p in (52, 55, 59)]).key == "guitar"
    assert guess_instrument([Note(t, t + 0.5, 40 + t) for t in range(8)]).key == "bass"
    assert guess_instrument([Note(t, t + 0.5, 70 + t) for t in range(8)]).key == "voice"


class _FakeEngine:
    """Records each call and returns one note per second: mid-range for a known instrument, the
    middle of the bass and voice ranges together for the mix (a transcription that hears every part)."""

    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls = name, calls

    def transcribe(self, samples_mono, sample_rate, *, instrument=None, progress=None):
        assert samples_mono.ndim == 1
        self.calls.append((self.name, instrument.key if instrument else None, round(float(np.std(samples_mono)), 4)))
        if progress:
            progress(1.0)
        if self.name == "drums":
            pitches = [38]
        elif instrument is not None:
            pitches = [(instrument.low + instrument.high) // 2]
        else:
            pitches = [(i.low + i.high) // 2 for i in (INSTRUMENTS["bass"], INSTRUMENTS["voice"])]
        seconds = int(samples_mono.size / sample_rate)
        return [Note(float(t), t + 0.5, p) for t in range(seconds) for p in pitches]


class _FakeModels:
    def __init__(self) -> None:
        self.calls: list = []

    def get(self, name: str) -> _FakeEngine:
        return _FakeEngine(name, self.calls)


def test_multitrack_routes_each_file_to_its_engine_and_drums_to_a_drum_track(band):
    parts, _ = band
    models = _FakeModels()
    files = [("bass.wav", parts["bass"]), ("Lead Vox.flac", parts["vocals"]), ("keys.mp3", parts["vocals"]),
             ("drums.ogg", parts["drums"])]
    tracks, verdicts = route_parts([(n, _audio(a)) for n, a in files], mix=None, models=models, options=Options())
    assert [(t.name, t.instrument, t.engine, t.is_drum, t.source) for t in tracks] == [
        ("Bass", "bass", "basic-pitch", False, "file:bass.wav"),
        ("Lead Vox", "voice", "mono", False, "file:Lead Vox.flac"),
        ("Keys", "piano", "transkun", False, "file:keys.mp3"),
        ("Drums", "drums", "drums", True, "file:drums.ogg"),
    ]
    assert all(v.decision == "stem" for v in verdicts) and len(models.calls) == 4
    assert all(INSTRUMENTS["bass"].low <= n.pitch <= INSTRUMENTS["bass"].high for n in tracks[0].notes)


def test_stems_mode_drops_silent_stems_and_rewrites_mangled_ones_from_the_mix(band):
    parts, mix = band
    models = _FakeModels()
    stems = [("drums", _audio(parts["drums"])), ("bass", _audio(0.4 * mix)),  # bass stem = the mix turned down
             ("other", _audio(parts["bass"] * 1e-4)), ("vocals", _audio(parts["vocals"]))]
    events = []
    tracks, verdicts = route_parts(stems, mix=_audio(mix), models=models, options=Options(),
                                   reporter=Reporter(lambda *e: events.append(e)))
    decisions = {v.name: v.decision for v in verdicts}
    assert decisions == {"drums": "stem", "bass": "mix", "other": "dropped", "vocals": "stem"}
    by_name = {t.name: t for t in tracks}
    assert set(by_name) == {"Drums", "Bass", "Voice"}
    assert by_name["Drums"].is_drum and by_name["Drums"].source == "stem:drums"
    assert by_name["Bass"].source == "mix" and by_name["Bass"].instrument == "bass"
    mix_std = round(float(np.std(mix)), 4)
    assert ("basic-pitch", "bass", mix_std) in models.calls  # the bass part was transcribed from the mix
    assert not any(call[2] < 1e-3 for call in models.calls)  # the silent stem was never transcribed
    fractions = [f for stage, f, _ in events if stage is Stage.TRANSCRIBE]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_tiny_model_stems_route_to_one_staff_each_with_a_drum_staff(models_dir, tmp_path):
    model = _registry(models_dir, tmp_path).load("htdemucs")
    mix = Audio(_chirp(3.0, 44100, 2), 44100, "song")
    stems = Separator(model, threads=1).separate(mix)
    tracks, verdicts = route_parts(list(stems.items()), mix=mix, models=_FakeModels(), options=Options(), guard=False)
    assert [(t.instrument, t.is_drum, t.source) for t in tracks][:2] == [("drums", True, "stem:drums"),
                                                                         ("bass", False, "stem:bass")]
    assert [t.instrument for t in tracks][3] == "voice" and len(tracks) == 4 and len(verdicts) == 4


def test_separation_runs_without_torchaudio(models_dir):
    import subprocess
    import sys

    script = (
        "import sys, numpy as np\n"
        "from stemscribe.core.models import ModelRegistry\n"
        "from stemscribe.core.separate import Separator\n"
        "from stemscribe.core.audio import Audio\n"
        f"model = ModelRegistry({str(models_dir)!r}, use_hf_cache=False).load('htdemucs')\n"
        "Separator(model, threads=1).separate(Audio(np.zeros((2, 44100), np.float32) + 0.01, 44100))\n"
        "assert not [m for m in sys.modules if m.startswith('torchaudio')], 'torchaudio was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------ nothing separated: the reduction

#: Four chords, 1 s apart (a quartet's texture), and a separator's mangled version of them.
_CHORDS = ((48, 60, 64, 67), (53, 60, 65, 69), (55, 59, 62, 67), (48, 60, 64, 67))


def _chord_notes(shift: int = 0) -> list[tuple[float, float, int]]:
    return [(0.5 + 1.0 * i, 1.4 + 1.0 * i, p + shift) for i, triad in enumerate(_CHORDS) for p in triad]


class _UnrelatedSplit:
    """A separator that cannot tell the instruments apart: silence in three stems, and in "other"
    the chords a semitone off (notes the recording does not confirm, so the guard writes it from the mix)."""

    def separate(self, audio: Audio, reporter=None) -> dict[str, Audio]:
        from helpers.synth import render_notes

        n = audio.samples.shape[1]
        mangled = render_notes(_chord_notes(shift=1), duration_s=n / audio.sample_rate, sample_rate=audio.sample_rate)
        silent = np.zeros_like(audio.samples)
        other = np.tile(mangled[:n], (audio.samples.shape[0], 1))
        return {name: Audio(other if name == "other" else silent, audio.sample_rate, name)
                for name in ("drums", "bass", "other", "vocals")}


def test_stems_mode_writes_the_piano_reduction_when_the_guard_keeps_no_stem(tmp_path):
    from helpers.synth import render_notes, write_audio
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.pipeline import SEPARATION_FALLBACK_NOTE, run, separation_gave_nothing
    from stemscribe.core.toolkit import Toolkit

    clip = write_audio(tmp_path / "quartet.wav", render_notes(_chord_notes(), duration_s=5.0))
    toolkit = Toolkit(engines=ModelCache(threads=0))
    toolkit._separators["htdemucs"] = _UnrelatedSplit()
    result = run([clip], tmp_path / "out", Options.from_dict({"mode": "stems"}), toolkit=toolkit)
    decisions = {s["name"]: s["decision"] for s in result["stems"]}
    assert decisions == {"drums": "dropped", "bass": "dropped", "other": "mix", "vocals": "dropped"}, result["stems"]
    assert result["mode"] == "piano" and result["layout"] == "piano"
    assert "reduced to piano" in result["mode_reason"]
    assert SEPARATION_FALLBACK_NOTE in result["user_notes"]
    assert [(p["name"], p["clef"]) for p in result["parts"]] == [("Piano", "treble"), ("Piano", "bass")]  # a grand staff
    # A stem the guard keeps is still written as its own part.
    assert not separation_gave_nothing([StemVerdict("other", "mix", "", {}), StemVerdict("drums", "stem", "", {})])
    assert not separation_gave_nothing([StemVerdict("other", "dropped", "", {})])
    # Drums written from the mix are a percussion staff the reduction would lose.
    assert not separation_gave_nothing([StemVerdict("other", "mix", "", {}), StemVerdict("drums", "mix", "", {})])
