"""Render short test recordings from note lists with numpy (no sound fonts needed).

Exports: render_notes, write_audio, melody_notes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 44100


def render_notes(notes, *, duration_s=None, sample_rate=SAMPLE_RATE_HZ, seed=0, cents=0.0):
    """notes: iterable of (start_s, end_s, midi_pitch[, velocity]) -> mono float32 samples.

    Each note is a few decaying harmonics with a short attack, loud enough for
    any transcription engine, quiet enough not to clip when chords stack.
    ``cents`` tunes the whole recording away from A4 = 440 Hz (positive: sharp).
    """
    notes = [tuple(n) for n in notes]
    end = duration_s or (max(n[1] for n in notes) + 0.5)
    out = np.zeros(int(end * sample_rate), dtype=np.float64)
    rng = np.random.default_rng(seed)
    for n in notes:
        start, stop, pitch = n[0], n[1], n[2]
        vel = n[3] if len(n) > 3 else 90
        length = int((stop - start) * sample_rate)
        t = np.arange(length) / sample_rate
        f0 = 440.0 * 2 ** ((pitch - 69) / 12 + cents / 1200)
        tone = sum(a * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) for k, a in ((1, 1), (2, .5), (3, .25), (4, .12)))
        env = np.minimum(t / 0.01, 1) * np.exp(-t * 1.5) * np.clip((stop - start - t) / 0.03, 0, 1)
        i = int(start * sample_rate)
        out[i:i + length] += (vel / 127) * 0.25 * tone * env
    return (out / max(1.0, np.abs(out).max() / 0.8)).astype(np.float32)


def write_audio(path, samples, *, sample_rate=SAMPLE_RATE_HZ):
    """Encode mono float samples to any format ffmpeg knows from the file extension."""
    path = Path(path)
    codec = {".ogg": ["-c:a", "libopus", "-b:a", "64k"], ".opus": ["-c:a", "libopus"], ".mp3": ["-c:a", "libmp3lame"],
             ".m4a": ["-c:a", "aac"], ".flac": [], ".wav": [], ".webm": ["-c:a", "libopus"]}.get(path.suffix, [])
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "-",
                    *codec, str(path)], input=np.asarray(samples, dtype=np.float32).tobytes(), check=True)
    return path


def melody_notes(*, tempo_bpm=100.0, lead_in_s=0.5, pitches=(60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72),
                 beats=None):
    """A simple melody in quarter notes (or given beat lengths): [(start_s, end_s, pitch)]."""
    beat_s = 60.0 / tempo_bpm
    beats = beats or [1] * len(pitches)
    out, t = [], lead_in_s
    for p, b in zip(pitches, beats):
        out.append((t, t + b * beat_s * 0.9, p))
        t += b * beat_s
    return out
