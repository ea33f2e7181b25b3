#!/usr/bin/env python3
"""Recordings that are not at A4 = 440 Hz: stemscribe with tuning detection against without it.

Usage:
    .venv/bin/python bench/tuning.py [--devset ../shared/devset] [--out bench/results/tuning]
        [--cents -30,40] [--clips 01,03,05,06,07,09]

What it does:
1. Reads the tuning of every dev-set clip as it is (they are synthesized at A440;
   none should be corrected).
2. For each offset in --cents, makes a copy of the chosen clips played that many
   cents sharp (or flat) the way a tape running fast or slow would: ffmpeg
   ``asetrate`` moves pitch and speed together. The ground-truth note times and
   tempo are scaled by the same ratio; the written score does not change.
3. Runs the pipeline on each copy twice, with tuning:auto (the default) and with
   tuning:off (the recording as is), and scores both with ../shared/bench/score.py.
Writes OUT/tuning.md (the README's table) and OUT/tuning.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run_devset import find_audio, run_ours, score_set  # noqa: E402

COLUMNS = [("note_f1_onset", "note F1"), ("score_note_f1", "score-note F1"), ("key_ok", "key")]


def sample_rate_of(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def detuned_copy(clip: Path, cents: float, dest: Path) -> Path:
    """``clip`` played ``cents`` sharp, pitch and speed together, with its ground truth scaled to match."""
    ratio = 2.0 ** (cents / 1200.0)
    out = dest / clip.name
    out.mkdir(parents=True, exist_ok=True)
    audio = find_audio(clip)
    rate = sample_rate_of(audio)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(audio), "-af",
                    f"asetrate={rate * ratio:.3f},aresample=44100", str(out / "audio.wav")], check=True)
    meta = json.loads((clip / "meta.json").read_text())
    meta["audio"] = "audio.wav"
    for key in ("tempo_bpm", "tempo_beat_bpm"):
        if key in meta:
            meta[key] = meta[key] * ratio
    (out / "meta.json").write_text(json.dumps(meta))
    with open(clip / "gt_notes.csv", newline="") as src:
        rows = list(csv.DictReader(src))
    with open(out / "gt_notes.csv", "w", newline="") as dst:
        writer = csv.DictWriter(dst, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            row["onset_s"] = repr(float(row["onset_s"]) / ratio)
            row["offset_s"] = repr(float(row["offset_s"]) / ratio)
            writer.writerow(row)
    for name in ("gt.musicxml", "gt.mid"):
        if (clip / name).exists():
            shutil.copy(clip / name, out / name)
    return out


def estimates(clips: list[Path]) -> dict[str, dict]:
    from stemscribe.core.audio import decode
    from stemscribe.core.tuning import estimate_tuning

    found = {}
    for clip in clips:
        audio = decode(find_audio(clip), sample_rate=44100, mono=True)
        found[clip.name] = estimate_tuning(audio.samples[0], audio.sample_rate).to_dict()
    return found


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    return f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devset", type=Path, default=ROOT.parent / "shared" / "devset")
    ap.add_argument("--bench-dir", type=Path, default=ROOT.parent / "shared" / "bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tuning")
    ap.add_argument("--cents", default="-30,40")
    ap.add_argument("--clips", default="01,03,05,06,07,09")
    args = ap.parse_args(argv)

    all_clips = sorted(p for p in args.devset.iterdir() if (p / "meta.json").exists())
    chosen = [c for c in all_clips if c.name[:2] in args.clips.split(",")]
    score_py = args.bench_dir / "score.py"
    report: dict = {"in_tune": estimates(all_clips), "detuned": {}}
    lines = ["Tuning read from the dev set as it is (synthesized at A4 = 440 Hz):", "",
             "| clip | cents | confidence | corrected |", "|---|---|---|---|"]
    for name, t in report["in_tune"].items():
        lines.append(f"| {name} | {t['cents']:+.1f} | {t['confidence']:.2f} | {fmt(t['corrected'])} |")

    for cents in (float(c) for c in args.cents.split(",")):
        tag = f"{cents:+.0f}"
        devset = args.out / f"devset{tag}"
        if devset.exists():
            shutil.rmtree(devset)
        copies = [detuned_copy(clip, cents, devset) for clip in chosen]
        runs = {}
        for setting in ("auto", "off"):
            out_root = args.out / f"{setting}{tag}"
            if out_root.exists():
                shutil.rmtree(out_root)
            results = run_ours(devset, out_root, copies, "auto", f"tuning:{setting}")
            scores = score_set(score_py, devset, out_root)
            runs[setting] = {"results": {k: v.get("tuning") for k, v in results.items()}, "scores": scores}
        report["detuned"][tag] = runs
        lines += ["", f"Played {abs(cents):.0f} cents {'sharp' if cents > 0 else 'flat'}: tuning:off (the recording "
                  "as is) → tuning:auto (the default)", "",
                  "| clip | cents read | " + " | ".join(label for _, label in COLUMNS) + " |",
                  "|---|---|" + "---|" * len(COLUMNS)]
        by_clip = {setting: {r["clip"]: r for r in runs[setting]["scores"]["clips"]} for setting in runs}
        for copy in copies:
            found = runs["auto"]["results"].get(copy.name) or {}
            cells = [f"{fmt(by_clip['off'][copy.name].get(key))} → **{fmt(by_clip['auto'][copy.name].get(key))}**"
                     for key, _ in COLUMNS]
            lines.append(f"| {copy.name} | {found.get('cents', float('nan')):+.1f} | " + " | ".join(cells) + " |")
        means = [f"{fmt(runs['off']['scores']['mean'].get(key))} → **{fmt(runs['auto']['scores']['mean'].get(key))}**"
                 for key, _ in COLUMNS]
        lines.append("| **mean** | | " + " | ".join(means) + " |")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tuning.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "tuning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
