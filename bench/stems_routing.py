#!/usr/bin/env python3
"""Per-part note F1: perfect stems through route_parts vs. transcribing the mix.

Usage:
    .venv/bin/python bench/stems_routing.py [--devset ../shared/devset] [--clips 04 06 07 08] [--no-guard] [--json]

For each ensemble / band-mix clip of the dev set, the ``stems/`` folder stands in
for a perfect separator: its files go through ``core.routing.route_parts`` (the
code stems and multitrack modes share; the artifact guard judges them against
the mix unless ``--no-guard``). The baseline transcribes the mix with
basic-pitch and hands each note to the part whose ground-truth median pitch is
nearest, a generous baseline since it peeks at the true registers. Each part is
scored against its own rows of gt_notes.csv with mir_eval (onset within 50 ms,
offsets ignored; drums compared by General MIDI key).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ONSET_TOLERANCE_S = 0.05
DEFAULT_CLIPS = ("04", "06", "07", "08")


def _gt_parts(clip: Path) -> dict[str, list[tuple[float, float, int]]]:
    parts: dict[str, list[tuple[float, float, int]]] = {}
    with open(clip / "gt_notes.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            parts.setdefault(row["part"], []).append((float(row["onset_s"]), float(row["offset_s"]),
                                                      int(row["midi_pitch"])))
    return parts


def _f1(reference: list[tuple[float, float, int]], notes) -> float:
    import mir_eval

    if not reference:
        return float("nan")
    if not notes:
        return 0.0
    ref_iv = np.array([[s, max(e, s + 0.01)] for s, e, _ in reference])
    est_iv = np.array([[n.start_s, max(n.end_s, n.start_s + 0.01)] for n in notes])
    ref_hz = mir_eval.util.midi_to_hz(np.array([p for _, _, p in reference], dtype=float))
    est_hz = mir_eval.util.midi_to_hz(np.array([n.pitch for n in notes], dtype=float))
    _, _, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=ONSET_TOLERANCE_S, offset_ratio=None)
    return float(f1)


def bench_clip(clip: Path, engines, *, guard: bool) -> dict:
    """Score one clip both ways; returns per-part F1s, verdicts and timings."""
    from stemscribe.core.audio import decode
    from stemscribe.core.options import Options
    from stemscribe.core.routing import route_parts

    meta = json.loads((clip / "meta.json").read_text())
    gt = _gt_parts(clip)
    mix = decode(clip / meta["audio"], sample_rate=44100)
    stems = [(Path(rel).name, decode(clip / rel, sample_rate=44100)) for rel in meta["stems"]]
    started = time.perf_counter()
    tracks, verdicts = route_parts(stems, mix=mix if guard else None, models=engines, options=Options(), guard=guard)
    routed_s = time.perf_counter() - started
    remaining = iter(tracks)
    routed = {}
    for (file_name, _), verdict in zip(stems, verdicts):
        part = Path(file_name).stem
        track = next(remaining) if verdict.decision != "dropped" else None
        routed[part] = {"f1": _f1(gt.get(part, []), track.notes if track else []), "decision": verdict.decision,
                        "instrument": track.instrument if track else None, "engine": track.engine if track else None,
                        "reason": verdict.reason}
    started = time.perf_counter()
    mix_notes = engines.get("basic-pitch").transcribe(mix.mono().samples[0], mix.sample_rate)
    mix_s = time.perf_counter() - started
    pitched = {part: float(np.median([p for _, _, p in rows])) for part, rows in gt.items() if part != "drums"}
    assigned: dict[str, list] = {part: [] for part in gt}
    for note in mix_notes:
        nearest = min(pitched, key=lambda part: abs(pitched[part] - note.pitch))
        assigned[nearest].append(note)
    for part, info in routed.items():
        info["mix_f1"] = _f1(gt.get(part, []), assigned.get(part, []))
    return {"clip": clip.name, "parts": routed, "routing_s": round(routed_s, 1), "mix_s": round(mix_s, 1)}


def main(argv: list[str] | None = None) -> int:
    """Run the bench over the chosen clips and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "devset")
    parser.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS), help="clip number prefixes")
    parser.add_argument("--no-guard", action="store_true", help="route without the artifact guard (no mix check)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from stemscribe.core.engines.registry import ModelCache

    engines = ModelCache(threads=args.threads)
    clips = [next(args.devset.glob(f"{prefix}-*")) for prefix in args.clips]
    results = [bench_clip(clip, engines, guard=not args.no_guard) for clip in clips]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    routed_all, mix_all, routed_pitched, mix_pitched = [], [], [], []
    for result in results:
        print(f"{result['clip']}  (routing {result['routing_s']} s, mix transcription {result['mix_s']} s)")
        for part, info in result["parts"].items():
            print(f"  {part:<18} stems {info['f1']:.3f}   mix {info['mix_f1']:.3f}   "
                  f"{info['instrument'] or '-':<10} {info['engine'] or '-':<12} {info['decision']}")
            routed_all.append(info["f1"])
            mix_all.append(info["mix_f1"])
            if part != "drums":
                routed_pitched.append(info["f1"])
                mix_pitched.append(info["mix_f1"])
    print(f"mean per-part F1, pitched parts: stems {np.nanmean(routed_pitched):.3f}  mix {np.nanmean(mix_pitched):.3f}")
    print(f"mean per-part F1, all parts:     stems {np.nanmean(routed_all):.3f}  mix {np.nanmean(mix_all):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
