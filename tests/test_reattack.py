"""Tests of the repeated-note refinement (core/engines/reattack.py) on synthesized signals.

Each signal has a known answer: a tone re-attacked with short gaps must come out
as that many notes, a tone held with vibrato and tremolo must stay one note, a
held tone the decoder cut in two must be joined again. The module is driven
directly, with hand-made onset activations, so that the audio evidence alone
decides; one test runs the whole basic-pitch engine on slow-bowed repeats that
its decoder alone hears as one note.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from stemscribe.core.engines import registry
from stemscribe.core.engines.basic_pitch import params_for
from stemscribe.core.engines.reattack import HarmonicSpectrum, RepeatParams, refine_repeats
from stemscribe.core.instruments import INSTRUMENTS
from stemscribe.core.notes import Note

SR = 22050
HOP = 256
FPS = SR / HOP


def held_tone(segments: list[tuple[float, float]], midi: int, total_s: float, *, attack_s: float = 0.015,
              release_s: float = 0.02, vibrato_cents: float = 0.0, tremolo_db: float = 0.0, rate_hz: float = 5.5,
              seed: int = 0) -> np.ndarray:
    """A bowed-like tone (8 harmonics, 1/k) held over each (start_s, end_s), every segment a new attack.

    Each segment starts with a fresh random phase and a linear ``attack_s`` rise,
    and dies away exponentially over ``release_s`` after its end (overlapping
    the next one, as a sampled instrument's release does); vibrato and tremolo
    modulate pitch and loudness at ``rate_hz``.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(int(total_s * SR), dtype=np.float64)
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    for start, end in segments:
        i = int(start * SR)
        t = np.arange(min(int((end - start + release_s) * SR), len(out) - i)) / SR
        inst = f0 * 2 ** (vibrato_cents / 1200 * np.sin(2 * np.pi * rate_hz * t))
        phase = 2 * np.pi * np.cumsum(inst) / SR
        y = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9) if k * f0 < SR / 2)
        env = np.minimum(1.0, t / attack_s) * np.exp(-np.maximum(0.0, t - (end - start)) / (release_s / 4))
        env *= 10 ** (tremolo_db / 40 * np.sin(2 * np.pi * rate_hz * t + np.pi / 2))
        out[i:i + len(t)] += 0.2 * y * env
    return out.astype(np.float32)


def onset_track(n_frames: int, midi: int, peaks_s: list[float], *, height: float = 0.5) -> np.ndarray:
    """Onset activations (frames, 88) that are quiet except for a bump at each of ``peaks_s``."""
    onsets = np.full((n_frames, 88), 0.02, dtype=np.float32)
    bump = height * np.array([0.3, 0.7, 1.0, 0.7, 0.3], dtype=np.float32)
    for t in peaks_s:
        i = int(round(t * FPS))
        onsets[i - 2:i + 3, midi - 21] = np.maximum(onsets[i - 2:i + 3, midi - 21], bump)
    return onsets


def refine(y: np.ndarray, notes: list[Note], onsets: np.ndarray, **kw) -> list[Note]:
    """refine_repeats on ``y`` (at SR) with RepeatParams(**kw)."""
    return refine_repeats(notes, HarmonicSpectrum(y, SR, hop=HOP), onsets, params=RepeatParams(**kw))


@pytest.mark.parametrize("midi", [57, 69, 81])
def test_repeated_tone_with_short_gaps_splits_at_each_reattack(midi):
    starts = [0.3, 0.55, 0.8, 1.05, 1.3]
    y = held_tone([(s, s + 0.235) for s in starts], midi, 2.0)          # 15 ms gaps, bridged by the release
    merged = [Note(0.3, 1.535, midi, 90)]                                  # what the decoder made of it
    notes = refine(y, merged, onset_track(len(y) // HOP + 1, midi, starts, height=0.3))
    assert len(notes) == len(starts)
    assert all(abs(n.start_s - s) <= 0.05 for n, s in zip(notes, starts))
    assert notes[0].start_s == 0.3 and notes[-1].end_s == 1.535            # outer bounds kept
    assert all(a.end_s == b.start_s for a, b in zip(notes, notes[1:]))
    assert {(n.pitch, n.velocity) for n in notes} == {(midi, 90)}


def test_sustained_tone_with_vibrato_and_tremolo_stays_one_note():
    # Tremolo dips the envelope by 6 dB five times a second, and the onset
    # activation bumps at each trough: only the phase evidence can say no.
    y = held_tone([(0.3, 2.3)], 69, 2.6, vibrato_cents=30, tremolo_db=6)
    troughs = [0.3 + (k + 0.5) / 5.5 for k in range(10)]
    note = Note(0.3, 2.3, 69, 80)
    assert refine(y, [note], onset_track(len(y) // HOP + 1, 69, troughs, height=0.3)) == [note]


def test_no_split_without_a_dip_or_without_an_onset_rise():
    starts = [0.3, 0.55, 0.8]
    y = held_tone([(s, s + 0.235) for s in starts], 69, 1.3)
    merged = [Note(0.3, 1.035, 69, 90)]
    flat = onset_track(len(y) // HOP + 1, 69, [])
    assert refine(y, merged, flat) == merged                                # model saw no onsets at all
    steady = held_tone([(0.3, 1.035)], 69, 1.3)
    assert refine(steady, merged, onset_track(len(y) // HOP + 1, 69, starts[1:], height=0.3)) == merged


def test_fragments_of_one_held_tone_are_merged_but_true_repeats_are_not():
    y = held_tone([(0.3, 1.5)], 64, 1.8)
    onsets = onset_track(len(y) // HOP + 1, 64, [0.3, 0.9], height=0.65)  # weak spurious onset at 0.9
    fragments = [Note(0.3, 0.9, 64, 70), Note(0.9, 1.5, 64, 85)]
    assert refine(y, fragments, onsets) == [Note(0.3, 1.5, 64, 85)]
    # The same join with a confident onset, or over a real re-attack, is left alone.
    confident = onset_track(len(y) // HOP + 1, 64, [0.3, 0.9], height=0.95)
    assert refine(y, fragments, confident) == fragments
    repeated = held_tone([(0.3, 0.885), (0.9, 1.5)], 64, 1.8)
    assert refine(repeated, fragments, onsets) == fragments
    # Other pitches in between do not stop a merge of the held one.
    other = fragments[:1] + [Note(0.6, 0.8, 71, 60)] + fragments[1:]
    assert refine(y, other, onsets) == [Note(0.3, 1.5, 64, 85), Note(0.6, 0.8, 71, 60)]


def test_edge_cases_pass_notes_through():
    y = held_tone([(0.1, 0.4)], 69, 0.5)
    onsets = onset_track(len(y) // HOP + 1, 69, [0.1])
    assert refine(y, [], onsets) == []
    short = [Note(0.1, 0.2, 69, 80)]                                       # too short to hold a repeat
    assert refine(y, short, onsets) == short
    beyond = [Note(0.1, 0.4, 120, 80)]                                      # outside the model's pitches
    assert refine(y, beyond, onsets) == beyond
    assert refine(np.zeros(100, np.float32), short, onsets) == short        # no audio to speak of


def test_spectrum_frames_follow_the_model_grid_and_are_fast():
    y = np.random.default_rng(1).standard_normal(SR * 60).astype(np.float32) * 0.1
    t0 = time.perf_counter()
    spectrum = HarmonicSpectrum(y, SR, hop=HOP)
    assert time.perf_counter() - t0 < 2.0                                   # ~20 ms warm; generous for CI
    assert spectrum.n_frames == int(np.ceil(len(y) / HOP)) and spectrum.frame_rate == pytest.approx(FPS)
    # A tone starting at 1 s is centred in frame 1 s * FPS, not a window later.
    tone = held_tone([(1.0, 2.0)], 69, 3.0)
    env, _ = HarmonicSpectrum(tone, SR, hop=HOP).evidence(69, 0, int(3 * FPS), 5)
    rise = int(np.argmax(np.diff(env))) / FPS
    assert abs(rise - 1.0) < 0.03
    assert HarmonicSpectrum(tone, SR).harmonic_bins(69, 5).tolist() == [20, 41, 61, 82, 102]
    assert HarmonicSpectrum(tone, SR).evidence(130, 0, 10, 5) is None       # all harmonics above Nyquist


@pytest.fixture(scope="module")
def models() -> registry.ModelCache:
    return registry.ModelCache(threads=2)


def test_basic_pitch_engine_splits_slow_bowed_repeats(models):
    # Slow attacks under the previous note's release: the decoder alone hears one
    # long note; the refinement recovers every re-attack.
    starts = [0.4, 0.65, 0.9, 1.15, 1.4, 1.65]
    y = held_tone([(s, s + 0.24) for s in starts], 69, 2.3, attack_s=0.06, release_s=0.12)
    engine = models.get("basic-pitch")
    violin = params_for(INSTRUMENTS["violin"])
    plain = [n for n in engine.transcribe(y, SR, params=replace(violin, repeats=False)) if n.pitch == 69]
    assert len(plain) < len(starts)
    notes = [n for n in engine.transcribe(y, SR, params=violin) if n.pitch == 69]
    assert len(notes) == len(starts)
    assert all(abs(n.start_s - s) <= 0.05 for n, s in zip(notes, starts))
    # Crisp repeats the decoder already separates stay separate (no merging).
    crisp = held_tone([(s, s + 0.235) for s in starts], 69, 2.3)
    assert len([n for n in engine.transcribe(crisp, SR, params=violin) if n.pitch == 69]) == len(starts)
    held = held_tone([(0.4, 1.9)], 69, 2.3, vibrato_cents=25, tremolo_db=4)
    assert len([n for n in engine.transcribe(held, SR, params=violin) if n.pitch == 69]) == 1
