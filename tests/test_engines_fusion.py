"""Tests of the fusion engine (core/engines/fusion.py): basic-pitch and transkun merged.

The merge rules run on constructed note lists and posteriors with known answers;
the engine's wiring runs on small stand-in component engines that return fixed
activations and notes (the components have their own tests in test_engines.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from stemscribe.core.engines import registry
from stemscribe.core.engines.fusion import (FusionEngine, FusionParams, Posteriors, fuse_notes, match_notes,
                                            merge_stutters, rise_onset)
from stemscribe.core.engines.reattack import HarmonicSpectrum
from stemscribe.core.instruments import INSTRUMENTS
from stemscribe.core.notes import Note

FPS = 100.0  # constructed posteriors: frame i is at i / 100 s
LOW = 21


def posteriors(seconds: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Silent (all-zero) frame and onset posteriors for ``seconds`` of audio."""
    n = int(seconds * FPS)
    return np.zeros((n, 88), np.float32), np.zeros((n, 88), np.float32)


def sound(frames: np.ndarray, onsets: np.ndarray, pitch: int, start_s: float, end_s: float,
          *, level: float = 0.8, onset: float = 0.9) -> None:
    """Write a note into constructed posteriors: frames at ``level``, an onset peak at its start."""
    col = pitch - LOW
    frames[int(start_s * FPS):int(end_s * FPS), col] = level
    onsets[int(start_s * FPS), col] = onset


def fuse(tk: list[Note], bp: list[Note], frames: np.ndarray, onsets: np.ndarray) -> list[tuple]:
    view = Posteriors(frames, onsets, frames_per_s=FPS, lowest_pitch=LOW)
    return [(n.start_s, n.end_s, n.pitch, n.velocity) for n in fuse_notes(tk, bp, view)]


# --------------------------------------------------------------------------- matching

def test_match_notes_pairs_same_pitch_closest_onsets_first():
    a = [Note(1.00, 1.5, 60), Note(1.04, 1.5, 60), Note(2.0, 2.5, 64), Note(3.0, 3.5, 67)]
    b = [Note(1.03, 1.4, 60), Note(2.0, 2.5, 65), Note(3.08, 3.5, 67)]
    # b[0] is 30 ms from a[0] but 10 ms from a[1]: a[1] gets it, a[0] stays alone.
    # Different pitch never pairs; 80 ms is beyond the 70 ms tolerance.
    assert match_notes(a, b, 0.07) == [(1, 0)]
    assert match_notes(a, b, 0.10) == [(1, 0), (3, 2)]
    assert match_notes([], b, 0.07) == [] and match_notes(a, [], 0.07) == []


# --------------------------------------------------------------------------- merge rules

def test_agreed_note_takes_transkun_onset_and_velocity_and_the_later_end():
    frames, onsets = posteriors()
    sound(frames, onsets, 60, 1.03, 2.0)
    tk = [Note(1.00, 1.40, 60, 70)]
    bp = [Note(1.03, 2.00, 60, 100)]
    assert fuse(tk, bp, frames, onsets) == [(1.00, 2.00, 60, 70)]


def test_unconfirmed_transkun_note_is_kept_unless_its_pitch_was_already_sounding():
    frames, onsets = posteriors()
    sound(frames, onsets, 67, 0.5, 2.0)  # a held note basic-pitch hears from 0.5 s on
    tk = [
        Note(1.00, 1.10, 62, 60),  # new pitch, basic-pitch silent before it: kept
        Note(1.20, 1.30, 67, 60),  # inside the held 67: a re-attack, dropped
    ]
    assert fuse(tk, [], frames, onsets) == [(1.00, 1.10, 62, 60)]


def test_unconfirmed_basic_pitch_note_needs_an_onset_peak_and_a_fresh_pitch_or_a_strong_attack():
    frames, onsets = posteriors()
    sound(frames, onsets, 64, 1.0, 1.5)                 # clear attack: kept
    sound(frames, onsets, 65, 2.0, 2.5, onset=0.3)      # frame energy only, no attack: dropped
    sound(frames, onsets, 69, 0.5, 3.0)                 # held from 0.5 s ...
    onsets[250, 69 - LOW] = 0.6                         # ... a weak second onset peak at 2.5 s: a bow change, dropped
    sound(frames, onsets, 71, 0.5, 3.0)                 # held from 0.5 s ...
    onsets[250, 71 - LOW] = 0.8                         # ... a strong one: the pitch repeated legato, kept
    bp = [Note(1.0, 1.5, 64, 90), Note(2.0, 2.5, 65, 90), Note(2.5, 3.0, 69, 90), Note(2.5, 3.0, 71, 90)]
    assert FusionParams().onset_level <= 0.6 < FusionParams().resound_onset <= 0.8
    assert fuse([], bp, frames, onsets) == [(1.0, 1.5, 64, 90), (2.5, 3.0, 71, 90)]


def test_unconfirmed_basic_pitch_note_an_octave_below_a_confirmed_one_is_a_ghost():
    frames, onsets = posteriors()
    for pitch in (72, 60, 84):
        sound(frames, onsets, pitch, 1.0, 1.5)
    tk = [Note(1.00, 1.5, 72, 80)]
    bp = [Note(1.00, 1.5, 72, 90),   # agrees with transkun
          Note(1.02, 1.5, 60, 90),   # an octave below, same attack: sub-octave ghost, dropped
          Note(1.02, 1.5, 84, 90)]   # an octave above: a doubling, kept
    assert fuse(tk, bp, frames, onsets) == [(1.0, 1.5, 72, 80), (1.02, 1.5, 84, 90)]


def test_stutters_of_short_repeated_notes_become_one_held_note():
    # A bowed G3 with vibrato, as transkun hears it: a 70 ms "strike" every 180 ms.
    stutter = [Note(1.0 + 0.18 * k, 1.07 + 0.18 * k, 55, 81) for k in range(6)]
    pair = [Note(3.0, 3.07, 60, 80), Note(3.2, 3.27, 60, 80)]          # two quick notes: a real repeat
    slow = [Note(4.0 + 0.4 * k, 4.07 + 0.4 * k, 62, 80) for k in range(3)]  # 400 ms apart: real notes
    long_then_short = [Note(6.0, 6.5, 64, 80)] + [Note(6.6 + 0.18 * k, 6.67 + 0.18 * k, 64, 80) for k in range(3)]
    merged = merge_stutters(stutter + pair + slow + long_then_short)
    assert [(round(n.start_s, 2), round(n.end_s, 2), n.pitch) for n in merged] == [
        (1.0, 1.97, 55), (3.0, 3.07, 60), (3.2, 3.27, 60), (4.0, 4.07, 62), (4.4, 4.47, 62), (4.8, 4.87, 62),
        (6.0, 6.5, 64), (6.6, 7.03, 64)]
    # Inside the fusion: the stutter is one note, kept though basic-pitch never hears G3.
    frames, onsets = posteriors()
    assert fuse(stutter, [], frames, onsets) == [(1.0, 1.97, 55, 81)]


def test_same_pitch_overlaps_are_cut_at_the_next_onset():
    frames, onsets = posteriors()
    sound(frames, onsets, 60, 1.0, 1.3)
    sound(frames, onsets, 60, 1.6, 2.5, onset=0.9)
    frames[130:160, 60 - LOW] = 0.0   # a gap before the second attack
    tk = [Note(1.0, 2.0, 60, 80)]     # transkun rings on past the next attack
    bp = [Note(1.0, 1.3, 60, 90), Note(1.6, 2.5, 60, 90)]
    assert fuse(tk, bp, frames, onsets) == [(1.0, 1.6, 60, 80), (1.6, 2.5, 60, 90)]


def test_posteriors_read_silence_outside_pitches_and_frames():
    frames, onsets = posteriors(1.0)
    frames[:, 0] = 0.5
    view = Posteriors(frames, onsets, frames_per_s=FPS, lowest_pitch=LOW)
    assert view.frame_mean(21, 0.2, 0.4) == pytest.approx(0.5)
    assert view.frame_mean(21, -0.5, -0.1) == 0.0      # before the signal
    assert view.frame_mean(21, 5.0, 6.0) == 0.0        # after it
    assert view.frame_mean(20, 0.2, 0.4) == 0.0        # below the model's keys
    assert view.onset_peak(109, 0.2, 0.4) == 0.0       # above them
    with pytest.raises(ValueError):
        Posteriors(frames, onsets[:10])


# --------------------------------------------------------------------------- onset refinement

SR = 22050
HOP = 256


def slow_attack_tone(pitch: int, onset_s: float, attack_s: float, seconds: float = 2.0) -> np.ndarray:
    """A harmonic tone (4 partials) silent before ``onset_s``, rising linearly in amplitude over ``attack_s``."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5))
    gain = np.clip((t - onset_s) / attack_s, 0.0, 1.0)
    return (0.3 * gain * tone).astype(np.float32)


def test_rise_onset_moves_a_late_onset_back_to_the_rise_of_its_harmonics():
    # A bowed-like 150 ms attack from 1.0 s; the model fired near its top, at 1.13 s.
    spectrum = HarmonicSpectrum(slow_attack_tone(60, 1.0, 0.15), SR, hop=HOP)
    refined = rise_onset(spectrum, 60, 1.13)
    assert 0.98 <= refined <= 1.06
    # A tone already at full strength (a steady envelope) gives no rise: the onset stays.
    steady = HarmonicSpectrum(slow_attack_tone(60, 0.0, 0.01), SR, hop=HOP)
    assert rise_onset(steady, 60, 1.13) == pytest.approx(1.13, abs=1.5 / steady.frame_rate)


def test_rise_onset_never_moves_later_and_keeps_notes_outside_the_signal():
    spectrum = HarmonicSpectrum(slow_attack_tone(60, 1.0, 0.01), SR, hop=HOP)
    assert rise_onset(spectrum, 60, 1.0) <= 1.0
    assert rise_onset(spectrum, 60, 0.5) == 0.5             # before the tone: nothing rises into it
    assert rise_onset(spectrum, 60, 5.0) == 5.0             # past the end
    silent = HarmonicSpectrum(np.zeros(SR, np.float32), SR, hop=HOP)
    assert rise_onset(silent, 60, 0.5) == 0.5


def test_fusion_refines_only_unconfirmed_basic_pitch_onsets():
    fps = SR / HOP
    audio = slow_attack_tone(60, 1.0, 0.15) + slow_attack_tone(67, 1.0, 0.15)
    spectrum = HarmonicSpectrum(audio, SR, hop=HOP)
    frames = np.zeros((int(2 * fps), 88), np.float32)
    onsets = np.zeros_like(frames)
    for pitch in (60, 67):
        frames[int(1.1 * fps):int(1.8 * fps), pitch - LOW] = 0.8
        onsets[int(round(1.13 * fps)), pitch - LOW] = 0.9
    view = Posteriors(frames, onsets)
    tk = [Note(1.1, 1.8, 67, 70)]                           # confirms the G (transkun's onset wins)
    bp = [Note(1.13, 1.8, 60, 90), Note(1.13, 1.8, 67, 90)]
    notes = {n.pitch: n for n in fuse_notes(tk, bp, view, FusionParams(), spectrum)}
    assert notes[67].start_s == 1.1
    assert 0.98 <= notes[60].start_s <= 1.06
    unrefined = {n.pitch: n for n in fuse_notes(tk, bp, view, FusionParams())}
    assert unrefined[60].start_s == 1.13


# --------------------------------------------------------------------------- engine wiring

class _StandInBasicPitch:
    """Fixed posteriors and notes in place of basic-pitch's model (records the calls)."""

    def __init__(self, frames: np.ndarray, onsets: np.ndarray, notes: list[Note]) -> None:
        self.out, self.notes, self.calls = (frames, onsets), notes, []

    def transcribe_with_activations(self, samples, sample_rate, *, instrument=None, progress=None, params=None):
        self.calls.append(("transcribe_with_activations", params))
        for f in (0.5, 0.9):
            progress(f)
        return list(self.notes), *self.out, None


class _StandInTranskun:
    def __init__(self, notes: list[Note]) -> None:
        self.notes, self.instruments = notes, []

    def transcribe(self, samples, sample_rate, *, instrument=None, progress=None):
        self.instruments.append(instrument)
        for f in (0.3, 0.95, 1.0):
            progress(f)
        return list(self.notes)


def test_fusion_engine_runs_each_model_once_and_reports_progress_across_both():
    # Real basic-pitch frames (86 per second) so the engine's default Posteriors read them.
    fps = 22050 / 256
    frames = np.zeros((int(3 * fps), 88), np.float32)
    onsets = np.zeros_like(frames)
    col = 64 - LOW
    frames[int(1.0 * fps):int(1.5 * fps), col] = 0.8
    onsets[int(round(1.0 * fps)), col] = 0.9
    bp = _StandInBasicPitch(frames, onsets, [Note(1.0, 1.5, 64, 90)])
    tk = _StandInTranskun([Note(0.5, 0.9, 60, 70)])
    engine = FusionEngine(bp, tk, FusionParams())
    seen: list[float] = []
    notes = engine.transcribe(np.zeros(3 * 22050, np.float32), 22050, progress=seen.append)
    assert [(n.pitch, n.start_s) for n in notes] == [(60, 0.5), (64, 1.0)]
    assert len(bp.calls) == 1  # one model run gives both the notes and the posteriors
    assert tk.instruments == [None]
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert max(f for f in seen if f <= 0.05) == pytest.approx(0.05)  # basic-pitch's share, then transkun's
    assert any(0.05 < f < 0.98 for f in seen)


def test_auto_reduces_mixes_with_fusion_and_explicit_engines_stay():
    assert registry.choose_engine("auto", None, mix_reduction=True) == "fusion"
    assert registry.choose_engine("basic-pitch", None, mix_reduction=True) == "basic-pitch"
    assert registry.choose_engine("transkun", None, mix_reduction=True) == "transkun"
    assert registry.choose_engine("auto", INSTRUMENTS["drums"], mix_reduction=True) == "drums"
    assert registry.choose_engine("auto", INSTRUMENTS["piano"]) == "transkun"
    assert "fusion" in registry.ENGINE_NAMES


def test_model_cache_builds_fusion_and_organ_from_its_own_engines():
    cache = registry.ModelCache(threads=1)
    fusion = cache.get("fusion")
    assert fusion.name == "fusion"
    assert fusion.basic_pitch is cache.get("basic-pitch") and fusion.transkun is cache.get("transkun")
    assert cache.get("fusion") is fusion
    organ = cache.get("organ")
    assert organ.name == "organ" and organ.basic_pitch is fusion.basic_pitch and organ.transkun is fusion.transkun
    assert cache.load_counts == {"basic-pitch": 1, "transkun": 1, "fusion": 1, "organ": 1, "drums": 0, "mono": 0}
