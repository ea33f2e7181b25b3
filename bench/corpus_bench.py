#!/usr/bin/env python3
"""Corpus bench for meter, tempo, downbeat and pickup (issue 17).

Performs every cached corpus excerpt (bench/corpus_perform.py) into Note
events with a fixed seed, runs the project's own rhythm analysis on the notes
alone (what notate() does with audio_mono=None: note cleaning, track_beats,
analyze_meter) and reports, per split:

- meter right (exact time signature), meter family right (2/4 ~ 4/4 ~ 2/2,
  3/8 ~ 6/8 ~ 12/8, 3/4, 9/8), the right meter among the top three alternatives;
- a confusion matrix (true x written);
- tempo strict (median quarter tempo within 8 %) and the ratio histogram
  (x1, x2, x1/2, x1.5, x2/3, other);
- pickup length right (within an eighth of a quarter... see PICKUP_TOLERANCE_Q).

    .venv/bin/python bench/corpus_bench.py                       # train and validation, damaged
    .venv/bin/python bench/corpus_bench.py --split validation --clean
    .venv/bin/python bench/corpus_bench.py --refit               # refit meter.py's scorer weights on train

Results go to bench/results/corpus_bench_<split>[_clean].json (per-piece rows and the summary).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import corpus_perform as cp  # noqa: E402

METERS = tuple(cp.METER_QUOTA)
FAMILY = {"2/4": "duple", "4/4": "duple", "2/2": "duple", "3/4": "triple", "3/8": "compound",
          "6/8": "compound", "12/8": "compound", "9/8": "compound-triple"}
#: Tempo counts as right within this ratio (the issue's "strict 8 %").
TEMPO_STRICT = 0.08
#: A written pickup counts as right within this many quarters of the true one.
PICKUP_TOLERANCE_Q = 0.2
SEED = 17


def ratio_class(ratio: float) -> str:
    """x1, x2, x1/2, x1.5, x2/3 or other, each within TEMPO_STRICT."""
    for name, value in (("x1", 1.0), ("x2", 2.0), ("x1/2", 0.5), ("x1.5", 1.5), ("x2/3", 2 / 3)):
        if abs(ratio / value - 1.0) <= TEMPO_STRICT:
            return name
    return "other"


def analyze(perf: cp.Performance) -> dict:
    """Meter, tempo, pickup and alternatives of one performance, the way notate() finds them."""
    import importlib

    notate_mod = importlib.import_module("stemscribe.core.notation.notate")
    from stemscribe.core.notes import Track

    track = notate_mod._clean(Track("Piano", "piano", list(perf.notes)))
    grid, alternatives = notate_mod.find_grid(track.notes, track.notes, audio_mono=None, sample_rate=22050)
    first = min(n.start_s for n in track.notes)
    pos = float(grid.beat_position(first)[0])
    pickup = 0.0
    if grid.pickup_beats:
        pickup = round(max(0.0, (grid.pickup_beats - pos) * grid.beat_quarters) * 4) / 4
    tempo = float(np.median(grid.tempo_curve_bpm()))
    return dict(time_signature=grid.time_signature, tempo_bpm=round(tempo, 2), pickup_q=pickup,
                alternatives=[a["time_signature"] for a in alternatives.get("meter", [])])


def _row(args: tuple[dict, int, bool]) -> dict:
    warnings.filterwarnings("ignore")
    excerpt, seed, damage = args
    perf = cp.perform(excerpt, seed, damage=damage)
    got = analyze(perf)
    ratio = got["tempo_bpm"] / perf.tempo_bpm
    alts = got["alternatives"] or [got["time_signature"]]
    return dict(key=perf.key, true_ts=perf.time_signature, ts=got["time_signature"], true_tempo=perf.tempo_bpm,
                tempo=got["tempo_bpm"], ratio=round(ratio, 3), ratio_class=ratio_class(ratio),
                true_pickup=perf.pickup_q, pickup=got["pickup_q"],
                pickup_ok=abs(got["pickup_q"] - perf.pickup_q) <= PICKUP_TOLERANCE_Q,
                meter_ok=got["time_signature"] == perf.time_signature,
                family_ok=FAMILY.get(got["time_signature"]) == FAMILY[perf.time_signature],
                top3_ok=perf.time_signature in alts[:3], alternatives=alts[:4], conditions=perf.conditions,
                buttons_ok=perf.time_signature in offered_meters(got["time_signature"], alts))


def offered_meters(written: str, alternatives: list[str]) -> list[str]:
    """The meter buttons a delivered score carries (bots.corrections.ranked_meters on its result.json)."""
    from stemscribe.bots.corrections import ranked_meters

    return ranked_meters({"time_signature": written,
                          "alternatives": {"meter": [{"time_signature": a} for a in alternatives]}})


def run(split: str, *, damage: bool = True, seed: int = SEED, workers: int = 2) -> dict:
    """Bench one split; returns {summary, rows}."""
    excerpts = [e for e in cp.load_excerpts() if cp.split_of(e["key"]) == split]
    t0 = time.time()
    jobs = [(e, seed, damage) for e in excerpts]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_row, jobs, chunksize=4))
    else:
        rows = [_row(j) for j in jobs]
    return dict(summary=summarize(rows, time.time() - t0), rows=rows)


def summarize(rows: list[dict], seconds: float = 0.0) -> dict:
    n = len(rows)
    mean = lambda k: round(sum(bool(r[k]) for r in rows) / n, 3) if n else 0.0  # noqa: E731
    ratios = Counter(r["ratio_class"] for r in rows)
    confusion: dict[str, dict[str, int]] = {}
    for r in rows:
        confusion.setdefault(r["true_ts"], {}).setdefault(r["ts"], 0)
        confusion[r["true_ts"]][r["ts"]] += 1
    meter_right = [r for r in rows if r["meter_ok"]]
    return dict(
        pieces=n, seconds=round(seconds, 1), meter=mean("meter_ok"), family=mean("family_ok"),
        top3=mean("top3_ok"), tempo_strict=round(ratios["x1"] / n, 3) if n else 0.0,
        ratio_hist={k: round(ratios[k] / n, 3) for k in ("x1", "x2", "x1/2", "x1.5", "x2/3", "other")},
        pickup=mean("pickup_ok"),
        pickup_given_meter=round(sum(r["pickup_ok"] for r in meter_right) / len(meter_right), 3)
        if meter_right else 0.0,
        with_pickup=sum(1 for r in rows if r["true_pickup"] > 0),
        # Issue 22: where the written meter is wrong, do the meter buttons offer the right one?
        buttons_cover_wrong=round(sum(bool(r.get("buttons_ok")) for r in rows if not r["meter_ok"])
                                  / max(1, sum(1 for r in rows if not r["meter_ok"])), 3),
        wrong=sum(1 for r in rows if not r["meter_ok"]),
        confusion=confusion)


def markdown(name: str, summary: dict) -> str:
    s = summary
    h = s["ratio_hist"]
    lines = [f"### {name}: {s['pieces']} pieces ({s['with_pickup']} with a pickup), {s['seconds']} s", "",
             "| meter | family | top-3 | tempo strict | x2 | x1/2 | x1.5 | x2/3 | other | pickup | pickup (meter right) |",
             "|---|---|---|---|---|---|---|---|---|---|---|",
             f"| {s['meter']:.3f} | {s['family']:.3f} | {s['top3']:.3f} | {s['tempo_strict']:.3f} | {h['x2']:.3f} "
             f"| {h['x1/2']:.3f} | {h['x1.5']:.3f} | {h['x2/3']:.3f} | {h['other']:.3f} | {s['pickup']:.3f} "
             f"| {s['pickup_given_meter']:.3f} |", ""]
    written = sorted({w for row in s["confusion"].values() for w in row} | set(METERS),
                     key=lambda m: (m not in METERS, METERS.index(m) if m in METERS else 0, m))
    lines.append("| true \\ written | " + " | ".join(written) + " |")
    lines.append("|---" * (len(written) + 1) + "|")
    for t in METERS:
        row = s["confusion"].get(t, {})
        if row:
            lines.append(f"| {t} | " + " | ".join(str(row.get(w, 0)) or "" for w in written) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("train", "validation", "both"), default="both")
    ap.add_argument("--clean", action="store_true", help="no transcription damage")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix of the result file names")
    ap.add_argument("--refit", action="store_true", help="refit the meter scorer's weights on the train split")
    args = ap.parse_args(argv)
    if args.refit:
        import corpus_fit
        return corpus_fit.main(["--seed", str(args.seed)])
    splits = ("train", "validation") if args.split == "both" else (args.split,)
    cp.RESULTS.mkdir(parents=True, exist_ok=True)
    for split in splits:
        result = run(split, damage=not args.clean, seed=args.seed, workers=args.workers)
        name = f"corpus_bench_{split}{'_clean' if args.clean else ''}{args.tag}"
        (cp.RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
        print(markdown(f"{split}{' (clean)' if args.clean else ' (damaged)'}", result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
