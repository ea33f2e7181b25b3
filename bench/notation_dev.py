#!/usr/bin/env python3
"""Dev harness for core.notation on ../shared/devset, scored by ../shared/bench/score.py.

For every clip it builds Tracks from (a) the ground-truth performed notes
(gt_notes.csv; part "drums" becomes a drum track) or (b) basic-pitch's own
transcription (cached under --cache), runs notate() with the layout the clip's
category calls for, writes OUTDIR/<clip>/{score.musicxml, score.mid, notes.mid,
result.json} and prints score.py's table. With --source run it re-notates what
the real pipeline transcribed (notes.mid and result.json of a bench/run_devset.py
output folder, one track per MIDI track, with the pipeline's layout), so that
notation changes are measured on the engines' notes in seconds, without
re-running the engines.

    .venv/bin/python bench/notation_dev.py --source gt --out /tmp/notation_gt
    .venv/bin/python bench/notation_dev.py --source bp --out /tmp/notation_bp [--clips 02,09]
    .venv/bin/python bench/notation_dev.py --source run --run-root bench/results/stemscribe --out /tmp/notation_run

Layouts: solo -> solo (instrument from meta); piano -> solo with the piano
instrument (grand staff); ensemble -> ensemble of the stems; band-mix ->
ensemble of the stems, or --band-mix piano for a piano reduction of the mix.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import numpy as np
import pretty_midi

from stemscribe.core.instruments import INSTRUMENTS
from stemscribe.core.notation import notate, write_midi, write_musicxml
from stemscribe.core.notes import Note, Track
from stemscribe.core.options import Options

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT.parent / "shared" / "devset"
SCORER = ROOT.parent / "shared" / "bench" / "score.py"

_PROGRAM_INSTRUMENT = {0: "piano", 19: "organ", 24: "guitar", 25: "guitar", 33: "bass", 40: "violin",
                       41: "viola", 42: "cello", 65: "alto-sax", 68: "oboe", 70: "bassoon", 71: "clarinet",
                       73: "flute"}


def part_instrument(part: dict) -> str:
    if part.get("clef") == "percussion" or part["name"] == "drums":
        return "drums"
    return _PROGRAM_INSTRUMENT.get(int(part.get("gm_program", 0)), "piano")


def gt_notes(clip: Path) -> dict[str, list[Note]]:
    out: dict[str, list[Note]] = {}
    with open(clip / "gt_notes.csv") as f:
        for r in csv.DictReader(f):
            out.setdefault(r["part"], []).append(
                Note(float(r["onset_s"]), float(r["offset_s"]), int(r["midi_pitch"]), int(r["velocity"])))
    return out


def bp_notes(clip: Path, rel: str, cache: Path) -> list[Note]:
    name = "mix" if rel == "audio" else "stem_" + rel
    path = cache / clip.name / f"{name}.json"
    if not path.exists():
        from basic_pitch import ICASSP_2022_MODEL_PATH
        from basic_pitch.inference import predict
        meta = json.loads((clip / "meta.json").read_text())
        audio = clip / (meta["audio"] if rel == "audio" else f"stems/{rel}.ogg")
        _, _, events = predict(str(audio), ICASSP_2022_MODEL_PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([[float(e[0]), float(e[1]), int(e[2]), float(e[3])] for e in events]))
    rows = json.loads(path.read_text())
    return [Note(r[0], r[1], int(r[2]), max(1, min(127, int(round(r[3] * 127))))) for r in rows]


def load_audio(path: Path, sr: int = 22050) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32).copy()


def clip_tracks(clip: Path, meta: dict, source: str, band_mix: str, cache: Path) -> tuple[list[Track], str]:
    cat = meta["category"]
    parts = meta["parts"]
    gt = gt_notes(clip) if source == "gt" else None
    use_stems = cat == "ensemble" or (cat == "band-mix" and band_mix == "stems")
    if use_stems:
        tracks = []
        for p in parts:
            inst = part_instrument(p)
            if source == "gt":
                notes = gt.get(p["name"], [])
            elif inst == "drums":
                notes = gt.get("drums", []) if gt else []
                if not notes:
                    continue  # basic-pitch does not transcribe drums; the drums engine does
            else:
                notes = bp_notes(clip, p["name"], cache)
            tracks.append(Track(p["name"], inst, notes, f"stem:{p['name']}", source, inst == "drums"))
        return tracks, "ensemble"
    if cat == "band-mix":
        notes = [n for k, v in gt.items() if k != "drums" for n in v] if source == "gt" else bp_notes(clip, "audio", cache)
        return [Track("Piano", "piano", notes, "mix", source)], "piano"
    if cat == "piano":
        inst = "organ" if parts[0].get("gm_program") == 19 else "piano"
        notes = [n for v in gt.values() for n in v] if source == "gt" else bp_notes(clip, "audio", cache)
        return [Track(INSTRUMENTS[inst].name, inst, notes, "mix", source)], "solo"
    inst = part_instrument(parts[0])
    notes = [n for v in gt.values() for n in v] if source == "gt" else bp_notes(clip, "audio", cache)
    return [Track(INSTRUMENTS[inst].name, inst, notes, "mix", source)], "solo"


def run_tracks(run_dir: Path) -> tuple[list[Track], str]:
    """Tracks and layout of a pipeline run, from its notes.mid and result.json."""
    result = json.loads((run_dir / "result.json").read_text())
    parts = {p["name"]: p for p in result.get("parts", [])}
    tracks = []
    for inst in pretty_midi.PrettyMIDI(str(run_dir / "notes.mid")).instruments:
        part = parts.get(inst.name, {})
        key = "drums" if inst.is_drum else part.get("instrument") or _PROGRAM_INSTRUMENT.get(inst.program, "piano")
        notes = [Note(float(n.start), float(n.end), int(n.pitch), int(n.velocity)) for n in inst.notes]
        tracks.append(Track(inst.name, key, notes, part.get("source", "mix"), part.get("engine", ""), inst.is_drum))
    return tracks, result.get("layout", "solo")


def write_notes_mid(tracks: list[Track], path: Path) -> None:
    pm = pretty_midi.PrettyMIDI()
    for t in tracks:
        inst = pretty_midi.Instrument(program=INSTRUMENTS[t.instrument].gm_program if not t.is_drum else 0,
                                      is_drum=t.is_drum, name=t.name)
        for n in t.notes:
            inst.notes.append(pretty_midi.Note(velocity=int(n.velocity), pitch=int(n.pitch),
                                               start=float(n.start_s), end=float(max(n.end_s, n.start_s + 0.01))))
        pm.instruments.append(inst)
    pm.write(str(path))


def gt_pickup_quarters(clip: Path) -> tuple[float, float]:
    """(pickup length, bar length) in quarters of gt.musicxml; a full first bar is no pickup."""
    from music21 import converter, meter

    part = converter.parse(str(clip / "gt.musicxml")).parts[0]
    first = part.getElementsByClass("Measure")[0]
    found = part.recurse().getElementsByClass(meter.TimeSignature)
    signature = found[0] if len(found) else meter.TimeSignature("4/4")
    bar_q = float(signature.barDuration.quarterLength)
    length = float(first.duration.quarterLength)
    return (0.0 if length >= bar_q - 1e-6 else length), bar_q


def pickup_check(ours: float, gt: float, bar_q: float) -> str:
    """"ok" when the pickup matches; "phase" when only the downbeat phase does (bar lines in
    place, but a full bar counted as a pickup or the reverse); "wrong" when bar lines move."""
    if abs(ours - gt) < 1e-6:
        return "ok"
    return "phase" if abs(((ours - gt) / bar_q) - round((ours - gt) / bar_q)) < 1e-6 else "wrong"


def print_pickups(rows: list[tuple[str, str, float, float, float]]) -> None:
    """Per-clip pickup and downbeat-phase table (ours vs gt.musicxml's first measure)."""
    print(f"{'clip':44s} {'meter':>6s} {'pickup':>7s} {'gt':>5s}  check")
    for name, ts, ours, gt, bar_q in rows:
        print(f"{name:44s} {ts:>6s} {ours:7.2f} {gt:5.2f}  {pickup_check(ours, gt, bar_q)}")
    right = sum(pickup_check(o, g, b) == "ok" for _, _, o, g, b in rows)
    phased = sum(pickup_check(o, g, b) != "wrong" for _, _, o, g, b in rows)
    print(f"pickup right: {right}/{len(rows)}   downbeat phase right: {phased}/{len(rows)}")


def run_clip(clip: Path, out: Path, args) -> dict:
    meta = json.loads((clip / "meta.json").read_text())
    if args.source == "run":
        tracks, layout = run_tracks(Path(args.run_root) / clip.name)
    else:
        tracks, layout = clip_tracks(clip, meta, args.source, args.band_mix, Path(args.cache))
    audio = load_audio(clip / meta["audio"]) if not args.no_audio else None
    options = Options(level=args.level)
    t0 = time.perf_counter()
    notation = notate(tracks, layout=layout, options=options, audio_mono=audio, sample_rate=22050,
                      title=meta.get("title", clip.name))
    t1 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    write_musicxml(notation, out / "score.musicxml")
    write_midi(notation, out / "score.mid")
    t2 = time.perf_counter()
    write_notes_mid(tracks, out / "notes.mid")
    result = dict(tempo_bpm=notation.tempo_bpm, time_signature=notation.time_signature, key=notation.key,
                  tempo_map=notation.tempo_map, pickup_quarters=notation.pickup_quarters, bars=notation.bars,
                  parts=notation.parts, warnings=notation.warnings, layout=layout,
                  timings=dict(notate_s=round(t1 - t0, 3), write_s=round(t2 - t1, 3)))
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=["gt", "bp", "run"], default="gt")
    ap.add_argument("--run-root", default=str(ROOT / "bench" / "results" / "stemscribe"),
                    help="with --source run: a run_devset.py output folder (<clip>/notes.mid, result.json)")
    ap.add_argument("--out", default="/tmp/notation_dev")
    ap.add_argument("--devset", default=str(DEVSET))
    ap.add_argument("--cache", default="/tmp/notation_cache/bp")
    ap.add_argument("--clips", help="comma-separated clip-name prefixes (default: all)")
    ap.add_argument("--band-mix", choices=["stems", "piano"], default="stems")
    ap.add_argument("--level", choices=["easy", "full"], default="full")
    ap.add_argument("--no-audio", action="store_true", help="beat-track from the notes alone")
    args = ap.parse_args(argv)
    devset, out_root = Path(args.devset), Path(args.out)
    clips = sorted(p for p in devset.iterdir() if (p / "meta.json").exists())
    if args.clips:
        wanted = args.clips.split(",")
        clips = [c for c in clips if any(c.name.startswith(w) for w in wanted)]
    pickups = []
    for clip in clips:
        res = run_clip(clip, out_root / clip.name, args)
        print(f"{clip.name}: {res['tempo_bpm']} {res['time_signature']} {res['key']} "
              f"pickup={res['pickup_quarters']} bars={res['bars']} {res['timings']}", file=sys.stderr)
        pickups.append((clip.name, res["time_signature"], res["pickup_quarters"], *gt_pickup_quarters(clip)))
    print_pickups(pickups)
    sys.stdout.flush()
    if args.clips:
        for clip in clips:
            subprocess.run([sys.executable, str(SCORER), "--gt", str(clip), "--out", str(out_root / clip.name)])
        return 0
    return subprocess.run([sys.executable, str(SCORER), "--gt-root", str(devset), "--out-root", str(out_root)]).returncode


if __name__ == "__main__":
    sys.exit(main())
