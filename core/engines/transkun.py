"""transkun (Yan & Duan, piano transcription with a neural semi-CRF) on CPU, without torchaudio.

Exports: TranskunEngine, TranskunSettings, load_transkun_model, drop_octave_ghosts, OCTAVE_DOUBLING_VELOCITY.

transkun's pip metadata pulls torchaudio, tensorboard, seaborn and training extras;
the way this module uses it, it needs only torch, numpy, scipy, pretty_midi (with
mido) and mir_eval (imported by its Data/Evaluation modules) plus its own
checkpoint; moduleconf and ncls are not used (the config is read as JSON here,
ncls only serves training). torchaudio is used once, to build the mel filterbank
buffer while constructing the model; that buffer is in the checkpoint as well, so
a small stand-in module (HTK mel filters, same formula) serves the constructor and
the checkpoint's values then overwrite it.

Speed (dev set, 2 cores): transkun's default 16 s segments advancing by 8 s process
each second of audio twice, plus 8 s of silence at each end. Advancing by 14 s
keeps 2 s of overlap for its boundary-state hand-over and halves the work at the
same accuracy (note F1 03: 1.000 -> 0.998, 05: 0.758 -> 0.749, 10: see README).
Longer segments break the model (24 s / 20 s: F1 0.63 on 03), and int8 dynamic
quantization of the Linear layers costs F1 (0.80 on 03) without a speed-up on
AVX2 CPUs, so neither is used. Inference runs under torch.inference_mode with the
cache's thread count.

Fast path (issue 21, the default; ``fast=False`` is transkun's own code): the
interval scorer is computed without its three full-size temporaries and the
backbone runs without activation checkpointing. Same arithmetic, identical
notes on 16 s of clip 03, about 8 % less CPU time. ``bf16=True`` (opt-in) also
runs the backbone under bfloat16 autocast: on a CPU with AVX512-BF16 it takes
about a quarter less CPU time (dev clips of 30 s: 24 s -> 18 s), but measured on
the seven dev clips transkun serves it moves note F1 by more than 0.005 on three
(05 organ 0.877 -> 0.853, 06 0.410 -> 0.386, 08 0.714 -> 0.704; 03, 04, 07 and 10
within 0.005), so it stays opt-in. Idle 2 cores, float32: 30 s in 12.0-12.9 s wall
(0.40-0.43x real time).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import threading
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..instruments import Instrument
from ..notes import Note
from .base import ProgressFn, clamp_velocity, report_progress, resample_mono, sort_notes

#: Lowest and highest piano keys transkun predicts.
PIANO_LOW = 21
PIANO_HIGH = 108

_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class TranskunSettings:
    """How audio is cut for the model.

    segment_s: audio per model call (the model sees this much context).
    hop_s: advance between calls; segment_s - hop_s is re-processed as overlap.
    """

    segment_s: float = 16.0
    hop_s: float = 14.0


def _package_dir() -> Path:
    spec = importlib.util.find_spec("transkun")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("transkun is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int):
    """Triangular HTK-mel filters, shape (n_freqs, n_mels), unnormalised (torchaudio's defaults)."""
    import torch

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    fft_freqs = np.linspace(0, sample_rate / 2, n_freqs)
    mel_points = np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    hz_points = 700.0 * (10 ** (mel_points / 2595.0) - 1.0)
    diffs = np.diff(hz_points)
    slopes = hz_points[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diffs[:-1]
    up = slopes[:, 2:] / diffs[1:]
    return torch.from_numpy(np.maximum(0.0, np.minimum(down, up)).astype(np.float32))


def _torchaudio_stand_in() -> types.ModuleType:
    module = types.ModuleType("torchaudio")
    functional = types.ModuleType("torchaudio.functional")

    def melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None, mel_scale="htk"):
        if norm is not None or mel_scale != "htk":
            raise NotImplementedError("only HTK mel filters without norm are provided")
        return _mel_filterbank(n_freqs, f_min, f_max, n_mels, sample_rate)

    functional.melscale_fbanks = melscale_fbanks
    module.functional = functional
    return module


def load_transkun_model(*, weights: Path | None = None, conf: Path | None = None):
    """Build transkun's model and load its bundled (or given) piano checkpoint.

    Args:
        weights: checkpoint file (default: transkun/pretrained/2.0.pt).
        conf: model config JSON (default: transkun/pretrained/2.0.conf).

    Returns:
        The TransKun torch module in eval mode on the CPU.

    Raises:
        ModuleNotFoundError: transkun is not installed.
        RuntimeError: the checkpoint does not match the model.
    """
    import torch

    pkg = _package_dir()
    weights = weights or pkg / "pretrained" / "2.0.pt"
    conf = conf or pkg / "pretrained" / "2.0.conf"
    model_conf = json.loads(Path(conf).read_text())["Model"]
    from transkun import ModelTransformer

    config = ModelTransformer.Config()
    config.__dict__.update(model_conf["config"])
    with _BUILD_LOCK:
        # Only the constructor imports torchaudio. Unless a real one is already loaded,
        # give it the stand-in, then put back whatever was there (nothing, or a None
        # entry that blocks the import) so no other code mistakes it for the library.
        had_entry = "torchaudio" in sys.modules
        previous = sys.modules.get("torchaudio")
        if previous is None:
            sys.modules["torchaudio"] = _torchaudio_stand_in()
        try:
            model = ModelTransformer.TransKun(conf=config)
        finally:
            if previous is None:
                if had_entry:
                    sys.modules["torchaudio"] = previous
                else:
                    sys.modules.pop("torchaudio", None)
    checkpoint = torch.load(str(weights), map_location="cpu", weights_only=False)
    state = checkpoint.get("best_state_dict", checkpoint.get("state_dict"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise RuntimeError(f"transkun checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
    model.eval()
    return model


def _fast_interval_scores(scorer, ctx):
    """ScaledInnerProductIntervalScorer.forward with the same arithmetic and less memory traffic.

    transkun's scorer builds a (pitches x frames x frames) score matrix per
    segment (90 x 689 x 689 floats, 170 MB) and then makes three more of that
    size: the length-scaled copy, a diagonal matrix that is zero off its
    diagonal, and their sum. Here the length scaling is done in place and the
    diagonal is written into its place: every entry is the same float as
    before (off the diagonal x + 0.0 is x; on it S * 0 + d is d).
    """
    import torch

    size = scorer.size * scorer.expansionFactor
    q, k, diag = scorer.map(ctx).split([size, size, 1], dim=-1)
    q = q / math.sqrt(q.shape[-1])
    scores = torch.matmul(q, k.transpose(-1, -2))
    n_e, n_b = scores.shape[-2], scores.shape[-1]
    length = (torch.arange(n_e).unsqueeze(-1) - torch.arange(n_b).unsqueeze(0)).abs()
    if scorer.lengthScaling == "linear":
        scores.mul_(length)
    elif scorer.lengthScaling == "sqrt":
        scores.mul_(length.float().sqrt())
    elif scorer.lengthScaling != "none":
        raise ValueError(f"unknown lengthScaling {scorer.lengthScaling!r}")
    scores.diagonal(dim1=-2, dim2=-1).copy_(diag.squeeze(-1))
    skip = (diag * 0.0)[..., 1:, 0]
    return scores.permute(2, 3, 0, 1).contiguous(), skip.permute(2, 0, 1).contiguous()


def _install_fast_path(model) -> None:
    """Swap the exact-arithmetic fast pieces into a loaded transkun model (see TranskunEngine)."""
    # Inference needs no activation checkpointing: torch.utils.checkpoint only costs a
    # wrapper per layer (and imports torch._dynamo on the first call).
    model.backbone.useGradientCheckpoint = False
    model.scorer.forward = types.MethodType(_fast_interval_scores, model.scorer)


def _install_bf16_backbone(model) -> None:
    """Run the model's backbone under bfloat16 autocast, handing float32 on to the scorer."""
    import torch

    backbone_forward = model.backbone.forward

    def forward(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = backbone_forward(*args, **kwargs)
        return out.float()

    model.backbone.forward = forward


class TranskunEngine:
    """Piano transcription with transkun; the model is loaded once per instance.

    Args:
        threads: torch intra-op threads while transcribing (0 = leave torch's setting).
        settings: how audio is segmented (defaults are the measured best).
        fast: use the fast path (default): the interval scorer without its
            full-size temporaries and no activation checkpointing; the same
            arithmetic, so the same notes (tests/test_engine_speed_paths.py).
            False runs transkun's own code unchanged (the reference path).
        bf16: run the backbone under bfloat16 autocast (opt-in; see the module docstring).

    Raises:
        ModuleNotFoundError: transkun is not installed.
    """

    name = "transkun"

    def __init__(self, *, threads: int = 0, settings: TranskunSettings | None = None, fast: bool = True,
                 bf16: bool = False) -> None:
        self.settings = settings or TranskunSettings()
        self.threads = max(0, int(threads))
        model = load_transkun_model()
        self.fast = bool(fast)
        if self.fast:
            _install_fast_path(model)
        self.bf16 = bool(bf16)
        if self.bf16:
            _install_bf16_backbone(model)
        self._model = model
        self._lock = threading.Lock()
        # transkun wraps its layers in torch.utils.checkpoint, which warns on every call
        # when nothing requires grad (the normal case for inference) and about its
        # use_reentrant default; neither concerns inference.
        warnings.filterwarnings("ignore", message="None of the inputs have requires_grad",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message="torch.utils.checkpoint: the use_reentrant",
                                category=UserWarning)

    @property
    def sample_rate(self) -> int:
        """Sample rate the model expects (44.1 kHz)."""
        return int(self._model.fs)

    def transcribe(
        self,
        samples_mono: np.ndarray,
        sample_rate: int,
        *,
        instrument: Instrument | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Note]:
        """Transcribe piano (or other keyboard) audio.

        Args:
            samples_mono: float32 mono audio.
            sample_rate: its rate in Hz.
            instrument: keeps notes inside its range when given; for an organ
                (``octave_ghosts``) the notes its octave stops add are dropped.
            progress: fraction-done callback, called once per segment.

        Returns:
            Notes in seconds of the input, sorted by start; pedal events are dropped.
        """
        import torch

        x = resample_mono(samples_mono, sample_rate, self.sample_rate)
        low = max(PIANO_LOW, instrument.low) if instrument else PIANO_LOW
        high = min(PIANO_HIGH, instrument.high) if instrument else PIANO_HIGH
        duration = len(x) / self.sample_rate
        if duration < 0.05:
            return []
        with self._lock, torch.inference_mode():
            previous = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                events = self._run(torch.from_numpy(x)[:, None], progress)
            finally:
                torch.set_num_threads(previous)
        notes = [Note(start_s=float(e.start), end_s=float(max(e.end, e.start + 1e-3)), pitch=int(e.pitch),
                      velocity=clamp_velocity(e.velocity))
                 for e in events if low <= e.pitch <= high and e.start < duration]
        if instrument is not None and instrument.octave_ghosts:
            notes = drop_octave_ghosts(notes)
        report_progress(progress, 1.0)
        return sort_notes(notes)

    def _run(self, x, progress: ProgressFn | None):
        s = self.settings
        # The same segment count transkun's loop will walk (it pads both ends).
        step = math.ceil(s.hop_s * self.sample_rate / self._model.hopSize) * self._model.hopSize
        pad = math.ceil((s.segment_s - s.hop_s) * self.sample_rate)
        n_segments = max(1, math.ceil((x.shape[0] + 2 * pad) / step))
        calls = 0
        original = self._model.transcribeFrames

        def counted(*args, **kwargs):
            nonlocal calls
            result = original(*args, **kwargs)
            calls += 1
            report_progress(progress, 0.95 * calls / n_segments)
            return result

        # transcribe() walks the segments itself; wrapping transcribeFrames on the instance
        # (under our lock) is how we see each one finish without copying its loop.
        self._model.transcribeFrames = counted
        try:
            return self._model.transcribe(x, stepInSecond=s.hop_s, segmentSizeInSecond=s.segment_s,
                                          discardSecondHalf=False)
        finally:
            del self._model.transcribeFrames


#: Onsets this close count as one attack for drop_octave_ghosts.
OCTAVE_GHOST_ONSET_S = 0.05
#: An upper note this much louder (transkun velocity) than the note an octave below is
#: a real doubling, not an octave stop's ghost (see drop_octave_ghosts).
OCTAVE_DOUBLING_VELOCITY = 12


def drop_octave_ghosts(notes: list[Note], *, onset_s: float = OCTAVE_GHOST_ONSET_S,
                       doubling_velocity: int = OCTAVE_DOUBLING_VELOCITY) -> list[Note]:
    """Drop notes that start with a note an octave below them, unless they are louder.

    An organ registration with octave stops (4', 2') or a coupler sounds every
    key's upper octave as loudly as the key itself; a piano model hears both.
    Where a second voice really doubles the octave, two pipes sound that pitch
    and transkun gives the upper note a clearly higher velocity than the lower
    one; a ghost is about as loud as its key. On the dev set's organ chorale the
    upper note of a same-attack octave pair was real in 12 of 57 pairs: 8 of
    those 12 are 12 or more velocity steps louder than the lower note, against
    1 of the 45 ghosts. Dropping every upper note took note F1 from 0.749 to
    0.838; keeping the louder ones takes it to 0.877 (a margin of 10..14 steps
    scores 0.865..0.877). On piano any dropping would remove real octaves
    (maple-leaf rag 0.998 -> 0.866), so only instruments flagged with
    ``octave_ghosts`` get it. Twelfths and double octaves (mixtures) were tried
    and cost more real notes than they removed.

    Args:
        notes: transcribed notes.
        onset_s: onsets closer than this count as one attack.
        doubling_velocity: an upper note at least this much louder than its
            lower octave is kept as a real doubling.

    Returns:
        The notes without the upper note of any same-attack octave pair, real
        doublings kept.
    """
    ordered = sorted(notes, key=lambda n: n.start_s)
    starts = np.array([n.start_s for n in ordered])
    kept = []
    for n in ordered:
        lo, hi = np.searchsorted(starts, [n.start_s - onset_s, n.start_s + onset_s])
        below = [m for m in ordered[lo:hi] if m.pitch == n.pitch - 12 and abs(m.start_s - n.start_s) < onset_s]
        if below and all(n.velocity - m.velocity < doubling_velocity for m in below):
            continue
        kept.append(n)
    return kept
