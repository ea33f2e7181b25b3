"""Stem separation with demucs, in bounded memory, plus writing stems as audio files.

Exports: Separator, plan_chunks, crossfade_weights, write_stems, STEM_EXTENSIONS.

Two backends sit behind ``Separator``: a torch demucs model (below), or an ONNX
export of htdemucs on onnxruntime (``core.separate_onnx``), chosen by the type of
model ``ModelRegistry.load`` returned. The ONNX backend streams demucs's own
overlapping segments over the whole recording; the torch backend works as follows.

A long recording is cut into pieces of ``chunk_s`` seconds that overlap by
``crossfade_s``; demucs separates each piece (itself in its own ~8 s segments)
and the pieces are joined with complementary linear fades whose weights sum to
exactly one, so a join can neither click nor drop or repeat a sample. Only one
piece's activations live at a time; the recording and the stems are the only
buffers that grow with its length.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import defaults
from .audio import Audio, encode
from .progress import Reporter, Stage

#: File extension of each stem format (Opus goes in an OGG container).
STEM_EXTENSIONS: dict[str, str] = {"opus": "ogg", "flac": "flac", "wav": "wav"}


def plan_chunks(length: int, chunk: int, crossfade: int) -> list[tuple[int, int]]:
    """Cut ``length`` samples into pieces of ``chunk`` samples overlapping by ``crossfade``.

    The last piece ends exactly at ``length``; a tail shorter than a crossfade is
    folded into the piece before, so no piece is shorter than its fades.

    Args:
        length: samples to cover (> 0).
        chunk: piece length in samples (> 2 * crossfade).
        crossfade: overlap of neighbouring pieces in samples (>= 0).

    Returns:
        [(start, end)] in order, covering 0..length.

    Raises:
        ValueError: non-positive length, or a chunk not longer than two crossfades.
    """
    if length <= 0:
        raise ValueError(f"nothing to separate: length {length}")
    if crossfade < 0 or chunk <= 2 * crossfade:
        raise ValueError(f"chunk ({chunk}) must be longer than two crossfades ({crossfade})")
    stride = chunk - crossfade
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = start + chunk
        if end >= length - crossfade:
            spans.append((start, length))
            return spans
        spans.append((start, end))
        start += stride


def crossfade_weights(length: int, *, fade_in: int, fade_out: int) -> np.ndarray:
    """Per-sample weight of one piece: linear ramps at the ends, one in the middle.

    Ramps use sample centres, (i + 0.5) / fade, so a fade-out and the next piece's
    fade-in over the same samples sum to exactly one.

    Args:
        length: samples in the piece.
        fade_in / fade_out: ramp lengths in samples (0 = none, at the file's ends).

    Returns:
        float32 array of shape (length,).
    """
    weights = np.ones(length, dtype=np.float32)
    if fade_in:
        weights[:fade_in] = (np.arange(fade_in, dtype=np.float64) + 0.5) / fade_in
    if fade_out:
        weights[length - fade_out:] = 1.0 - (np.arange(fade_out, dtype=np.float64) + 0.5) / fade_out
    return weights


class Separator:
    """Splits a recording into stems with one loaded demucs model.

    Args:
        model: a demucs model or BagOfModels (``ModelRegistry.load``), or any
            module with ``sources``, ``samplerate``, ``audio_channels``, ``segment``;
            or a ``separate_onnx.OnnxHTDemucs`` (then ``segment_s``, ``chunk_s``,
            ``crossfade_s`` and ``shifts`` do not apply: it streams its fixed segments).
        threads: torch CPU threads, or onnxruntime intra-op threads for an ONNX
            model (0 = every core this process may use). Torch's thread count is
            process-wide; the worker sets it once from settings.
        segment_s: demucs's own segment length in seconds (None = the model's;
            HTDemucs cannot go above its training length).
        overlap: overlap of demucs's segments, 0..0.9.
        chunk_s: length of the pieces the recording is processed in.
        crossfade_s: overlap of the pieces, cross-faded.
        shifts: demucs's random-shift averaging (0 = off; each shift costs a full pass).

    Raises:
        ValueError: settings out of range.
    """

    def __init__(self, model: Any, *, threads: int = 0, segment_s: float | None = None, overlap: float = 0.25,
                 chunk_s: float = defaults.SEPARATION_CHUNK_S,
                 crossfade_s: float = defaults.SEPARATION_CROSSFADE_S, shifts: int = 0) -> None:
        from .separate_onnx import OnnxHTDemucs, OnnxSeparator

        self.backend = "onnx" if isinstance(model, OnnxHTDemucs) else "torch"
        self._onnx: OnnxSeparator | None = None
        if isinstance(model, OnnxHTDemucs):
            model.set_threads(threads)
            self.model, self.overlap, self.threads = model, overlap, model.threads
            self._onnx = OnnxSeparator(model, overlap=overlap)
            return
        import torch

        if not 0.0 <= overlap < 0.9:
            raise ValueError(f"overlap must be in 0..0.9, got {overlap}")
        if chunk_s <= 2 * crossfade_s or crossfade_s < 0:
            raise ValueError(f"chunk_s ({chunk_s}) must be longer than two crossfades ({crossfade_s})")
        limit = getattr(model, "max_allowed_segment", None)
        if segment_s is not None and (segment_s <= 0 or (limit is not None and segment_s > float(limit))):
            raise ValueError(f"segment_s must be in (0, {limit}], got {segment_s}")
        self.model = model
        self.segment_s = segment_s
        self.overlap = overlap
        self.chunk_s = chunk_s
        self.crossfade_s = crossfade_s
        self.shifts = shifts
        self.threads = threads if threads > 0 else len(os.sched_getaffinity(0))
        torch.set_num_threads(self.threads)
        model.eval()

    @property
    def sources(self) -> list[str]:
        """Stem names in the model's order ("drums", "bass", "other", "vocals" ...)."""
        return list(self.model.sources)

    @property
    def sample_rate(self) -> int:
        """Rate the model works at (demucs: 44100 Hz)."""
        return int(self.model.samplerate)

    def separate(self, audio: Audio, reporter: Reporter | None = None) -> dict[str, Audio]:
        """Separate ``audio`` into the model's stems.

        Args:
            audio: the mix, any rate and channel count.
            reporter: receives (Stage.SEPARATE, fraction, message) after each piece
                and is where cancellation is checked.

        Returns:
            Stem name -> Audio at the input's rate and length; mono input gives mono stems.

        Raises:
            ValueError: empty audio.
            CancelledError: the reporter's cancel token was set.
        """
        if self._onnx is not None:
            return self._onnx.separate(audio, reporter)
        import torch
        from demucs.apply import TensorChunk, apply_model

        n_input = audio.samples.shape[1]
        if n_input == 0:
            raise ValueError("cannot separate empty audio")
        work = audio.resample(self.sample_rate) if audio.sample_rate != self.sample_rate else audio
        mix = torch.from_numpy(_to_channels(work.samples, int(self.model.audio_channels)))
        # demucs expects the mix standardised; statistics of the whole file keep pieces consistent.
        reference = mix.mean(0)
        mean, std = float(reference.mean()), float(reference.std())
        std = std if std > 1e-8 else 1.0
        mix = ((mix - mean) / std)[None]
        n = mix.shape[-1]
        stems = np.zeros((len(self.sources), mix.shape[1], n), dtype=np.float32)
        spans = plan_chunks(n, max(1, int(self.chunk_s * self.sample_rate)), int(self.crossfade_s * self.sample_rate))
        if reporter is not None:
            reporter(Stage.SEPARATE, 0.0, f"separating stems: 0 of {len(spans)} pieces")
        for index, (start, end) in enumerate(spans):
            with torch.inference_mode():
                # The chunk views the whole mix, so demucs pads its edge segments with real neighbouring audio.
                estimate = apply_model(self.model, TensorChunk(mix, start, end - start), shifts=self.shifts,
                                       split=True, overlap=self.overlap, segment=self.segment_s)[0].numpy()
            fade_in = spans[index - 1][1] - start if index else 0
            fade_out = end - spans[index + 1][0] if index + 1 < len(spans) else 0
            stems[:, :, start:end] += estimate * crossfade_weights(end - start, fade_in=fade_in, fade_out=fade_out)
            del estimate
            if reporter is not None:
                reporter(Stage.SEPARATE, (index + 1) / len(spans),
                         f"separating stems: {index + 1} of {len(spans)} pieces")
        stems *= std
        # The DC removed before separation goes back shared evenly, so the stems still add up to the mix.
        stems += mean / len(self.sources)
        return {name: _stem_audio(stems[k], audio, self.sample_rate, n_input, name)
                for k, name in enumerate(self.sources)}


def _to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """(c, n) float32 -> (channels, n): mono is repeated, extra channels are dropped (as demucs does)."""
    if samples.shape[0] == channels:
        return np.ascontiguousarray(samples, dtype=np.float32)
    if samples.shape[0] == 1 or channels == 1:
        mono = samples.mean(axis=0, keepdims=True, dtype=np.float32)
        return np.ascontiguousarray(np.repeat(mono, channels, axis=0))
    return np.ascontiguousarray(samples[:channels], dtype=np.float32)


def _stem_audio(samples: np.ndarray, source: Audio, model_rate: int, n_input: int, stem_name: str) -> Audio:
    """A stem at the source's rate, channel layout (mono stays mono) and exact length."""
    name = f"{source.name} ({stem_name})" if source.name else stem_name
    stem = Audio(samples, model_rate, name)
    if source.sample_rate != model_rate:
        stem = stem.resample(source.sample_rate)
    if source.channels == 1:
        stem = stem.mono()
    data = stem.samples
    if data.shape[1] != n_input:
        fixed = np.zeros((data.shape[0], n_input), dtype=np.float32)
        keep = min(n_input, data.shape[1])
        fixed[:, :keep] = data[:, :keep]
        stem = Audio(fixed, source.sample_rate, name)
    return stem


def write_stems(stems: dict[str, Audio], out_dir: Path, *, fmt: str = "opus") -> dict[str, Path]:
    """Write each stem to ``out_dir/stems/<name>.<ext>`` (OGG/Opus by default).

    Args:
        stems: stem name -> audio; names are file-name safe ("vocals", "bass").
        out_dir: the job's output folder; ``stems/`` is created inside it.
        fmt: "opus" (small, plays in Discord and Telegram), "flac" or "wav" (lossless).

    Returns:
        Stem name -> path written, in the order given.

    Raises:
        ValueError: unknown format, an unsafe stem name, or an empty stem.
        RuntimeError: ffmpeg failed to write a file.
    """
    if fmt not in STEM_EXTENSIONS:
        raise ValueError(f"unknown stem format {fmt!r}; use one of {', '.join(STEM_EXTENSIONS)}")
    folder = Path(out_dir) / "stems"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, stem in stems.items():
        if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise ValueError(f"unsafe stem name {name!r}")
        written[name] = encode(stem, folder / f"{name}.{STEM_EXTENSIONS[fmt]}", fmt)
    return written
