"""Export a demucs htdemucs network to the ONNX graph that ``separate_onnx`` runs.

Exports: export_htdemucs, exportable_htdemucs, HTDemucsGraph, INPUT_NAMES, OUTPUT_NAMES.

The graph holds the network only, with the contract ``separate_onnx.OnnxHTDemucs``
reads: inputs (1) a stereo segment, float32 (1, C, L) with L the model's
training segment (343980 samples, 7.8 s, for htdemucs) and (2) its spectrogram
complex-as-channels, (1, 2C, 2048, ceil(L / 1024)), as demucs's
``HTDemucs._magnitude(HTDemucs._spec(x))`` makes it; outputs (1) the frequency
branch (1, S, 2C, 2048, T), complex-as-channels and de-normalised (what
``HTDemucs._mask`` receives) and (2) the time branch (1, S, C, L), de-normalised.
A source's waveform is the time branch plus the inverse spectrogram of the
frequency branch; the transforms are done in numpy by ``separate_onnx``.

``HTDemucsGraph`` gets there without restating the network: it runs the
model's own ``forward`` with four of its steps replaced for the call. ``_spec``
and ``_magnitude`` yield the given spectrogram, ``_mask`` hands the real
frequency branch through unchanged (in complex-as-channels mode demucs's
``_mask`` only reshapes it to complex), and ``_ispec`` keeps that tensor and
returns zero, so ``forward``'s sum is the time branch alone. A segment of
exactly the training length is not padded by ``forward`` (its
``use_train_segment`` padding only lengthens shorter input), so nothing is cut
off afterwards either.

The file gets a ``sources`` metadata entry (the source names, comma-separated)
and is written beside its target and renamed into place: a failed export
leaves no partial file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .separate_onnx import HOP, MODEL_SAMPLE_RATE_HZ, N_FFT, write_onnx_file

#: The forward steps ``HTDemucsGraph`` replaces while the network runs.
_REPLACED_STEPS = ("_spec", "_magnitude", "_mask", "_ispec")
#: Names of the graph's inputs and outputs, in the contract's order.
INPUT_NAMES = ("mix", "spectrogram")
OUTPUT_NAMES = ("frequency", "time")


class HTDemucsGraph(torch.nn.Module):
    """An ``HTDemucs`` as a module of (segment, spectrogram) -> (frequency branch, time branch).

    Args:
        model: a demucs ``HTDemucs`` in complex-as-channels mode, in eval mode.

    The module shares the model's layers (no copy); while ``forward`` runs,
    the model's ``_spec``/``_magnitude``/``_mask``/``_ispec`` are replaced on
    the instance and put back afterwards.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    @property
    def segment_length(self) -> int:
        """Samples in the segment the graph takes: the model's training length, as demucs computes it."""
        return int(self.model.segment * self.model.samplerate)

    def forward(self, mix: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's two branches for one segment.

        Args:
            mix: (B, C, segment_length) waveform.
            spec: (B, 2C, N_FFT // 2, ceil(segment_length / HOP)) its complex-as-channels spectrogram.

        Returns:
            (frequency (B, S, 2C, N_FFT // 2, T), time (B, S, C, segment_length)).

        Raises:
            ValueError: a segment of another length.
        """
        if mix.shape[-1] != self.segment_length:
            raise ValueError(f"the graph takes segments of {self.segment_length} samples, got {mix.shape[-1]}")
        model = self.model
        captured: list[torch.Tensor] = []

        def keep_frequency(z: torch.Tensor, length: int | None = None, scale: int = 0) -> torch.Tensor:
            captured.append(z)
            return z.new_zeros(())

        replacements = {
            "_spec": lambda x: None,
            "_magnitude": lambda z: spec,
            "_mask": lambda z, m: m,
            "_ispec": keep_frequency,
        }
        for step, replacement in replacements.items():
            object.__setattr__(model, step, replacement)
        try:
            time = model(mix)
        finally:
            for step in _REPLACED_STEPS:
                model.__dict__.pop(step, None)
        (frequency,) = captured
        return frequency, time


def exportable_htdemucs(model: Any) -> Any:
    """The single ``HTDemucs`` network an export of ``model`` would hold.

    Args:
        model: a demucs ``HTDemucs``, or a ``BagOfModels`` of exactly one
            (with one model its per-source weights cancel out in demucs's
            weighted average, so any nonzero weights are accepted).

    Returns:
        The ``HTDemucs``.

    Raises:
        ValueError: a bag of several models (such as htdemucs_ft), a bag with a
            zero weight, another architecture, or settings the onnxruntime
            front end does not reproduce (not complex-as-channels, another STFT
            size or sample rate).
    """
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    if isinstance(model, BagOfModels):
        count = len(model.models)
        if count != 1:
            raise ValueError(
                f"this is a bag of {count} models: one ONNX file holds one network, and the bag's "
                "result is a per-source weighted average of all of them (htdemucs_ft's 4 models each "
                "specialise in one source, so each would need its own file). Export a single-model "
                "bag such as htdemucs or htdemucs_6s.")
        weights = [float(w) for w in model.weights[0]]
        if any(w == 0.0 for w in weights):
            raise ValueError(f"the bag's only model has a zero weight for a source ({weights}): "
                             "demucs would divide that source by zero")
        model = model.models[0]
    if not isinstance(model, HTDemucs):
        raise ValueError(f"only Hybrid Transformer Demucs (HTDemucs) models can be exported, "
                         f"not {type(model).__name__}")
    if not model.cac:
        raise ValueError("the model estimates masks (cac=False); the ONNX contract is the complex-as-channels "
                         "spectrogram of cac=True models")
    if model.nfft != N_FFT or model.hop_length != HOP:
        raise ValueError(f"the model's STFT is {model.nfft} points at hop {model.hop_length}; the onnxruntime "
                         f"front end computes {N_FFT} at hop {HOP}")
    if model.samplerate != MODEL_SAMPLE_RATE_HZ:
        raise ValueError(f"the model works at {model.samplerate} Hz; the onnxruntime backend runs "
                         f"{MODEL_SAMPLE_RATE_HZ} Hz models")
    return model


def export_htdemucs(model: Any, path: Path, *, opset: int = 17) -> Path:
    """Write ``model`` as an ONNX graph with ``separate_onnx``'s contract.

    The network is traced (``torch.onnx.export``, TorchScript exporter) on one
    segment of the model's training length; the file is written beside
    ``path`` and renamed into place, so an existing file is replaced only by a
    complete export.

    Args:
        model: a demucs ``HTDemucs``, or a ``BagOfModels`` holding exactly one
            (what ``ModelRegistry.load_torch("htdemucs")`` returns). Its
            training flag is restored afterwards.
        path: the ``.onnx`` file to write (its folder is created if needed).
        opset: ONNX operator set version.

    Returns:
        ``path``.

    Raises:
        ValueError: a model that cannot be exported (see ``exportable_htdemucs``).
        ImportError: the ``onnx`` package is missing.
        RuntimeError / OSError: the exporter or the file system failed.
    """
    network = exportable_htdemucs(model)
    graph = HTDemucsGraph(network)
    length = graph.segment_length
    generator = torch.Generator().manual_seed(0)
    was_training = network.training
    network.eval()

    def trace(scratch: str) -> None:
        parameter = next(network.parameters())
        mix = 0.1 * torch.randn(1, network.audio_channels, length, generator=generator)
        mix = mix.to(device=parameter.device, dtype=parameter.dtype)
        with torch.no_grad():
            spec = network._magnitude(network._spec(mix))
        with warnings.catch_warnings():
            # The tracer warns about shapes turned into constants: the graph is for one length.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            # Traced with gradients on: without them torch's attention layers take their fused
            # inference kernels (aten::_native_multi_head_attention), which have no ONNX form.
            torch.onnx.export(graph, (mix, spec), scratch, dynamo=False, opset_version=opset,
                              input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES))

    try:
        return write_onnx_file(Path(path), trace, {"sources": ",".join(str(s) for s in network.sources)})
    finally:
        network.train(was_training)
