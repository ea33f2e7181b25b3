"""Dev-set evaluation of the transcription engines (a measuring tool, not a test).

Exports: load_clip_audio, load_gt, onset_f1, drum_class_f1, CASES, main.

Run: .venv/bin/python -m tests.helpers.engines_eval basic-pitch|transkun|drums [--clips ...]
Prints per-case note F1 (mir_eval, 50 ms onset, offsets ignored) and the
real-time factor (engine wall time / audio duration) with warm models.
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path

import numpy as np

DEVSET = Path(__file__).resolve().parents[2].parent / "shared" / "devset"

#: (case name, clip folder prefix, audio path inside the clip, gt part or None for all, instrument key)
CASES = {
    "basic-pitch": [
        ("01 flute", "01", "audio.*", None, "flute"),
        ("02 violin", "02", "audio.*", None, "violin"),
        ("09 guitar", "09", "audio.*", None, "guitar"),
        ("04 violin1", "04", "stems/violin1.ogg", "violin1", "violin"),
        ("04 violin2", "04", "stems/violin2.ogg", "violin2", "violin"),
        ("04 viola", "04", "stems/viola.ogg", "viola", "viola"),
        ("04 cello", "04", "stems/cello.ogg", "cello", "cello"),
        ("06 flute", "06", "stems/flute.ogg", "flute", "flute"),
        ("06 oboe", "06", "stems/oboe.ogg", "oboe", "oboe"),
        ("06 clarinet", "06", "stems/clarinet.ogg", "clarinet", "clarinet"),
        ("06 bassoon", "06", "stems/bassoon.ogg", "bassoon", "bassoon"),
        ("07 sax", "07", "stems/melody-alto-sax.ogg", "melody-alto-sax", "alto-sax"),
        ("07 piano", "07", "stems/comping-piano.ogg", "comping-piano", "piano"),
        ("07 bass", "07", "stems/bass.ogg", "bass", "bass"),
        ("08 fiddle", "08", "stems/melody-fiddle.ogg", "melody-fiddle", "violin"),
        ("08 guitar", "08", "stems/comping-guitar.ogg", "comping-guitar", "guitar"),
        ("08 bass", "08", "stems/bass.ogg", "bass", "bass"),
    ],
    "transkun": [
        ("03 piano", "03", "audio.*", None, "piano"),
        ("05 organ", "05", "audio.*", None, "organ"),
        ("10 piano", "10", "audio.*", None, "piano"),
    ],
    "drums": [
        ("07 drums", "07", "stems/drums.ogg", "drums", "drums"),
        ("08 drums", "08", "stems/drums.ogg", "drums", "drums"),
    ],
}


def clip_dir(prefix: str) -> Path:
    """The dev-set folder whose name starts with ``prefix``."""
    return next(DEVSET.glob(prefix + "-*"))


def load_clip_audio(prefix: str, pattern: str, sample_rate: int = 44100) -> np.ndarray:
    """Decode one dev-set file to float32 mono at ``sample_rate``."""
    import librosa

    path = next(clip_dir(prefix).glob(pattern))
    with warnings.catch_warnings():  # m4a/mp3 go through audioread, which librosa flags
        warnings.simplefilter("ignore")
        y, _ = librosa.load(str(path), sr=sample_rate, mono=True)
    return y.astype(np.float32)


def load_gt(prefix: str, part: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth (intervals, pitches) of one part, or all pitched parts when part is None."""
    rows = []
    with open(clip_dir(prefix) / "gt_notes.csv", newline="") as f:
        for r in csv.DictReader(f):
            p = r["part"].strip()
            if (part is None and p != "drums") or p == part:
                on = float(r["onset_s"])
                rows.append((on, max(float(r["offset_s"]), on + 1e-3), int(r["midi_pitch"])))
    arr = np.array(rows, dtype=float).reshape(-1, 3)
    return arr[:, :2], arr[:, 2]


def onset_f1(ref: tuple[np.ndarray, np.ndarray], notes) -> tuple[float, float, float]:
    """mir_eval (precision, recall, F1) at 50 ms onset tolerance, offsets ignored."""
    import mir_eval

    ref_iv, ref_p = ref
    if not notes:
        return 0.0, 0.0, 0.0
    est_iv = np.array([(n.start_s, max(n.end_s, n.start_s + 1e-3)) for n in notes])
    est_p = np.array([n.pitch for n in notes], dtype=float)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, mir_eval.util.midi_to_hz(ref_p), est_iv, mir_eval.util.midi_to_hz(est_p),
        onset_tolerance=0.05, offset_ratio=None)
    return p, r, f


def drum_class_f1(ref: tuple[np.ndarray, np.ndarray], notes, classes=(36, 38, 42, 46, 49, 51)) -> dict:
    """Per GM-pitch F1 of drum hits (50 ms onset), plus the pooled F1 under key 0."""
    out = {}
    for c in classes:
        sel = ref[1] == c
        mine = [n for n in notes if n.pitch == c]
        if not sel.any() and not mine:
            continue
        if not sel.any() or not mine:
            out[c] = (0.0, int(sel.sum()), len(mine))
            continue
        out[c] = (onset_f1((ref[0][sel], ref[1][sel]), mine)[2], int(sel.sum()), len(mine))
    out[0] = (onset_f1(ref, notes)[2], len(ref[1]), len(notes))
    return out


def main(argv: list[str] | None = None) -> int:
    """Evaluate one engine over its dev-set cases and print a table."""
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.instruments import INSTRUMENTS

    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=sorted(CASES))
    ap.add_argument("--cases", nargs="*", help="case name prefixes to keep, e.g. 04 06")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    cache = ModelCache(threads=args.threads)
    engine = cache.get(args.engine)
    fs = []
    for name, prefix, pattern, part, inst in CASES[args.engine]:
        if args.cases and not any(name.startswith(c) for c in args.cases):
            continue
        y = load_clip_audio(prefix, pattern)
        ref = load_gt(prefix, part)
        t0 = time.perf_counter()
        notes = engine.transcribe(y, 44100, instrument=INSTRUMENTS[inst])
        dt = time.perf_counter() - t0
        rtf = dt / (len(y) / 44100)
        if args.engine == "drums":
            per = drum_class_f1(ref, notes)
            txt = " ".join(f"{k}:{v[0]:.2f}({v[1]}/{v[2]})" for k, v in per.items() if k)
            print(f"{name:14s} F1 {per[0][0]:.3f}  {txt}  RTF {rtf:.3f}")
            fs.append(per[0][0])
        else:
            p, r, f = onset_f1(ref, notes)
            print(f"{name:14s} P {p:.3f} R {r:.3f} F1 {f:.3f}  n={len(notes)}/{len(ref[1])}  RTF {rtf:.3f}")
            fs.append(f)
    print(f"{'mean':14s} F1 {np.mean(fs):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
