"""`core/export_onnx.py` and `stemscribe models export-onnx`: torch htdemucs weights to an ONNX export.

A tiny random-weight HTDemucs (the real architecture at a few hundred thousand
weights, demucs's 4096-point STFT, a 1 s training segment) is exported and run
through the onnxruntime backend; its stems must be demucs's own
``apply_model``'s. The CLI tests save such a model as a demucs local repo
(``<name>.yaml`` + ``<sig>-<sha256 prefix>.th``, as ``stemscribe models fetch``
leaves it) and export it from there.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers.separation_models import make_models_dir, save_demucs_model, tiny_htdemucs
from stemscribe.cli import main
from stemscribe.core import export_onnx
from stemscribe.core import separate_onnx as so
from stemscribe.core.models import ModelRegistry

SEGMENT = 44100  # the tiny model's training segment: 1 s, 44 spectrogram frames (not a multiple of the hop)
SOURCES = ["drums", "bass", "other", "vocals"]
# Relative to the largest stem sample. Measured here: 7.4e-6 (6.6e-7 absolute, stems peaking
# at 0.089); the two differ only in float32 rounding (torch.stft vs numpy's FFT, onnxruntime's
# kernels). A full-size random-weight htdemucs (bottom_channels=512, 7.8 s) gave 6e-5 on one segment.
TOLERANCE = 1e-4


def _tiny(sources: list[str], seed: int = 0):
    """A real HTDemucs, small: depth 4 keeps the cross-transformer's sequences short."""
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    return HTDemucs(sources=sources, channels=8, depth=4, nfft=so.N_FFT, t_layers=1, t_heads=2,
                    segment=Fraction(SEGMENT, 44100), bottom_channels=0, dconv_depth=1,
                    t_hidden_scale=1.0).eval()


def _local_repo(folder: Path, name: str, model, signature: str = "0e0e0e0e") -> Path:
    """``folder`` as a demucs local repo holding ``model`` as the one-model bag ``name``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_demucs_model(model, folder, signature)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({"models": [signature]}))
    return folder


def _cli(*words: str) -> int:
    return main(["models", "export-onnx", *words])


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    model = _tiny(SOURCES)
    path = export_onnx.export_htdemucs(model, tmp_path_factory.mktemp("export") / "tiny.onnx")
    return model, path


def test_export_separates_as_demucs_apply_model(tiny_export):
    """Several segments, overlap 0.25, a short last one: the export's stems are apply_model's.

    Both sides take the mix as it is (apply_model does not standardise; OnnxSeparator.separate
    does, as demucs's separate command, but separate_array does not), so they are compared there.
    """
    from demucs.apply import apply_model

    model, path = tiny_export
    onnx_model = so.OnnxHTDemucs(path, threads=1)
    assert onnx_model.segment_length == SEGMENT and onnx_model.sources == SOURCES
    rng = np.random.default_rng(5)
    n = int(2.7 * 44100)
    t = np.arange(n) / 44100
    mix = np.stack([np.sin(2 * np.pi * 110 * t), np.sin(2 * np.pi * 165 * t + 1)]) * 0.4
    mix = (mix + 0.1 * rng.standard_normal(mix.shape)).astype(np.float32)
    ours = so.OnnxSeparator(onnx_model, overlap=0.25).separate_array(mix)
    with torch.no_grad():
        theirs = apply_model(model, torch.from_numpy(mix)[None], shifts=0, split=True, overlap=0.25)[0].numpy()
    assert ours.shape == theirs.shape == (4, 2, n)
    error = float(np.max(np.abs(ours - theirs)))
    assert error < TOLERANCE * float(np.max(np.abs(theirs))), error


def test_graph_module_is_the_models_forward_split_in_two():
    """frequency branch through demucs's own _mask/_ispec, plus the time branch, is HTDemucs.forward."""
    model = _tiny(["a", "b"], seed=3)
    x = torch.randn(1, 2, SEGMENT) * 0.2
    with torch.no_grad():
        frequency, time = export_onnx.HTDemucsGraph(model)(x, model._magnitude(model._spec(x)))
        rebuilt = time + model._ispec(model._mask(None, frequency), SEGMENT)
        expected = model(x)
    assert frequency.shape == (1, 2, 4, 2048, 44) and time.shape == (1, 2, 2, SEGMENT)
    torch.testing.assert_close(rebuilt, expected, rtol=0, atol=1e-6)
    assert "_spec" not in model.__dict__ and "_ispec" not in model.__dict__  # the steps are put back


def test_refuses_models_the_backend_cannot_run(tmp_path):
    from demucs.apply import BagOfModels

    target = tmp_path / "x.onnx"
    bag = BagOfModels([_tiny(SOURCES, 1), _tiny(SOURCES, 2)])
    with pytest.raises(ValueError, match="bag of 2 models.*htdemucs_ft.*own file"):
        export_onnx.export_htdemucs(bag, target)
    with pytest.raises(ValueError, match="zero weight"):
        export_onnx.export_htdemucs(BagOfModels([_tiny(SOURCES)], [[1.0, 0.0, 1.0, 1.0]]), target)
    with pytest.raises(ValueError, match="STFT is 1024 points"):
        export_onnx.export_htdemucs(tiny_htdemucs(SOURCES), target)  # nfft=1024
    assert not any(tmp_path.iterdir())


def test_a_failed_export_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "tiny.onnx"
    target.write_bytes(b"the previous export")

    def broken(*args, **kwargs):
        Path(args[2]).write_bytes(b"half a graph")
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_onnx.export_htdemucs(_tiny(SOURCES), target)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]
    assert target.read_bytes() == b"the previous export"


# ------------------------------------------------------------------------------- CLI

def test_cli_exports_into_the_models_folder_and_registry_prefers_it(tmp_path, capsys):
    sources = ["vocals", "accompaniment"]  # not ONNX_SOURCES: the names must come from the metadata
    folder = _local_repo(tmp_path / "models", "tiny", _tiny(sources, seed=4))
    assert ModelRegistry(folder, use_hf_cache=False).status("tiny").backend == "torch"
    assert _cli("tiny", "--dir", str(folder)) == 0
    out = capsys.readouterr().out
    assert "tiny exported" in out and "onnxruntime" in out
    registry = ModelRegistry(folder, use_hf_cache=False)
    status = registry.status("tiny")
    assert status.present and status.backend == "onnx" and status.file == folder / "tiny.onnx"
    loaded = registry.load("tiny")
    assert isinstance(loaded, so.OnnxHTDemucs) and loaded.sources == sources
    # The torch weights stay reachable for a later export, past the ONNX file.
    assert type(registry.load_torch("tiny")).__name__ == "BagOfModels"

    # An existing export is kept unless --force.
    before = (folder / "tiny.onnx").read_bytes()
    assert _cli("tiny", "--dir", str(folder)) == 1
    assert "--force" in capsys.readouterr().err
    assert (folder / "tiny.onnx").read_bytes() == before
    other = tmp_path / "elsewhere" / "copy.onnx"
    assert _cli("tiny", "--dir", str(folder), "--output", str(other)) == 0
    assert other.is_file() and "move the file there" in capsys.readouterr().out
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no scratch files left


def test_cli_missing_weights_and_unexportable_bags_are_clear_errors(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "ghost.yaml").write_text(yaml.safe_dump({"models": ["0badf00d"]}))
    assert _cli("ghost", "--dir", str(folder)) == 1
    err = capsys.readouterr().err
    assert "weights of the 'ghost' separation model are missing" in err
    assert "stemscribe models fetch ghost" in err
    assert _cli("nosuchmodel", "--dir", str(folder)) == 1
    assert "unknown separation model" in capsys.readouterr().err

    make_models_dir(folder, ("htdemucs_ft",))  # four tiny stand-ins under htdemucs_ft's signatures
    assert _cli("htdemucs_ft", "--dir", str(folder)) == 1
    err = capsys.readouterr().err
    assert "htdemucs_ft cannot be exported" in err and "bag of 4 models" in err
    assert not list(folder.glob("*.onnx"))


def test_quantize_writes_an_int8_copy_the_registry_prefers_and_it_separates_alike(tmp_path, capsys):
    folder = _local_repo(tmp_path / "models", "tiny", _tiny(SOURCES, seed=7))
    assert main(["models", "quantize", "tiny", "--dir", str(folder)]) == 1
    assert "export-onnx tiny" in capsys.readouterr().err  # nothing to quantize yet: says how to make it
    assert _cli("tiny", "--dir", str(folder)) == 0
    assert main(["models", "quantize", "tiny", "--dir", str(folder)]) == 0
    assert "int8 copy written" in capsys.readouterr().out
    registry = ModelRegistry(folder, use_hf_cache=False)
    status = registry.status("tiny")
    assert status.backend == "onnx" and status.file == folder / "tiny.int8.onnx"
    assert [s.name for s in registry.list()].count("tiny") == 1 and "tiny.int8" not in [s.name for s in registry.list()]
    quantized = registry.load("tiny")
    assert quantized.path.name == "tiny.int8.onnx" and quantized.sources == SOURCES
    mix = np.random.default_rng(3).standard_normal((2, 2 * SEGMENT)).astype(np.float32) * 0.1
    float_stems = so.OnnxSeparator(so.OnnxHTDemucs(folder / "tiny.onnx", threads=1)).separate_array(mix)
    int8_stems = so.OnnxSeparator(quantized).separate_array(mix)
    error_db = 10 * np.log10(np.sum((int8_stems - float_stems) ** 2) / max(np.sum(float_stems ** 2), 1e-30))
    # The tiny model's transformer sits behind demucs's 1e-4 layer scale, so its int8 error is far below
    # this bound; the full htdemucs on dev clips 07 and 08 is at -40 to -52 dB on the stems carrying music.
    assert error_db < -20, error_db
    import onnx

    operators = {node.op_type for node in onnx.load(str(folder / "tiny.int8.onnx")).graph.node}
    assert "MatMulInteger" in operators  # really quantized, not a copy
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    # A damaged export is a clear error, and the copy in place is left alone.
    (folder / "tiny.onnx").write_bytes(b"not an onnx graph")
    before = (folder / "tiny.int8.onnx").read_bytes()
    assert main(["models", "quantize", "tiny", "--dir", str(folder)]) == 1
    assert "cannot be read as an ONNX file" in capsys.readouterr().err
    assert (folder / "tiny.int8.onnx").read_bytes() == before
