"""The ONNX separation backend: demucs's front end, segment joins, registry, and real weights.

The fast tests export tiny stand-in networks with the htdemucs export's I/O
signature (waveform + complex-as-channels spectrogram in; frequency branch and
time branch out) with ``torch.onnx.export``, so they need no weights. The slow
ones use the trained ``htdemucs.onnx`` (``scripts/fetch-demucs-onnx models``)
and skip without it; the guard test reads a few seconds of a real separation
stored in tests/fixtures/separated-07/.
"""

from __future__ import annotations

import os
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from stemscribe.core import separate_onnx as so
from stemscribe.core.audio import Audio, decode
from stemscribe.core.errors import CancelledError, ModelMissingError
from stemscribe.core.models import ModelRegistry
from stemscribe.core.progress import CancelToken, Reporter, Stage
from stemscribe.core.separate import Separator

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "separated-07"
SEGMENT = 16384  # samples in the stand-ins' segment: 16 spectrogram frames
SOURCES = ("drums", "bass", "other", "vocals")
# Share of the input each stand-in source returns from each branch.
FREQUENCY_GAINS = (0.1, 0.2, 0.05, 0.15)
TIME_GAINS = (0.4, 0.3, 0.2, 0.1)  # sum to one: the time branch alone rebuilds the input


class _GainNet(torch.nn.Module):
    """Each source = a fixed share of the spectrogram (frequency branch) and of the waveform (time branch).

    With ``context`` the time branch is also scaled by the segment's mean level, so
    the output depends on where a segment starts and the join weighting shows.
    """

    def __init__(self, *, context: bool = False, frequency: tuple[float, ...] = FREQUENCY_GAINS) -> None:
        super().__init__()
        self.context = context
        self.register_buffer("frequency", torch.tensor(frequency).view(1, 4, 1, 1, 1))
        self.register_buffer("time", torch.tensor(TIME_GAINS).view(1, 4, 1, 1))

    def forward(self, mix: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = 1.0 + mix.abs().mean() if self.context else 1.0
        return spec[:, None] * self.frequency, mix[:, None] * self.time * scale


def _export(path: Path, net: torch.nn.Module, segment: int = SEGMENT) -> Path:
    frames = -(-segment // so.HOP)
    args = (torch.zeros(1, 2, segment), torch.zeros(1, 4, so.N_FFT // 2, frames))
    torch.onnx.export(net, args, str(path), dynamo=False, input_names=["input", "spectrogram"],
                      output_names=["frequency", "time"])
    return path


@pytest.fixture(scope="module")
def gain_model(tmp_path_factory) -> so.OnnxHTDemucs:
    """Time branch only, gains summing to one: an identity split whatever the segment."""
    net = _GainNet(frequency=(0.0, 0.0, 0.0, 0.0))
    return so.OnnxHTDemucs(_export(tmp_path_factory.mktemp("onnx") / "gain.onnx", net), threads=1)


_DEMUCS_SHAPE = types.SimpleNamespace(hop_length=so.HOP, nfft=so.N_FFT)


# ------------------------------------------------------------------------------- front end

@pytest.mark.parametrize("length", [SEGMENT, 343980, 3000, 700])
def test_spectrogram_matches_demucs_spec(length):
    from demucs.htdemucs import HTDemucs

    x = np.random.default_rng(length).standard_normal((2, length)).astype(np.float32)
    ours = so.spectrogram(x)
    theirs = HTDemucs._spec(_DEMUCS_SHAPE, torch.from_numpy(x)).numpy()
    assert ours.shape == theirs.shape == (2, 2048, -(-length // 1024))
    assert np.max(np.abs(ours - theirs)) < 1e-5 * np.max(np.abs(theirs))


@pytest.mark.parametrize("length", [SEGMENT, 343980, 5000])
def test_inverse_spectrogram_matches_demucs_ispec(length):
    from demucs.htdemucs import HTDemucs

    rng = np.random.default_rng(1)
    frames = -(-length // 1024)
    # An arbitrary spectrogram (not one a signal made), so overlap-add really has to agree.
    z = (rng.standard_normal((3, 2048, frames)) + 1j * rng.standard_normal((3, 2048, frames))).astype(np.complex64)
    ours = so.inverse_spectrogram(z, length)
    theirs = HTDemucs._ispec(_DEMUCS_SHAPE, torch.from_numpy(z), length).numpy()
    assert ours.shape == theirs.shape == (3, length)
    assert np.max(np.abs(ours - theirs)) < 1e-5 * np.max(np.abs(theirs))


def test_complex_as_channels_matches_demucs_magnitude_layout():
    from demucs.htdemucs import HTDemucs

    z = (np.arange(2 * 3 * 5) + 1j * -np.arange(2 * 3 * 5)).reshape(2, 3, 5).astype(np.complex64)
    theirs = HTDemucs._magnitude(types.SimpleNamespace(cac=True), torch.from_numpy(z)[None])[0].numpy()
    np.testing.assert_array_equal(so.complex_as_channels(z), theirs)
    np.testing.assert_array_equal(so.channels_as_complex(theirs[None])[0], z)


def test_transition_weight_is_demucs_triangle():
    weight = so.transition_weight(10)
    np.testing.assert_allclose(weight, np.array([1, 2, 3, 4, 5, 5, 4, 3, 2, 1]) / 5, rtol=1e-6)
    assert so.segment_offsets(100, 40, 0.25) == [0, 30, 60, 90]


# ------------------------------------------------------------------------------- joins

def test_segment_joins_reconstruct_the_input_exactly(gain_model):
    """Gains that sum to one give stems summing to the input, with no seam at any join.

    (Only the time branch can be an exact identity: demucs's spectrogram drops the
    Nyquist bin and two frames at each end of a segment.)
    """
    rng = np.random.default_rng(2)
    n = int(SEGMENT * 4.3)  # several joins and a short last segment
    t = np.arange(n) / 44100
    x = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 331 * t + 1)]) * 0.5
    x = (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
    stems = so.OnnxSeparator(gain_model).separate_array(x)
    assert stems.shape == (4, 2, n)
    np.testing.assert_allclose(stems.sum(axis=0), x, atol=2e-5)
    for k, gain in enumerate(TIME_GAINS):
        np.testing.assert_allclose(stems[k], gain * x, atol=2e-5)


def test_joins_follow_demucs_apply_model(tmp_path):
    """A context-dependent stand-in gives what demucs's own apply_model gives with the same network."""
    from demucs.apply import apply_model
    from demucs.htdemucs import HTDemucs

    net = _GainNet(context=True).eval()
    model = so.OnnxHTDemucs(_export(tmp_path / "context.onnx", net), threads=1)

    class Wrapped(torch.nn.Module):
        # A Fraction, as demucs keeps it: int(44100 * (16384 / 44100)) would be 16383.
        sources, samplerate, audio_channels, segment = list(SOURCES), 44100, 2, Fraction(SEGMENT, 44100)

        def valid_length(self, length):
            return SEGMENT

        def forward(self, mix):
            z = HTDemucs._spec(_DEMUCS_SHAPE, mix)
            cac = torch.view_as_real(z).permute(0, 1, 4, 2, 3).reshape(1, 4, z.shape[-2], z.shape[-1])
            frequency, time = net(mix, cac)
            pairs = frequency.view(1, 4, 2, 2, *frequency.shape[-2:]).permute(0, 1, 2, 4, 5, 3)
            return time + HTDemucs._ispec(_DEMUCS_SHAPE, torch.view_as_complex(pairs.contiguous()), SEGMENT)

    x = np.random.default_rng(3).standard_normal((2, int(SEGMENT * 3.6))).astype(np.float32)
    x *= np.linspace(0.1, 2.0, x.shape[1], dtype=np.float32)  # segment levels differ
    with torch.no_grad():
        theirs = apply_model(Wrapped(), torch.from_numpy(x)[None], shifts=0, split=True, overlap=0.25)
    ours = so.OnnxSeparator(model, overlap=0.25).separate_array(x)
    np.testing.assert_allclose(ours, theirs[0].numpy(), atol=1e-4)


def test_separator_reports_each_segment_and_can_be_cancelled(gain_model):
    audio = Audio(np.zeros((2, SEGMENT * 3), dtype=np.float32) + 0.1, 44100, "mix")
    seen = []
    Separator(gain_model, threads=1).separate(audio, Reporter(lambda s, f, m: seen.append((s, f, m))))
    fractions = [f for s, f, _ in seen if s is Stage.SEPARATE]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and len(fractions) == len(so.segment_offsets(
        SEGMENT * 3, SEGMENT, 0.25)) + 1
    assert "segments" in seen[-1][2]
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        Separator(gain_model, threads=1).separate(audio, Reporter(lambda *a: None, token))


def test_separator_keeps_the_input_rate_channels_and_length(gain_model):
    mono = Audio(np.random.default_rng(4).standard_normal((1, 30000)).astype(np.float32) * 0.1, 22050, "voice")
    stems = Separator(gain_model, threads=1).separate(mono)
    assert list(stems) == list(SOURCES)
    for stem in stems.values():
        assert stem.sample_rate == 22050 and stem.samples.shape == (1, 30000)
    total = sum(s.samples for s in stems.values())
    # White noise loses its top octave in the 22050 -> 44100 -> 22050 Hz round trip.
    assert np.corrcoef(total[0, 2000:-2000], mono.samples[0, 2000:-2000])[0, 1] > 0.95


# ------------------------------------------------------------------------------- registry

def test_registry_prefers_an_onnx_export_and_reports_it(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    _export(folder / "htdemucs.onnx", _GainNet())
    registry = ModelRegistry(folder, hub_dir=tmp_path / "hub", use_hf_cache=False)
    status = registry.status("htdemucs")
    assert status.present and status.backend == "onnx" and status.file == folder / "htdemucs.onnx"
    model = registry.load("htdemucs")
    assert isinstance(model, so.OnnxHTDemucs) and model.sources == list(SOURCES)
    assert Separator(model, threads=1).backend == "onnx"
    assert not registry.status("htdemucs_6s").present


def test_a_damaged_onnx_file_is_reported_as_missing_weights(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "htdemucs.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(ModelMissingError) as caught:
        ModelRegistry(folder, hub_dir=tmp_path / "hub", use_hf_cache=False).load("htdemucs")
    assert "htdemucs.onnx" in caught.value.message and "stemscribe models fetch htdemucs" in caught.value.hint


# ------------------------------------------------------------------------------- real weights

def _real_onnx() -> Path | None:
    for folder in (os.environ.get("STEMSCRIBE_MODELS_DIR"), ROOT / "models"):
        if folder and (Path(folder) / "htdemucs.onnx").is_file():
            return Path(folder) / "htdemucs.onnx"
    return None


def _fixture(name: str) -> Audio:
    return decode(FIXTURES / f"{name}.flac", sample_rate=22050, mono=True)


def test_guard_drops_the_bleed_in_a_real_near_empty_vocals_stem():
    """htdemucs's vocals stem of an instrumental band mix (07: sax, piano, bass, drums) is bleed only."""
    from stemscribe.core.guard import assess_stem
    from stemscribe.core.instruments import INSTRUMENTS

    mix = _fixture("mix")
    stems = {name: _fixture(name) for name in SOURCES}
    others = {name: stems[name] for name in SOURCES if name != "vocals"}
    verdict = assess_stem("vocals", stems["vocals"], mix, others=others, instrument=INSTRUMENTS["voice"])
    assert verdict.decision == "dropped", verdict
    # The stem holding the sax and piano of the same seconds is kept: the line does not drop music.
    rest = {other: stems[other] for other in SOURCES if other != "other"}
    kept = assess_stem("other", stems["other"], mix, others=rest)
    assert kept.decision != "dropped", kept


@pytest.mark.slow
@pytest.mark.skipif(_real_onnx() is None, reason="no htdemucs.onnx (scripts/fetch-demucs-onnx models)")
def test_real_htdemucs_separates_a_band_clip():
    """Four seconds of dev clip 07: the stems add up to the mix and the (absent) voice stays near silent."""
    clip = Path(__file__).resolve().parents[2] / "shared" / "devset" / "07-jeanie-brown-hair-band" / "audio.ogg"
    if not clip.is_file():
        pytest.skip("dev set not here")
    audio = decode(clip, sample_rate=44100, mono=False)
    audio = Audio(audio.samples[:, 44100 * 2:44100 * 6], 44100, "07")
    stems = Separator(ModelRegistry(_real_onnx().parent).load("htdemucs"), threads=2).separate(audio)
    total = sum(s.samples for s in stems.values())
    residual = np.sqrt(np.mean((total - audio.samples) ** 2)) / np.sqrt(np.mean(audio.samples ** 2))
    assert residual < 0.1
    level = {name: float(np.mean(s.samples ** 2)) for name, s in stems.items()}
    assert level["vocals"] < 0.05 * level["other"]  # no singer in this clip


@pytest.mark.slow
@pytest.mark.skipif(_real_onnx() is None, reason="no htdemucs.onnx (scripts/fetch-demucs-onnx models)")
def test_the_int8_copy_of_real_htdemucs_gives_the_float_exports_stems(tmp_path):
    """`stemscribe models quantize`'s copy: on four seconds of dev clip 07 the stems carrying music stay within -30 dB."""
    clip = Path(__file__).resolve().parents[2] / "shared" / "devset" / "07-jeanie-brown-hair-band" / "audio.ogg"
    if not clip.is_file():
        pytest.skip("dev set not here")
    audio = decode(clip, sample_rate=44100, mono=False)
    mix = audio.samples[:, 44100 * 2:44100 * 6].astype(np.float32)
    copy = so.quantize_export(_real_onnx(), tmp_path / "htdemucs.int8.onnx")
    float_stems = so.OnnxSeparator(so.OnnxHTDemucs(_real_onnx(), threads=2)).separate_array(mix)
    int8_stems = so.OnnxSeparator(so.OnnxHTDemucs(copy, threads=2)).separate_array(mix)
    for k, name in enumerate(SOURCES):
        energy = float(np.sum(float_stems[k] ** 2))
        if energy < 1e-4 * float(np.sum(mix ** 2)):
            continue  # a near-silent stem (this clip has no singer): its relative error means nothing
        error_db = 10 * np.log10(float(np.sum((int8_stems[k] - float_stems[k]) ** 2)) / energy)
        assert error_db < -30, (name, error_db)
