#!/usr/bin/env python3
"""What the dev set's key labels mean: standard key finders run on the ground-truth score itself.

Usage:
    .venv/bin/python bench/key_labels.py [--devset ../shared/devset] [--run-root bench/results/stemscribe]
        [--out bench/results/key_labels.md]

For every clip it prints the labelled key (meta.json), the key signature written
in gt.musicxml, what music21's five key-finding algorithms (Krumhansl-Schmuckler,
Aarden-Essen, Bellman-Budge, Temperley-Kostka-Payne, simple weights) say of the
written notes of gt.musicxml (no audio, no transcription: the best case for any
content-based detector), and stemscribe's key from a bench/run_devset.py output.
A label that every finder contradicts on the true notes follows the composer's
key signature rather than the notes of the excerpt (e.g. a Bach chorale in F
minor written with three flats), and no detector listening to the excerpt can be
expected to name it.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parent.parent
ALGORITHMS = [("krumhansl", "key.krumhanslschmuckler"), ("aarden", "key.aardenessen"),
              ("bellman", "key.bellman"), ("temperley", "key.temperleykostkapayne"), ("simple", "key.simple")]


def _name(k) -> str:
    return f"{k.tonic.name.replace('-', 'b')} {k.mode}"


def main(argv: list[str] | None = None) -> int:
    """Print (and write) the per-clip table of labels, signatures and finders' keys."""
    import music21

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devset", type=Path, default=ROOT.parent / "shared" / "devset")
    ap.add_argument("--run-root", type=Path, default=ROOT / "bench" / "results" / "stemscribe")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "key_labels.md")
    args = ap.parse_args(argv)
    head = ["clip", "label", "signature"] + [a for a, _ in ALGORITHMS] + ["finders agree with label", "stemscribe"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    agree_total = 0
    clips = sorted(p for p in args.devset.iterdir() if (p / "meta.json").exists())
    for clip in clips:
        label = json.loads((clip / "meta.json").read_text())["key"]
        score = music21.converter.parse(str(clip / "gt.musicxml"))
        sigs = list(score.recurse().getElementsByClass(music21.key.KeySignature))
        sig = f"{sigs[0].sharps:+d}" if sigs else "none"
        found = [_name(score.analyze(alg)) for _, alg in ALGORITHMS]
        agree = sum(f.lower() == label.lower() for f in found)
        agree_total += agree == len(found)
        result = args.run_root / clip.name / "result.json"
        ours = json.loads(result.read_text()).get("key", "?") if result.exists() else "?"
        mark = "✓" if ours.lower() == label.lower() else "✗"
        lines.append("| " + " | ".join([clip.name, label, sig, *found, f"{agree}/{len(found)}", f"{ours} {mark}"]) + " |")
    lines.append("")
    lines.append(f"All five finders name the label on the true notes for {agree_total} of {len(clips)} clips.")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
