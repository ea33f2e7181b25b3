#!/usr/bin/env python3
"""Real-recording benchmark: stemscribe mode auto next to plain basic-pitch on ../shared/realset.

Usage:
    .venv/bin/python bench/realset.py [--realset ../shared/realset] [--out bench/results/realset]
        [--mode auto] [--clips 01,03] [--skip-plain] [--choices-only DIR]

For every clip it runs the full pipeline (core.pipeline.run) into OUT/stemscribe/<clip>/, and
plain basic-pitch (default thresholds) into OUT/basic-pitch/<clip>/notes.mid, then scores both
with ../shared/bench/score.py's note metrics (notes only: the real clips have no written score).
Prints one table: clip, chosen mode / layout, the reason given, note F1, plain basic-pitch's.
With --choices-only DIR it only prints auto mode's choice (mode, engine, reason) for every clip
folder under DIR (e.g. ../shared/devset), which is cheap: no notation, no engraving.
Writes OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def find_audio(clip: Path) -> Path:
    return next(p for p in sorted(clip.iterdir()) if p.name.startswith("audio."))


def load_scorer(bench_dir: Path):
    sys.path.insert(0, str(bench_dir))
    import score  # ../shared/bench/score.py

    return score


def note_f1(scorer, clip: Path, midi: Path) -> float | None:
    if not midi.exists():
        return None
    ref_i, ref_p = scorer.load_gt_notes(str(clip))
    est_i, est_p = scorer.load_midi_notes(str(midi))
    return scorer.note_metrics(ref_i, ref_p, est_i, est_p).get("note_f1_onset")


def plain_basic_pitch(audio: Path, out_mid: Path) -> None:
    from basic_pitch import ICASSP_2022_MODEL_PATH
    from basic_pitch.inference import predict

    out_mid.parent.mkdir(parents=True, exist_ok=True)
    _, midi, _ = predict(str(audio), ICASSP_2022_MODEL_PATH)
    midi.write(str(out_mid))


def choices(root: Path, *, transcribe: bool = False, scorer=None, out: Path | None = None) -> list[dict]:
    """Print auto mode's choice for every clip under root (no notation or engraving).

    The same steps as core.pipeline.run up to the mode: profile, tuning, the basic-pitch
    probe's note stream, choose_mode. With ``transcribe`` a solo or piano choice is also
    transcribed the way run() does it (core.pipeline._transcribe_single) and scored on
    notes; a stems choice is left at its choice.
    """
    from stemscribe.core.analysis import profile_mix
    from stemscribe.core.audio import decode
    from stemscribe.core.auto import kind_of, listen
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.options import Mode, parse_options
    from stemscribe.core.pipeline import Toolkit, _transcribe_single, choose_mode
    from stemscribe.core.progress import Reporter
    from stemscribe.core.tuning import estimate_tuning

    toolkit = Toolkit(engines=ModelCache(threads=0))
    options = parse_options("mode:auto")
    rows = []
    clips = sorted(p for p in root.rglob("meta.json"))
    for meta_path in clips:
        clip = meta_path.parent
        audio = decode(find_audio(clip), sample_rate=44100, mono=True)
        t0 = time.perf_counter()
        samples = audio.samples[0]
        profile = profile_mix(samples, audio.sample_rate)
        tuning = estimate_tuning(samples, audio.sample_rate)
        probe = listen(toolkit.engines.get("basic-pitch"), samples, audio.sample_rate, tuning)
        mode, reason = choose_mode(options, 1, profile, None, separation_available=lambda: True, stream=probe.stream)
        meta = json.loads(meta_path.read_text())
        row = dict(clip=str(clip.relative_to(root)), mode=str(mode), kind=kind_of(profile, probe.stream),
                   reason=reason, overlap=round(probe.stream.overlap, 3), notes=probe.stream.notes,
                   percussive=round(profile.percussive_ratio, 3), struck=profile.struck,
                   accepted=meta.get("accepted_modes"), true_kind=meta.get("kind"))
        if transcribe and mode in (Mode.SOLO, Mode.PIANO):
            track, why = _transcribe_single(samples, audio.sample_rate, mode, None, options, profile, toolkit,
                                            Reporter(), tuning, probe)
            row.update(engine=track.engine, instrument=track.instrument, why=why)
            if scorer is not None and out is not None:
                mid = out / "choices" / row["clip"] / "notes.mid"
                mid.parent.mkdir(parents=True, exist_ok=True)
                from stemscribe.core.pipeline import write_performance_midi

                write_performance_midi([track], mid)
                row["note_f1"] = note_f1(scorer, clip, mid)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        f1 = f" F1 {row['note_f1']:.3f}" if row.get("note_f1") is not None else ""
        print(f"{row['clip']:60s} {row['mode']:6s} {row['kind']:9s} {row.get('engine', ''):11s} "
              f"ov {row['overlap']:.3f}{f1} {row['seconds']:5.1f}s", flush=True)
    return rows




def compare(paths: list[Path]) -> dict:
    """Summarize choices files (one per soundfont): layout right, engines, note F1, agreement.

    Returns (and prints) {name: summary} plus "agreement" when two files are given: the
    share of pieces with the same kind on both, and the mean |note F1 difference|.
    """
    import statistics
    from collections import Counter

    sys.path.insert(0, str(ROOT / "bench"))
    from rendered_bench import SUITABLE

    tables = {p.stem: {r["clip"]: r for r in json.loads(p.read_text())} for p in paths}
    out: dict = {}
    for name, rows in tables.items():
        vals = list(rows.values())
        f1 = [r["note_f1"] for r in vals if r.get("note_f1") is not None]
        by_kind = {k: [r for r in vals if r.get("true_kind") == k] for k in SUITABLE}
        out[name] = dict(
            clips=len(vals),
            layout_right=round(sum(r["kind"] in SUITABLE.get(r.get("true_kind"), set()) for r in vals) / len(vals), 3),
            layout_right_by_kind={k: f"{sum(r['kind'] in SUITABLE[k] for r in rs)}/{len(rs)}" for k, rs in by_kind.items()},
            lines_on_piano_model=sum(r.get("true_kind") == "line" and r.get("engine") in ("transkun", "organ", "fusion")
                                     for r in vals),
            engines=dict(Counter(r.get("engine", "-") for r in vals)),
            mean_note_f1=round(statistics.mean(f1), 3) if f1 else None)
    if len(tables) == 2:
        (a_name, a), (b_name, b) = tables.items()
        common = sorted(set(a) & set(b))
        diffs = [abs(a[c]["note_f1"] - b[c]["note_f1"]) for c in common
                 if a[c].get("note_f1") is not None and b[c].get("note_f1") is not None]
        out["agreement"] = dict(
            pieces=len(common),
            same_kind=round(sum(a[c]["kind"] == b[c]["kind"] for c in common) / max(1, len(common)), 3),
            same_mode=round(sum(a[c]["mode"] == b[c]["mode"] for c in common) / max(1, len(common)), 3),
            mean_abs_note_f1_diff=round(statistics.mean(diffs), 3) if diffs else None,
            within_0_03=f"{sum(d <= 0.03 for d in diffs)}/{len(diffs)}")
    print(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realset", type=Path, default=ROOT.parent / "shared" / "realset")
    ap.add_argument("--bench-dir", type=Path, default=ROOT.parent / "shared" / "bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realset")
    ap.add_argument("--mode", default="auto")
    ap.add_argument("--clips", help="comma-separated clip number prefixes, e.g. 01,03")
    ap.add_argument("--skip-plain", action="store_true", help="do not run plain basic-pitch")
    ap.add_argument("--choices-only", type=Path, help="print auto mode's choices for the clips under this folder")
    ap.add_argument("--transcribe", action="store_true",
                    help="with --choices-only: also transcribe solo/piano choices and score their notes")
    ap.add_argument("--compare", type=Path, nargs="+",
                    help="summarize choices-*.json files (two: one per soundfont, same pieces)")
    args = ap.parse_args(argv)
    if args.compare:
        compare(args.compare)
        return 0
    if args.choices_only:
        rows = choices(args.choices_only, transcribe=args.transcribe, scorer=load_scorer(args.bench_dir), out=args.out)
        args.out.mkdir(parents=True, exist_ok=True)
        name = "choices-" + args.choices_only.name + ".json"
        (args.out / name).write_text(json.dumps(rows, indent=1))
        print(f"wrote {args.out / name}")
        return 0

    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.options import parse_options
    from stemscribe.core.pipeline import Toolkit, run

    scorer = load_scorer(args.bench_dir)
    clips = sorted(p for p in args.realset.iterdir() if (p / "meta.json").exists())
    if args.clips:
        clips = [c for c in clips if c.name.startswith(tuple(args.clips.split(",")))]
    toolkit = Toolkit(engines=ModelCache(threads=0))
    rows = []
    for clip in clips:
        out = args.out / "stemscribe" / clip.name
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            result = run([find_audio(clip)], out, parse_options(f"mode:{args.mode}"), toolkit=toolkit)
        except Exception as exc:  # a benchmark reports failures and carries on
            result = {"error": repr(exc)}
        wall = round(time.perf_counter() - t0, 1)
        bp_mid = args.out / "basic-pitch" / clip.name / "notes.mid"
        if not args.skip_plain and not bp_mid.exists():
            plain_basic_pitch(find_audio(clip), bp_mid)
        row = dict(clip=clip.name, mode=str(result.get("mode", "?")), layout=result.get("layout", "?"),
                   reason=result.get("mode_reason", result.get("error", "")), wall_s=wall,
                   kind=(result.get("evidence") or {}).get("kind"),
                   engines=[p.get("engine") for p in result.get("parts", []) if isinstance(p, dict)],
                   notes_line=[n for n in result.get("user_notes", []) if n.startswith("Notes:")],
                   note_f1=note_f1(scorer, clip, out / "notes.mid"), plain_f1=note_f1(scorer, clip, bp_mid))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| clip | mode | layout | reason | note F1 | plain basic-pitch | s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        f1 = "–" if r["note_f1"] is None else f"{r['note_f1']:.3f}"
        bp = "–" if r["plain_f1"] is None else f"{r['plain_f1']:.3f}"
        print(f"| {r['clip']} | {r['mode']} | {r['layout']} | {r['reason']} | {f1} | {bp} | {r['wall_s']} |")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
