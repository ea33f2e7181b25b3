#!/usr/bin/env python3
"""What the dev set's ground truth allows: key labels and written time checked against the audio.

Usage:
    .venv/bin/python bench/gt_check.py [--devset ../shared/devset] [--run-root bench/results/stemscribe]
        [--out bench/results/gt_check.md]

Keys.

For every clip it prints the labelled key (meta.json), the key signature written
in gt.musicxml, what music21's five key-finding algorithms (Krumhansl-Schmuckler,
Aarden-Essen, Bellman-Budge, Temperley-Kostka-Payne, simple weights) say of the
written notes of gt.musicxml (no audio, no transcription: the best case for any
content-based detector), and stemscribe's key from a bench/run_devset.py output.
A label that every finder contradicts on the true notes follows the composer's
key signature rather than the notes of the excerpt (e.g. a Bach chorale in F
minor written with three flats), and no detector listening to the excerpt can be
expected to name it. Chord symbols written in gt.musicxml (lead sheets) are
listed too: they say which key the arranger heard.

Written time. score.py compares written onsets (quarter notes) after one global
shift. gt.musicxml can hold written time the recording never plays: hidden
rests that pad the bar before a repeat's second pickup, repeated endings. For
every clip with a steady tempo this script pairs each ground-truth note with its
performed onset (same pitch, in order), converts the performed onsets to quarter
notes at the marked tempo, and lists where written and performed time part
(jumps); it then scores that perfect, audio-faithful transcription (every note
right, rounded to sixteenths) with score.py's score-note F1: the most any
transcription of the audio can reach on that clip. Clips whose tempo moves are
not checked (their ceiling is 1.0 up to tempo tracking).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from collections import defaultdict
from pathlib import Path

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parent.parent
ALGORITHMS = [("krumhansl", "key.krumhanslschmuckler"), ("aarden", "key.aardenessen"),
              ("bellman", "key.bellman"), ("temperley", "key.temperleykostkapayne"), ("simple", "key.simple")]


def _name(k) -> str:
    return f"{k.tonic.name.replace('-', 'b')} {k.mode}"


def written_time_check(clip: Path, bench_dir: Path) -> tuple[list[tuple[float, float]], float | None]:
    """(jumps as (written quarter, extra quarters), score-note F1 ceiling), or ([], None) if the tempo moves."""
    meta = json.loads((clip / "meta.json").read_text())
    if meta.get("tempo_curve"):
        return [], None
    sys.path.insert(0, str(bench_dir))
    import score as scorer

    ref, _ = scorer.score_notes(str(clip / "gt.musicxml"))
    written, performed = defaultdict(list), defaultdict(list)
    for onset, pitch in ref:
        written[pitch].append(onset)
    with open(clip / "gt_notes.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["part"] != "drums":
                performed[int(row["midi_pitch"])].append(float(row["onset_s"]))
    per_q = meta["tempo_bpm"] / 60.0
    pairs = []
    for pitch, ws in written.items():
        ps = sorted(performed.get(pitch, []))
        if len(ps) == len(ws):
            pairs += [(w, (p - meta["lead_in_s"]) * per_q) for w, p in zip(sorted(ws), ps)]
    pairs.sort()
    jumps, last = [], None
    for w, q in pairs:
        offset = round(w - q, 1)
        if last is not None and abs(offset - last) > 0.3:
            jumps.append((w, round(offset - last, 2)))
        last = offset
    perfect = [(round((float(r) - meta["lead_in_s"]) * per_q * 4) / 4, p)
               for p, rs in performed.items() for r in rs]
    return jumps, scorer.score_note_f1(ref, perfect)["score_note_f1"]


def main(argv: list[str] | None = None) -> int:
    """Print (and write) the per-clip table of labels, signatures and finders' keys."""
    import music21

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devset", type=Path, default=ROOT.parent / "shared" / "devset")
    ap.add_argument("--run-root", type=Path, default=ROOT / "bench" / "results" / "stemscribe")
    ap.add_argument("--bench-dir", type=Path, default=ROOT.parent / "shared" / "bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gt_check.md")
    args = ap.parse_args(argv)
    head = (["clip", "label", "signature"] + [a for a, _ in ALGORITHMS]
            + ["finders agree with label", "chord symbols written in the score", "stemscribe key",
               "silent written time (at quarter: +quarters)",
               "score-note F1 ceiling"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    agree_total = 0
    ceilings: list[float] = []
    clips = sorted(p for p in args.devset.iterdir() if (p / "meta.json").exists())
    for clip in clips:
        label = json.loads((clip / "meta.json").read_text())["key"]
        score = music21.converter.parse(str(clip / "gt.musicxml"))
        sigs = list(score.recurse().getElementsByClass(music21.key.KeySignature))
        sig = f"{sigs[0].sharps:+d}" if sigs else "none"
        found = [_name(score.analyze(alg)) for _, alg in ALGORITHMS]
        agree = sum(f.lower() == label.lower() for f in found)
        agree_total += agree == len(found)
        symbols = [c.figure.replace("-", "b") for c in score.recurse().getElementsByClass(music21.harmony.ChordSymbol)]
        symbol_text = ", ".join(symbols) if symbols else "none"
        result = args.run_root / clip.name / "result.json"
        ours = json.loads(result.read_text()).get("key", "?") if result.exists() else "?"
        mark = "✓" if ours.lower() == label.lower() else "✗"
        jumps, ceiling = written_time_check(clip, args.bench_dir)
        jump_text = ", ".join(f"{w:g}: {d:+g}" for w, d in jumps) or ("none" if ceiling is not None else "tempo moves")
        ceiling_text = f"{ceiling:.3f}" if ceiling is not None else "1.0 (not checked)"
        ceilings.append(1.0 if ceiling is None else ceiling)
        lines.append("| " + " | ".join([clip.name, label, sig, *found, f"{agree}/{len(found)}", symbol_text, f"{ours} {mark}",
                                          jump_text, ceiling_text]) + " |")
    lines.append("")
    lines.append(f"All five finders name the label on the true notes for {agree_total} of {len(clips)} clips.")
    lines.append(f"Mean score-note F1 of a perfect transcription of the audio: {sum(ceilings) / len(ceilings):.3f}.")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
