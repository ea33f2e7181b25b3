"""The fast engine paths (issue 21): same notes as the reference paths, and in use by default.

- transkun's fast interval scorer computes exactly what transkun's own does.
- TranskunEngine uses the fast path unless asked for the reference one, and both
  give the same notes on a short piano clip (slow: runs the model).
- The fusion engine, asked to, runs basic-pitch concurrently with transkun.
- `stemscribe transcribe` builds its parser without importing the bots, the
  queue or any model library.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from stemscribe.core.notes import Note

DEVSET = Path(__file__).resolve().parents[1].parent / "shared" / "devset"


def test_fast_interval_scorer_equals_transkuns_own():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transkun")
    from transkun.LayersTransformer import ScaledInnerProductIntervalScorer

    from stemscribe.core.engines.transkun import _fast_interval_scores

    torch.manual_seed(0)
    scorer = ScaledInnerProductIntervalScorer(16, 1).eval()
    ctx = torch.randn(2, 5, 37, 16)  # batch, pitches, frames, features
    with torch.inference_mode():
        want = scorer(ctx)
        got = _fast_interval_scores(scorer, ctx)
    for w, g in zip(want, got):
        assert w.shape == g.shape
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)
    # the diagonal (a note one frame long) is the model's own score, not a product
    assert torch.equal(got[0][torch.arange(37), torch.arange(37)], want[0][torch.arange(37), torch.arange(37)])


@pytest.mark.slow
def test_transkun_fast_path_is_default_and_gives_the_reference_notes():
    pytest.importorskip("transkun")
    from stemscribe.core.audio import decode
    from stemscribe.core.engines.transkun import TranskunEngine, _fast_interval_scores

    clip = next((DEVSET / "03-maple-leaf-rag-piano").glob("audio.*"), None)
    if clip is None:
        pytest.skip("dev set not available")
    x = decode(clip, sample_rate=44100, mono=True).samples[0][:6 * 44100]
    fast = TranskunEngine(threads=2)
    assert fast.fast and fast._model.scorer.forward.__func__ is _fast_interval_scores
    assert fast._model.backbone.useGradientCheckpoint is False
    reference = TranskunEngine(threads=2, fast=False)
    assert reference._model.backbone.useGradientCheckpoint is True
    got, want = fast.transcribe(x, 44100), reference.transcribe(x, 44100)
    assert len(want) > 10
    # Tolerance: same pitches and velocities, onsets and ends within 1 ms (the arithmetic is the same).
    assert [(n.pitch, n.velocity) for n in got] == [(n.pitch, n.velocity) for n in want]
    assert np.allclose([n.start_s for n in got], [n.start_s for n in want], atol=1e-3)
    assert np.allclose([n.end_s for n in got], [n.end_s for n in want], atol=1e-3)


class _WaitingBasicPitch:
    """basic-pitch stand-in that finishes only once transkun has started."""

    def __init__(self, transkun_started: threading.Event) -> None:
        self.started = transkun_started
        self.thread = None

    def transcribe_with_activations(self, samples, sample_rate, *, instrument=None, progress=None, params=None):
        self.thread = threading.current_thread()
        assert self.started.wait(timeout=5), "basic-pitch ran alone: transkun had not started"
        frames = np.zeros((int(len(samples) / 256), 88), np.float32)
        return [], frames, frames.copy(), None


class _SignallingTranskun:
    def __init__(self, started: threading.Event) -> None:
        self.started = started

    def transcribe(self, samples, sample_rate, *, instrument=None, progress=None):
        self.started.set()
        progress(1.0)
        return [Note(0.5, 0.9, 60, 70)]


def test_fusion_runs_basic_pitch_while_transkun_runs():
    from stemscribe.core.engines.fusion import FusionEngine

    started = threading.Event()
    bp = _WaitingBasicPitch(started)
    engine = FusionEngine(bp, _SignallingTranskun(started), concurrent=True)
    seen: list[float] = []
    notes = engine.transcribe(np.zeros(2 * 22050, np.float32), 22050, progress=seen.append)
    assert [(n.pitch, n.start_s) for n in notes] == [(60, 0.5)]
    assert bp.thread is not threading.main_thread()
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_transcribe_command_parses_without_heavy_imports():
    code = (
        "import sys\n"
        "from stemscribe.cli import _command_word, build_parser\n"
        "argv = ['transcribe', 'a.ogg', '--out', 'x']\n"
        "assert _command_word(['--config', 'transcribe', 'worker']) == 'worker'\n"
        "p = build_parser(transcribe_only=_command_word(argv) == 'transcribe')\n"
        "p.parse_known_args(argv)\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'librosa', 'music21', 'demucs', 'basic_pitch',"
        " 'discord', 'telegram', 'redis', 'rq') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_full_parser_still_lists_every_command():
    from stemscribe.cli import build_parser

    text = build_parser().format_help()
    assert "transcribe" in text and "worker" in text and "doctor" in text


def _line(seconds: float = 6.0, sample_rate: int = 16000) -> np.ndarray:
    """A sung-like line: a new semitone every half second, with vibrato, harmonics and fades."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    midi = 60 + np.floor(t / 0.5) % 7 + 0.4 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(440.0 * 2 ** ((midi - 69) / 12)) / sample_rate
    return (0.2 * sum(np.sin(k * phase) / k for k in range(1, 5))).astype(np.float32)


def test_pitch_tracker_runs_on_onnxruntime_by_default_with_the_reference_notes():
    """MonoEngine's ONNX network gives torchcrepe.predict's f0, periodicity and so the same notes."""
    from stemscribe.core.engines.mono import MonoEngine, OnnxCrepe, _import_torchcrepe

    try:
        _import_torchcrepe()
    except ImportError:
        pytest.skip("torchcrepe not installed")
    from stemscribe.core.engines.registry import ModelCache

    engine = ModelCache(threads=1).get("mono")
    x = _line()
    line = engine.transcribe_line(x, 16000)
    assert engine.backend == "onnx" and isinstance(engine._onnx, OnnxCrepe)  # the fast path stays in use
    reference = MonoEngine(threads=1, backend="torch")
    want = reference.track(x, 16000)
    got = engine.track(x, 16000)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)  # f0: the dither is seeded, so equal
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)  # periodicity: float rounding only
    assert [(n.pitch, n.start_s, n.end_s) for n in line.notes] == [
        (n.pitch, n.start_s, n.end_s) for n in reference.transcribe_line(x, 16000).notes]
    assert len(line.notes) >= 10
    # The seeded dither leaves the caller's random state as it was.
    np.random.seed(5)
    expected = np.random.random()
    np.random.seed(5)
    engine.track(x[:16000], 16000)
    assert np.random.random() == expected


def test_the_piano_reduction_reuses_the_probes_basic_pitch_run_with_the_same_notes():
    """Auto mode's probe already ran basic-pitch on the mix: the fusion decodes that run, not a second one."""
    pytest.importorskip("transkun")
    from helpers.synth import render_notes
    from stemscribe.core.auto import listen
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.options import Mode, Options
    from stemscribe.core.pipeline import _transcribe_single
    from stemscribe.core.progress import Reporter
    from stemscribe.core.tuning import Tuning

    chords = [(0.3 + 0.8 * i, 1.0 + 0.8 * i, p) for i, triad in enumerate(((48, 64, 67, 72), (53, 65, 69, 72),
                                                                          (55, 62, 67, 71), (48, 64, 67, 72)))
              for p in triad]
    x = render_notes(chords, duration_s=4.0)
    cache = ModelCache(threads=1)
    basic_pitch = cache.get("basic-pitch")
    fusion = cache.get("fusion")
    tuning = Tuning.given(440.0)
    probe = listen(basic_pitch, x, 44100, tuning)
    assert probe.run is not None
    reference = fusion.transcribe(x, 44100)

    calls = []
    real_run = basic_pitch.transcribe_with_activations

    def counting(*args, **kwargs):
        calls.append(1)
        return real_run(*args, **kwargs)

    basic_pitch.transcribe_with_activations = counting

    class Toolkit:
        engines = cache

    try:
        track, _ = _transcribe_single(x, 44100, Mode.PIANO, None, Options(), None, Toolkit(), Reporter(), tuning, probe)
    finally:
        del basic_pitch.transcribe_with_activations
    assert track.engine == "fusion" and not calls  # basic-pitch's model did not run again
    assert [(n.pitch, n.start_s, n.end_s) for n in track.notes] == [(n.pitch, n.start_s, n.end_s) for n in reference]
