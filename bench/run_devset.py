#!/usr/bin/env python3
"""Dev-set benchmark: stemscribe's quality and speed next to the peers users reach for.

Usage:
    .venv/bin/python bench/run_devset.py [--devset ../shared/devset] [--out bench/results]
        [--mode auto] [--skip-peers] [--skip-speed] [--clips 01,03]

What it does:
1. Loads the models once (as a worker does), warms them on a short clip, then runs
   the full pipeline (`stemscribe transcribe`, in process) on every dev-set clip into
   OUT/stemscribe/<clip>/ and records per-stage wall times.
2. Runs ../shared/bench/peers.py (plain basic-pitch -> MuseScore 3 import, and
   -> music21 quantizePost) on the same clips, unless --skip-peers. The MuseScore
   peer needs `apt-get install musescore3`.
3. Scores everything with ../shared/bench/score.py and prints one table: mean
   metrics per system, then stemscribe per clip with its stage timings.
4. Speed: a 60 s clip from audio to PDF with the basic-pitch engine (models warm),
   and transkun's real-time factor on the piano clip.
Writes OUT/summary.md (the README's table) and OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METRICS = [("note_f1_onset", "note F1"), ("note_f1_offset", "offset F1"), ("score_note_f1", "score-note F1"),
           ("tempo_ok", "tempo"), ("tempo_ok_octave", "tempo ×2"), ("meter_ok", "meter"), ("key_ok", "key"),
           ("key_ok_related", "key related")]


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def find_audio(clip: Path) -> Path:
    return next(p for p in sorted(clip.iterdir()) if p.name.startswith("audio."))


def score_set(score_py: Path, gt_root: Path, out_root: Path) -> dict:
    proc = subprocess.run([sys.executable, str(score_py), "--gt-root", str(gt_root), "--out-root", str(out_root),
                           "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_ours(devset: Path, out_root: Path, clips: list[Path], mode: str, extra_options: str = "") -> dict[str, dict]:
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.options import Options, parse_options
    from stemscribe.core.pipeline import Toolkit, run

    toolkit = Toolkit(engines=ModelCache(threads=0))
    t0 = time.perf_counter()
    toolkit.engines.preload(["basic-pitch", "transkun", "drums"])
    print(f"models loaded in {time.perf_counter() - t0:.1f}s", flush=True)
    warm = ROOT / "stemscribe" / "examples" / "ode-to-joy-flute.ogg"
    with tempfile.TemporaryDirectory() as tmp:
        run([warm], Path(tmp), Options(), toolkit=toolkit)
    results = {}
    for clip in clips:
        out = out_root / clip.name
        out.mkdir(parents=True, exist_ok=True)
        options = parse_options(f"mode:{mode} {extra_options}".strip())
        t0 = time.perf_counter()
        try:
            result = run([find_audio(clip)], out, options, toolkit=toolkit)
            result["wall_s"] = round(time.perf_counter() - t0, 2)
        except Exception as exc:  # a benchmark reports failures and carries on
            result = {"error": repr(exc), "wall_s": round(time.perf_counter() - t0, 2)}
        results[clip.name] = result
        print(f"  {clip.name}: {result.get('mode', '?')} {result.get('wall_s')}s "
              f"{result.get('tempo_bpm', '')} {result.get('time_signature', '')} {result.get('key', '')} "
              f"{result.get('error', '')}", flush=True)
    return results


def speed(devset: Path) -> dict:
    """Audio-to-PDF time of a 60 s clip (basic-pitch, warm) and transkun's real-time factor."""
    from stemscribe.core.audio import decode
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.options import parse_options
    from stemscribe.core.pipeline import Toolkit, run

    out: dict = {}
    toolkit = Toolkit(engines=ModelCache(threads=0))
    toolkit.engines.preload(["basic-pitch", "transkun"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = next(devset.glob("02-*"))
        sixty = tmp / "sixty.wav"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "1", "-i", str(find_audio(clip)),
                        "-t", "60", str(sixty)], check=True)
        options = parse_options("mode:solo engine:basic-pitch instrument:violin")
        run([sixty], tmp / "warm", options, toolkit=toolkit)
        times = []
        for i in range(3):
            t0 = time.perf_counter()
            result = run([sixty], tmp / f"run{i}", options, toolkit=toolkit)
            times.append(time.perf_counter() - t0)
        out["basic_pitch_60s_audio_to_pdf_s"] = round(min(times), 2)
        out["basic_pitch_60s_stage_s"] = result["timings_s"]
        piano = next(devset.glob("03-*"))
        audio = decode(find_audio(piano), sample_rate=44100, mono=True)
        engine = toolkit.engines.get("transkun")
        t0 = time.perf_counter()
        engine.transcribe(audio.samples[0], audio.sample_rate)
        seconds = time.perf_counter() - t0
        out["transkun_rtf"] = round(seconds / audio.duration_s, 3)
        out["transkun_clip_s"] = round(audio.duration_s, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devset", type=Path, default=ROOT.parent / "shared" / "devset")
    ap.add_argument("--bench-dir", type=Path, default=ROOT.parent / "shared" / "bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--mode", default="auto")
    ap.add_argument("--clips", help="comma-separated clip number prefixes, e.g. 01,03")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args(argv)

    clips = sorted(p for p in args.devset.iterdir() if (p / "meta.json").exists())
    if args.clips:
        wanted = tuple(args.clips.split(","))
        clips = [c for c in clips if c.name.startswith(wanted)]
    ours_root = args.out / "stemscribe"
    ours = run_ours(args.devset, ours_root, clips, args.mode)
    gt_root = args.devset
    if args.clips:  # score.py scores whole folders; give it only the chosen clips
        gt_root = args.out / "gt_subset"
        gt_root.mkdir(parents=True, exist_ok=True)
        for c in clips:
            link = gt_root / c.name
            if not link.exists():
                link.symlink_to(c.resolve())
    scores = {"stemscribe": score_set(args.bench_dir / "score.py", gt_root, ours_root)}
    if not args.skip_peers:
        peers_work = args.out / "peers"
        env = dict(os.environ)
        subprocess.run([sys.executable, str(args.bench_dir / "peers.py"), "--set", f"dev={gt_root}",
                        "--work", str(peers_work), "--report", str(args.out / "peers.md")], check=True, env=env)
        for peer in ("bp+musescore", "bp+music21"):
            scores[peer] = score_set(args.bench_dir / "score.py", gt_root, peers_work / "dev" / peer)

    lines = ["| system | " + " | ".join(h for _, h in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, res in scores.items():
        label = {"stemscribe": "**stemscribe** (mode auto)", "bp+musescore": "basic-pitch → MuseScore 3 import",
                 "bp+music21": "basic-pitch → music21 quantizePost"}[name]
        lines.append(f"| {label} | " + " | ".join(fmt(res["mean"].get(k)) for k, _ in METRICS) + " |")
    lines += ["", "| clip | mode | " + " | ".join(h for _, h in METRICS) + " | tempo / meter / key | wall s | stages s |",
              "|---|---|" + "---|" * len(METRICS) + "---|---|---|"]
    for row in scores["stemscribe"]["clips"]:
        r = ours.get(row["clip"], {})
        stages = " ".join(f"{k} {v:.1f}" for k, v in r.get("timings_s", {}).items())
        lines.append(f"| {row['clip']} | {r.get('mode', 'error')} | " + " | ".join(fmt(row.get(k)) for k, _ in METRICS)
                     + f" | {fmt(row.get('tempo_est'))} / {fmt(row.get('meter_est'))} / {fmt(row.get('key_est'))}"
                     + f" | {r.get('wall_s', '')} | {stages} |")
    summary = {"scores": scores, "runs": ours}
    if not args.skip_speed:
        summary["speed"] = speed(args.devset)
        sp = summary["speed"]
        lines += ["", f"Speed (2 CPU cores, models warm): 60 s clip audio → PDF with basic-pitch "
                      f"{sp['basic_pitch_60s_audio_to_pdf_s']} s (stages: {sp['basic_pitch_60s_stage_s']}); "
                      f"transkun real-time factor {sp['transkun_rtf']} on a {sp['transkun_clip_s']} s piano clip."]
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(table + "\n")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
