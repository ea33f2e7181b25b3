"""Render the bundled example clip: the 'Ode to Joy' theme on a synthetic flute.

Beethoven's melody (public domain), 8 bars of 4/4 at 100 bpm in C major, with a
little timing and loudness humanisation, breath noise and vibrato, encoded as
OGG/Opus like a chat voice note. Run: python examples/make_example.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 44100
TEMPO_BPM = 100.0
LEAD_IN_S = 0.4
# (MIDI pitch, beats) — E E F G | G F E D | C C D E | E. D D2 | E E F G | G F E D | C C D E | D. C C2
MELODY = [
    (64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1),
    (60, 1), (60, 1), (62, 1), (64, 1), (64, 1.5), (62, 0.5), (62, 2),
    (64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1),
    (60, 1), (60, 1), (62, 1), (64, 1), (62, 1.5), (60, 0.5), (60, 2),
]


def flute_tone(pitch: int, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """One breathy, slightly vibrato flute-like note."""
    n = int(duration_s * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.2 * t) * np.clip(t / 0.3, 0, 1)
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / SAMPLE_RATE_HZ
    tone = sum(a * np.sin(k * phase) for k, a in ((1, 1.0), (2, 0.35), (3, 0.12), (4, 0.05)))
    attack = np.clip(t / 0.04, 0, 1)
    release = np.clip((duration_s - t) / 0.06, 0, 1)
    breath = rng.normal(0, 0.02, n) * attack
    return (tone + breath) * attack * release


def render() -> np.ndarray:
    rng = np.random.default_rng(7)
    beat_s = 60.0 / TEMPO_BPM
    total_beats = sum(b for _, b in MELODY)
    out = np.zeros(int((LEAD_IN_S + total_beats * beat_s + 1.0) * SAMPLE_RATE_HZ))
    t = LEAD_IN_S
    for pitch, beats in MELODY:
        start = t + rng.normal(0, 0.008)
        dur = beats * beat_s * 0.92
        note = flute_tone(pitch, dur, rng) * rng.uniform(0.75, 0.95)
        i = int(start * SAMPLE_RATE_HZ)
        out[i:i + note.size] += note
        t += beats * beat_s
    room = np.exp(-np.arange(int(0.25 * SAMPLE_RATE_HZ)) / (0.05 * SAMPLE_RATE_HZ)) * rng.normal(0, 1, int(0.25 * SAMPLE_RATE_HZ))
    out = out + 0.02 * np.convolve(out, room)[: out.size]
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def main(path: str = str(Path(__file__).resolve().parent.parent / "stemscribe" / "examples" / "ode-to-joy-flute.ogg")) -> None:
    audio = render()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(SAMPLE_RATE_HZ), "-ac", "1", "-i", "-",
         "-c:a", "libopus", "-b:a", "48k", path],
        input=audio.tobytes(), check=True,
    )
    print(path)


if __name__ == "__main__":
    main(*sys.argv[1:])
