"""basic-pitch (Spotify, ICASSP 2022) on onnxruntime, tuned per instrument.

Exports: BasicPitchEngine, BasicPitchParams, BasicPitchRun, params_for, model_path.

The bundled ``nmp.onnx`` runs directly on in-memory audio: no files, no MIDI (the
package's MIDI is always 120 bpm; we only want seconds). Windows of 2 s overlap
so that their kept centres tile the signal exactly, and are batched through one
InferenceSession per engine. Notes are decoded with basic-pitch's own
``output_to_notes_polyphonic``; for monophonic instruments a clean-up keeps one
note at a time. Repeated notes of one pitch are then checked against the audio
(reattack.py): re-attacks the decoder merged are split, fragments it split with
no re-attack between them are merged.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..instruments import Instrument
from ..notes import Note
from .base import ProgressFn, clamp_velocity, report_progress, resample_mono, sort_notes
from .reattack import HarmonicSpectrum, refine_repeats

#: Sample rate the model was trained at.
MODEL_SAMPLE_RATE_HZ = 22050
#: Model hop between output frames, in samples.
FRAME_HOP_SAMPLES = 256
#: Samples per model input window (2 s minus one hop).
WINDOW_SAMPLES = 2 * MODEL_SAMPLE_RATE_HZ - FRAME_HOP_SAMPLES
#: Output frames per window.
WINDOW_FRAMES = 172
#: Output frames dropped at each window edge (context the model sees only one side of).
EDGE_FRAMES = 15
#: Kept frames per window; windows advance by exactly this many hops.
KEPT_FRAMES = WINDOW_FRAMES - 2 * EDGE_FRAMES
#: Windows fed to onnxruntime per call.
BATCH_WINDOWS = 8
#: Lowest MIDI pitch of the model's 88 note bins.
MODEL_LOWEST_PITCH = 21

_ONNX_INPUT = "serving_default_input_2:0"
_ONNX_OUTPUTS = ("StatefulPartitionedCall:1", "StatefulPartitionedCall:2")  # note frames, onsets


def model_path() -> Path:
    """Path of basic-pitch's bundled ``nmp.onnx`` (found without importing the package).

    Raises:
        ModuleNotFoundError: basic-pitch is not installed.
        FileNotFoundError: the package has no ONNX model.
    """
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("basic-pitch is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "saved_models" / "icassp_2022" / "nmp.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"basic-pitch ONNX model missing: {path}")
    return path


class _FromPackage(logging.Filter):
    """Rejects log records emitted by code inside one installed package."""

    def __init__(self, package: str) -> None:
        super().__init__()
        self.marker = f"{os.sep}{package}{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        return self.marker not in record.pathname


def _note_creation():
    """Import basic_pitch.note_creation without its import-time noise.

    basic_pitch/__init__ calls ``logging.warning`` on the root logger for each
    optional backend it lacks (TensorFlow, CoreML, TFLite; we run its ONNX model),
    and resampy, which it imports, warns that ``pkg_resources`` is deprecated.
    Neither says anything a stemscribe user can act on, so both are dropped here,
    at the one place they come from, instead of reaching every CLI run's stderr.
    On an unconfigured root logger the import would also install a stderr handler
    behind the application's back; a NullHandler stands in while it runs.
    """
    root = logging.getLogger()
    quiet = _FromPackage("basic_pitch")
    guard = logging.NullHandler()
    added = not root.handlers
    if added:
        root.addHandler(guard)
    root.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            from basic_pitch import note_creation
    finally:
        root.removeFilter(quiet)
        if added:
            root.removeHandler(guard)
    return note_creation


@dataclass(frozen=True, slots=True)
class BasicPitchParams:
    """Decoding settings for one kind of material.

    onset_threshold / frame_threshold: model activations (0..1) that start / sustain a note.
    min_note_s: shorter notes are dropped.
    low / high: MIDI pitch range kept.
    melodia: basic-pitch's "melodia trick" (extra notes from sustained frame energy).
    monophonic: keep one note at a time (melody instruments).
    repeats: split re-attacked and merge fragmented same-pitch notes from the
        audio (reattack.refine_repeats; transcribe() only, decode() has no audio).
    wavering: join a held note that wavers across a semitone boundary (merge_wavering;
        singers, whose vibrato on a note sung between two keys reads as a trill).
    """

    onset_threshold: float = 0.6
    frame_threshold: float = 0.5
    min_note_s: float = 0.058
    low: int = 21
    high: int = 108
    melodia: bool = True
    monophonic: bool = False
    repeats: bool = True
    wavering: bool = False


#: Per instrument family; tuned on the dev set's solo clips and perfect stems
#: (tests/helpers/engines_eval.py). A grid over onset 0.4..0.8, frame 0.3..0.5,
#: min length 58..130 ms and melodia on/off gave one setting best on the mean
#: (note F1 0.86 vs 0.67 with basic-pitch's own 0.5 / 0.3 / 128 ms). Per family,
#: only bowed strings gained clearly from their own (onset 0.7: 0.747 -> 0.784 over
#: six string parts, every violin part better); a family gets an entry here only
#: when it measures better by more than 0.02.
_FAMILY_PARAMS: dict[str, BasicPitchParams] = {
    "default": BasicPitchParams(),
    "strings": BasicPitchParams(onset_threshold=0.7),
}


#: Several voices singing together (auto mode's sung reduction): basic-pitch's own
#: defaults (onset 0.5, frame 0.3, 128 ms), not the family settings measured on
#: synthesized instruments. On the real SATB choir of ../shared/realset: note F1 0.234
#: against 0.117 with the default family settings (the two-model fusion: 0.203).
VOICES_PARAMS = BasicPitchParams(onset_threshold=0.5, frame_threshold=0.3, min_note_s=0.128)


class BasicPitchRun(NamedTuple):
    """One basic-pitch run over a recording: its notes and what they were read from.

    notes: decoded with the run's settings. frames / onsets: the model's posteriors
    (frames x 88). spectrum: the recording's HarmonicSpectrum on the model's frame grid.
    Any other settings can be decoded from it with ``BasicPitchEngine.redecode``.
    """

    notes: list[Note]
    frames: np.ndarray
    onsets: np.ndarray
    spectrum: HarmonicSpectrum


def params_for(instrument: Instrument | None) -> BasicPitchParams:
    """Decoding settings for ``instrument`` (generic ones when None).

    Args:
        instrument: the instrument playing, or None for unknown material.

    Returns:
        BasicPitchParams with the instrument's range and polyphony applied.
    """
    if instrument is None:
        return _FAMILY_PARAMS["default"]
    base = _FAMILY_PARAMS.get(instrument.family, _FAMILY_PARAMS["default"])
    # Bowed strings play double stops, so one-note-at-a-time costs them more than it saves.
    monophonic = not instrument.polyphonic and instrument.family != "strings"
    return replace(base, low=max(21, instrument.low), high=min(108, instrument.high), monophonic=monophonic,
                   wavering=instrument.family == "voice")


class BasicPitchEngine:
    """basic-pitch on onnxruntime; one session, shared by every call.

    Args:
        threads: onnxruntime intra-op threads (0 = onnxruntime's default).
        path: ONNX file; defaults to basic-pitch's bundled model.

    Raises:
        ModuleNotFoundError / FileNotFoundError: basic-pitch or its model is missing.
    """

    name = "basic-pitch"

    def __init__(self, *, threads: int = 0, path: Path | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(0, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path or model_path()), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        self._nc = _note_creation()
        # onnxruntime sessions are thread-safe, but two jobs would just fight over cores.
        self._lock = threading.Lock()

    def activations(self, samples_mono: np.ndarray, sample_rate: int,
                    progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run the model; frame i of the result is centred at i * 256 / 22050 s.

        Args:
            samples_mono: float32 mono audio.
            sample_rate: its rate in Hz.
            progress: fraction-done callback.

        Returns:
            (frames, onsets), each float32 of shape (n_frames, 88), pitch 21 first.
        """
        return self._activations(resample_mono(samples_mono, sample_rate, MODEL_SAMPLE_RATE_HZ), progress)

    def _activations(self, x: np.ndarray, progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray]:
        """activations() of float32 mono audio already at MODEL_SAMPLE_RATE_HZ."""
        n_frames = int(np.ceil(len(x) / FRAME_HOP_SAMPLES))
        hop = KEPT_FRAMES * FRAME_HOP_SAMPLES
        n_windows = max(1, int(np.ceil(n_frames / KEPT_FRAMES)))
        # Lead padding puts kept frame 0 of window 0 at time 0.
        lead = EDGE_FRAMES * FRAME_HOP_SAMPLES
        padded = np.zeros(lead + n_windows * hop + WINDOW_SAMPLES, dtype=np.float32)
        padded[lead:lead + len(x)] = x
        windows = np.lib.stride_tricks.sliding_window_view(padded, WINDOW_SAMPLES)[::hop][:n_windows]
        frames, onsets = [], []
        with self._lock:
            for b in range(0, n_windows, BATCH_WINDOWS):
                batch = np.ascontiguousarray(windows[b:b + BATCH_WINDOWS])[..., None]
                note_out, onset_out = self._session.run(list(_ONNX_OUTPUTS), {_ONNX_INPUT: batch})
                frames.append(note_out[:, EDGE_FRAMES:EDGE_FRAMES + KEPT_FRAMES])
                onsets.append(onset_out[:, EDGE_FRAMES:EDGE_FRAMES + KEPT_FRAMES])
                report_progress(progress, 0.9 * min(n_windows, b + BATCH_WINDOWS) / n_windows)
        frames_all = np.concatenate(frames).reshape(-1, 88)[:n_frames]
        onsets_all = np.concatenate(onsets).reshape(-1, 88)[:n_frames]
        return frames_all, onsets_all

    def transcribe(
        self,
        samples_mono: np.ndarray,
        sample_rate: int,
        *,
        instrument: Instrument | None = None,
        progress: ProgressFn | None = None,
        params: BasicPitchParams | None = None,
    ) -> list[Note]:
        """Transcribe pitched notes.

        Args:
            samples_mono: float32 mono audio.
            sample_rate: its rate in Hz.
            instrument: tunes range, thresholds and monophony (see params_for).
            progress: fraction-done callback.
            params: explicit decoding settings (overrides ``instrument``'s).

        Returns:
            Notes in seconds of the input, sorted by start.
        """
        notes, _, _, _ = self.transcribe_with_activations(samples_mono, sample_rate, instrument=instrument,
                                                       progress=progress, params=params)
        report_progress(progress, 1.0)
        return notes

    def transcribe_with_activations(
        self,
        samples_mono: np.ndarray,
        sample_rate: int,
        *,
        instrument: Instrument | None = None,
        progress: ProgressFn | None = None,
        params: BasicPitchParams | None = None,
    ) -> "BasicPitchRun":
        """transcribe(), also returning what the notes were read from.

        For callers that weigh the notes against the model's posteriors or the
        audio's harmonics (the fusion engine) without running the model or the
        STFT twice.

        Returns:
            (notes, frames, onsets, spectrum): frames and onsets as from
            activations(); spectrum the recording's HarmonicSpectrum on the
            model's frame grid.
        """
        p = params or params_for(instrument)
        x = resample_mono(samples_mono, sample_rate, MODEL_SAMPLE_RATE_HZ)
        frames, onsets = self._activations(x, progress)
        spectrum = HarmonicSpectrum(x, MODEL_SAMPLE_RATE_HZ, hop=FRAME_HOP_SAMPLES)
        return BasicPitchRun(self.redecode(frames, onsets, spectrum, params=p), frames, onsets, spectrum)

    def redecode(self, frames: np.ndarray, onsets: np.ndarray, spectrum: HarmonicSpectrum, *,
                 instrument: Instrument | None = None, params: BasicPitchParams | None = None) -> list[Note]:
        """Notes from activations already computed (transcribe_with_activations), for other settings.

        Auto mode listens once with generic settings and, once it knows the recording is a
        melody line, reads the same activations with the melody settings.

        Args:
            frames, onsets, spectrum: as transcribe_with_activations returned them.
            instrument / params: the settings, as for transcribe().

        Returns:
            Notes sorted by start, as transcribe() would have given for the same audio.
        """
        p = params or params_for(instrument)
        notes = self.decode(frames, onsets, p)
        if p.repeats and notes:
            notes = refine_repeats(notes, spectrum, onsets, lowest_pitch=MODEL_LOWEST_PITCH)
        return notes

    def decode(self, frames: np.ndarray, onsets: np.ndarray, p: BasicPitchParams) -> list[Note]:
        """Turn model activations into notes with basic-pitch's polyphonic decoder.

        Args:
            frames, onsets: from activations().
            p: decoding settings.

        Returns:
            Notes sorted by start.
        """
        if frames.shape[0] < 3:
            return []
        fps = MODEL_SAMPLE_RATE_HZ / FRAME_HOP_SAMPLES
        min_len = max(1, int(round(p.min_note_s * fps)))
        events = self._nc.output_to_notes_polyphonic(
            frames, onsets, onset_thresh=p.onset_threshold, frame_thresh=p.frame_threshold,
            min_note_len=min_len, infer_onsets=True,
            max_freq=float(440.0 * 2 ** ((p.high + 0.5 - 69) / 12)),
            min_freq=float(440.0 * 2 ** ((p.low - 0.5 - 69) / 12)),
            melodia_trick=p.melodia)
        notes = [Note(start_s=s / fps, end_s=e / fps, pitch=int(pitch),
                      velocity=clamp_velocity(127 * float(amp)))
                 for s, e, pitch, amp in events if p.low <= pitch <= p.high]
        notes = sort_notes(notes)
        if p.monophonic:
            notes = monophonic_cleanup(notes)
        if p.wavering:
            notes = merge_wavering(notes, frames, fps)
        return notes


def monophonic_cleanup(notes: list[Note], *, chord_window_s: float = 0.05,
                       ghost_ratio: float = 0.6) -> list[Note]:
    """Keep one note sounding at a time (melody instruments).

    Onsets closer than ``chord_window_s`` are one attack: the loudest note wins
    (the others are octave or harmonic ghosts). A later note that starts inside a
    louder one and is quieter than ``ghost_ratio`` times it, ending before it, is
    a ghost too. Otherwise a new note cuts the previous one off.

    Args:
        notes: sorted by start.
        chord_window_s: onsets this close count as simultaneous.
        ghost_ratio: velocity ratio under which a contained note is dropped.

    Returns:
        Notes sorted by start, no two overlapping.
    """
    kept: list[Note] = []
    for n in notes:
        if not kept or n.start_s >= kept[-1].end_s:
            kept.append(n)
            continue
        cur = kept[-1]
        if n.start_s - cur.start_s < chord_window_s:
            if n.velocity > cur.velocity:
                kept[-1] = n
            continue
        if n.velocity < ghost_ratio * cur.velocity and n.end_s <= cur.end_s + chord_window_s:
            continue
        kept[-1] = replace(cur, end_s=n.start_s)
        kept.append(n)
    return kept


#: merge_wavering: notes closer than this are one sung line without a break ...
WAVER_GAP_S = 0.04
#: ... a wavering note crosses between its two semitones at least this many times ...
WAVER_MIN_CHANGES = 2
#: ... in pieces this short on average (a vibrato's half-cycle is 80-100 ms; a note sung
#: right on the boundary breaks into pieces of up to about a quarter of a second).
WAVER_MAX_MEAN_S = 0.3


def merge_wavering(notes: list[Note], frames: np.ndarray, fps: float) -> list[Note]:
    """Join a sung note that wavers across a semitone boundary into one note.

    A singer holding a note between two keys, with vibrato, crosses the boundary
    five or six times a second, and the decoder writes a trill: G, F#, G, F#...
    A run of touching notes on exactly two adjacent semitones that changes pitch at
    least WAVER_MIN_CHANGES times, in pieces averaging under WAVER_MAX_MEAN_S, becomes
    one note, on the semitone that the model heard more of over the run.

    Args:
        notes: a monophonic line, sorted by start.
        frames: basic-pitch's frame posteriors the notes were decoded from.
        fps: their frame rate.

    Returns:
        Notes sorted by start.
    """
    out: list[Note] = []
    i = 0
    while i < len(notes):
        j, pitches = i + 1, {notes[i].pitch}
        while (j < len(notes) and notes[j].start_s - notes[j - 1].end_s <= WAVER_GAP_S
               and max(pitches | {notes[j].pitch}) - min(pitches | {notes[j].pitch}) <= 1):
            pitches.add(notes[j].pitch)
            j += 1
        run = notes[i:j]
        changes = sum(a.pitch != b.pitch for a, b in zip(run, run[1:]))
        mean_s = (run[-1].end_s - run[0].start_s) / len(run)
        if len(pitches) == 2 and changes >= WAVER_MIN_CHANGES and mean_s <= WAVER_MAX_MEAN_S:
            a = int(run[0].start_s * fps)
            b = max(a + 1, int(round(run[-1].end_s * fps)))
            heard = {q: float(frames[a:b, q - MODEL_LOWEST_PITCH].sum()) for q in pitches}
            merged = Note(run[0].start_s, run[-1].end_s, max(heard, key=heard.get), max(n.velocity for n in run))
            # The held note may have started (or go on) steadily on the chosen semitone.
            if out and out[-1].pitch == merged.pitch and merged.start_s - out[-1].end_s <= WAVER_GAP_S:
                merged = replace(merged, start_s=out.pop().start_s)
            if j < len(notes) and notes[j].pitch == merged.pitch and notes[j].start_s - merged.end_s <= WAVER_GAP_S:
                merged = replace(merged, end_s=notes[j].end_s)
                j += 1
            out.append(merged)
        else:
            out.extend(run)
        i = j
    return out
