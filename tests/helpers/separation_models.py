"""Tiny demucs models and synthetic band signals for the separation tests.

Exports: TINY_HTDEMUCS_KWARGS, tiny_htdemucs, save_demucs_model, make_models_dir,
IdentitySplitter, band_parts, harmonic_tone, drum_hits.

The tiny models are real demucs HTDemucs networks with a few thousand weights,
saved with demucs's own serialization (a ``{klass, args, kwargs, state}``
package written by ``demucs.states.save_with_checksum`` as
``<signature>-<sha256 prefix>.th``) under the signatures of the real models,
so ModelRegistry loads them exactly as it would load downloaded weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

#: Smallest HTDemucs that runs fast: depth 4 keeps the transformer's sequence short.
TINY_HTDEMUCS_KWARGS = dict(channels=8, depth=4, nfft=1024, t_layers=1, t_heads=2, segment=4,
                            bottom_channels=0, dconv_depth=1, t_hidden_scale=1.0)


def tiny_htdemucs(sources: list[str], seed: int = 0):
    """An HTDemucs with random weights, 4-second segments, about 270k parameters."""
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    return HTDemucs(sources=sources, **TINY_HTDEMUCS_KWARGS).eval()


def save_demucs_model(model, folder: Path, signature: str) -> Path:
    """Serialize ``model`` the way demucs's download site stores it; returns the file written."""
    from demucs.states import get_state, save_with_checksum

    args, kwargs = model._init_args_kwargs
    package = {"klass": model.__class__, "args": args, "kwargs": kwargs,
               "state": get_state(model, None, half=True), "training_args": {}}
    save_with_checksum(package, folder / f"{signature}.th")
    (found,) = folder.glob(f"{signature}-*.th")
    return found


def _bag_signatures(name: str) -> list[str]:
    import demucs

    bag = yaml.safe_load((Path(demucs.__file__).parent / "remote" / f"{name}.yaml").read_text())
    return [str(s) for s in bag["models"]]


def make_models_dir(folder: Path, names: tuple[str, ...] = ("htdemucs",)) -> Path:
    """Fill ``folder`` with tiny stand-ins for the named models (demucs local-repo layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        sources = ["drums", "bass", "other", "vocals"] + (["guitar", "piano"] if name == "htdemucs_6s" else [])
        for index, signature in enumerate(_bag_signatures(name)):
            save_demucs_model(tiny_htdemucs(sources, seed=index), folder, signature)
    return folder


class IdentitySplitter(torch.nn.Module):
    """A stand-in separator whose stem k is the mix times ``gains[k]``.

    It has the attributes demucs's apply_model reads, so it travels the whole
    chunking path; any dropped, repeated or mis-weighted sample at a join shows
    up as a difference from ``gains[k] * mix``.
    """

    def __init__(self, gains: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4), segment_s: float = 1.5) -> None:
        super().__init__()
        self.sources = ["drums", "bass", "other", "vocals"][: len(gains)]
        self.samplerate = 44100
        self.audio_channels = 2
        self.segment = segment_s
        self.register_buffer("gains", torch.tensor(gains, dtype=torch.float32))

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        return mix[:, None] * self.gains[None, :, None, None]


def harmonic_tone(pitches: list[int], note_s: float, sample_rate: int, *, harmonics: int = 6,
                  amplitude: float = 0.3) -> np.ndarray:
    """A line of notes (MIDI pitches, each ``note_s`` long) with decaying harmonics and soft edges."""
    n_note = int(note_s * sample_rate)
    t = np.arange(n_note) / sample_rate
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-1.5 * t) * np.minimum(1.0, (note_s - t) / 0.02)
    out = []
    for pitch in pitches:
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, harmonics + 1) if f0 * k < sample_rate / 2)
        out.append(amplitude * envelope * tone)
    return np.concatenate(out).astype(np.float32)


def drum_hits(duration_s: float, interval_s: float, sample_rate: int, seed: int = 1) -> np.ndarray:
    """Noise bursts (snare-like) and low thumps (kick-like) alternating every ``interval_s``."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(duration_s * sample_rate), dtype=np.float32)
    hit = int(0.15 * sample_rate)
    t = np.arange(hit) / sample_rate
    for index, start in enumerate(range(0, out.size - hit, int(interval_s * sample_rate))):
        if index % 2:
            burst = rng.standard_normal(hit) * np.exp(-t / 0.03) * 0.4
        else:
            burst = np.sin(2 * np.pi * 60 * t * np.exp(-t / 0.05)) * np.exp(-t / 0.06) * 0.6
        out[start:start + hit] += burst.astype(np.float32)
    return out


def band_parts(sample_rate: int = 22050) -> dict[str, np.ndarray]:
    """Eight seconds of a bass line, a melody and drums, each mono float32 of equal length."""
    bass = harmonic_tone([36, 43, 41, 38] * 4, 0.5, sample_rate, amplitude=0.35)
    melody = harmonic_tone([72, 74, 76, 77, 79, 77, 76, 74] * 2, 0.5, sample_rate, amplitude=0.2)
    drums = drum_hits(8.0, 0.25, sample_rate)
    n = min(bass.size, melody.size, drums.size)
    return {"bass": bass[:n], "vocals": melody[:n], "drums": drums[:n]}
