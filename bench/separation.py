#!/usr/bin/env python3
"""Separation cost on this machine: htdemucs timing and peak memory, on torch or on onnxruntime.

Usage:
    .venv/bin/python bench/separation.py [--threads 2] [--time-s 60] [--memory-s 600] [--chunk-s 40]
                                         [--real-pieces 2] [--onnx models/htdemucs.onnx] [--json]

Two runs, each in a fresh subprocess so that its peak resident memory
(``ru_maxrss``) is its own:
  * timing: ``--time-s`` seconds of stereo 44.1 kHz audio, wall time and real-time factor;
  * memory: ``--memory-s`` seconds (default 10 minutes) through the same chunked
    Separator, peak RSS compared with what the recording and its stems alone take.
The model is demucs's HTDemucs built with the hyper-parameters of the released
htdemucs (41.4 M weights, 7.8 s segments) and random weights: the cost is the
same as with trained weights, the stems are noise. ``--memory-s 0`` skips the
long run.

With ``--onnx PATH`` both runs use that ONNX export (trained weights, such as
``scripts/fetch-demucs-onnx``'s) through ``core.separate_onnx.OnnxSeparator``
instead: every segment of the memory run goes through the network (it streams
one segment at a time, so ``--real-pieces`` and ``--chunk-s`` do not apply). ``--warm`` times a session
that has already separated once, as a worker's is after its first job.

On a small machine the whole 10-minute run takes far too long, so by default the
memory run computes only its first ``--real-pieces`` pieces with the network
and fills the others with a stand-in that returns silence of the right shape.
Pieces run one after another and are all the same size, so the activations'
peak is reached in the real ones, while every buffer that grows with the input
(the recording, the normalised copy, the stems) is allocated and written in
full: the peak RSS is that of a full run. ``--real-pieces 0`` computes them all.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from fractions import Fraction

#: Hyper-parameters of the released htdemucs (demucs's conf/config.yaml, htdemucs section).
HTDEMUCS_KWARGS = dict(channels=48, depth=4, nfft=4096, growth=2, t_layers=5, t_heads=8, t_hidden_scale=4.0,
                       bottom_channels=512, dconv_mode=3, dconv_depth=2, dconv_comp=8, cac=True,
                       segment=Fraction(39, 5), rescale=0.1)


def _music(seconds: float, sample_rate: int):
    """Stereo test audio: a chord pad, a bass line and noise hits, so every band is busy."""
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pad = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    bass = 0.2 * np.sin(2 * np.pi * 55.0 * (1 + (t.astype(int) % 4) / 8) * t)
    hits = rng.standard_normal(t.size) * np.exp(-(t % 0.5) / 0.03) * 0.2
    left, right = pad + bass + hits, 0.8 * pad + bass + 0.6 * hits
    return np.stack([left, right]).astype(np.float32)


def _limit_real_pieces(real_pieces: int) -> None:
    """Let demucs compute the first ``real_pieces`` calls; later calls return silence of the right shape."""
    import torch
    from demucs import apply

    real_apply = apply.apply_model
    calls = [0]

    def apply_model(model, mix, **kwargs):
        # demucs recurses through this module attribute; only the Separator's own calls (the bag) count.
        if not isinstance(model, apply.BagOfModels):
            return real_apply(model, mix, **kwargs)
        calls[0] += 1
        if calls[0] <= real_pieces:
            return real_apply(model, mix, **kwargs)
        batch, channels, length = mix.shape
        return torch.zeros(batch, len(model.sources), channels, length)

    apply.apply_model = apply_model


def child(seconds: float, threads: int, chunk_s: float, real_pieces: int = 0) -> dict:
    """Build the model, separate ``seconds`` of audio, return timings and peak RSS (in this process)."""
    import torch
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    from stemscribe.core.audio import Audio
    from stemscribe.core.separate import Separator

    torch.manual_seed(0)
    model = BagOfModels([HTDemucs(sources=["drums", "bass", "other", "vocals"], **HTDEMUCS_KWARGS)])
    weights = sum(p.numel() for p in model.parameters())
    separator = Separator(model, threads=threads, chunk_s=chunk_s)
    rss_model_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    audio = Audio(_music(seconds, 44100), 44100, "bench")
    if real_pieces:
        _limit_real_pieces(real_pieces)
    timed = _timed_separation(separator, audio, rss_model_mb)
    return {"seconds": seconds, "threads": threads, "chunk_s": chunk_s, "weights": weights, **timed,
            "real_pieces": real_pieces or timed["pieces"]}


def _timed_separation(separator, audio, rss_model_mb: float) -> dict:
    """Separate ``audio`` once: wall and CPU time, real-time factor, pieces, peak RSS of this process."""
    pieces = []
    started = time.perf_counter()
    cpu_started = time.process_time()
    stems = separator.separate(audio, lambda stage, fraction, message: pieces.append(time.perf_counter()))
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    buffers_mb = (audio.samples.nbytes * (1 + len(stems))) / 2 ** 20
    return {"wall_s": round(wall_s, 2), "cpu_s": round(cpu_s, 2),
            "realtime_factor": round(wall_s / audio.duration_s, 3), "pieces": len(pieces) - 1,
            "rss_after_model_mb": round(rss_model_mb, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "audio_and_stems_mb": round(buffers_mb, 1)}


def onnx_child(seconds: float, threads: int, path: str, warm: bool = False) -> dict:
    """Load the ONNX export, separate ``seconds`` of audio, return timings and peak RSS (in this process).

    With ``warm`` the session first separates two segments' worth, untimed, as a
    worker's first job would: the timing is then that of a warm worker.
    """
    from pathlib import Path

    from stemscribe.core.audio import Audio
    from stemscribe.core.separate_onnx import OnnxHTDemucs, OnnxSeparator

    model = OnnxHTDemucs(Path(path), threads=threads)
    separator = OnnxSeparator(model)
    rss_model_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    audio = Audio(_music(seconds, 44100), 44100, "bench")
    first_s = None
    if warm:
        # As a worker after its first job: onnxruntime has grown its memory arena and planned its buffers.
        started = time.perf_counter()
        separator.separate(Audio(audio.samples[:, :2 * model.segment_length], 44100, "warm-up"))
        first_s = round(time.perf_counter() - started, 2)
    timed = _timed_separation(separator, audio, rss_model_mb)
    return {"seconds": seconds, "threads": threads, "backend": "onnxruntime", "model": Path(path).name,
            "warm": warm, "warm_up_s": first_s, **timed, "real_pieces": timed["pieces"]}


def _run_child(seconds: float, threads: int, chunk_s: float, real_pieces: int = 0, onnx: str | None = None,
               warm: bool = False) -> dict:
    command = [sys.executable, __file__, "--child", str(seconds), "--threads", str(threads),
               "--chunk-s", str(chunk_s), "--real-pieces", str(real_pieces)]
    command += (["--onnx", onnx] if onnx else []) + (["--warm"] if warm else [])
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the timing and memory benches and print their results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--time-s", type=float, default=60.0, help="audio length of the timing run")
    parser.add_argument("--memory-s", type=float, default=600.0, help="audio length of the memory run (0 = skip)")
    parser.add_argument("--chunk-s", type=float, default=40.0, help="Separator chunk length")
    parser.add_argument("--real-pieces", type=int, default=2,
                        help="pieces of the memory run computed by the network (0 = all)")
    parser.add_argument("--onnx", default=None, metavar="PATH",
                        help="time an ONNX export of htdemucs on onnxruntime instead of torch")
    parser.add_argument("--warm", action="store_true",
                        help="with --onnx: time a warm session (after an untimed first separation)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        result = (onnx_child(args.child, args.threads, args.onnx, args.warm) if args.onnx
                  else child(args.child, args.threads, args.chunk_s, args.real_pieces))
        print(json.dumps(result))
        return 0
    results = {"timing": _run_child(args.time_s, args.threads, args.chunk_s, onnx=args.onnx, warm=args.warm)}
    if args.memory_s > 0:
        results["memory"] = _run_child(args.memory_s, args.threads, args.chunk_s, args.real_pieces, args.onnx)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    timing = results["timing"]
    if args.onnx:
        print(f"htdemucs on onnxruntime ({timing['model']}), {timing['threads']} threads, one segment at a time"
              + (f"; warm session (warm-up {timing['warm_up_s']:.1f} s)" if timing["warm"] else "; cold session"))
    else:
        print(f"htdemucs (random weights, {timing['weights'] / 1e6:.1f} M), {timing['threads']} threads, "
              f"chunk {timing['chunk_s']:.0f} s")
    print(f"  {timing['seconds']:.0f} s stereo: {timing['wall_s']:.1f} s wall "
          f"({timing['realtime_factor']:.2f} x real time; {timing['cpu_s']:.1f} s CPU), "
          f"peak RSS {timing['peak_rss_mb']:.0f} MB")
    if "memory" in results:
        memory = results["memory"]
        print(f"  {memory['seconds']:.0f} s stereo ({memory['pieces']} pieces, {memory['real_pieces']} computed): "
              f"peak RSS {memory['peak_rss_mb']:.0f} MB "
              f"(model loaded: {memory['rss_after_model_mb']:.0f} MB; recording + stems: "
              f"{memory['audio_and_stems_mb']:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
