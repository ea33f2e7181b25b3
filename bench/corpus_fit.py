#!/usr/bin/env python3
"""Fit meter.py's joint meter scorer (METER_SCORER_WEIGHTS) on the corpus bench's TRAIN split.

For every train performance (bench/corpus_perform.py, seeded, damaged) the
hypotheses of meter.meter_hypotheses are built and the true one marked (true
meter, the eighth length whose quarter tempo is within 8 % of the performed
one, the phase putting a downbeat on the true first downbeat); the weights
maximise the conditional-logit likelihood of the true hypotheses (L2 penalty
L2, Adam). Pieces whose tracked pulse admits no true hypothesis are counted
and left out. Prints the weights as the dict to paste into meter.py.

    .venv/bin/python bench/corpus_fit.py [--seed 17]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import corpus_perform as cp  # noqa: E402
from stemscribe.core.notation import meter, rhythm  # noqa: E402
from stemscribe.core.notes import Track  # noqa: E402

L2 = 0.01
STEPS = 1500


def piece_data(perf: cp.Performance):
    notate_mod = importlib.import_module("stemscribe.core.notation.notate")
    notes = notate_mod._clean(Track("Piano", "piano", list(perf.notes))).notes
    beats, events = rhythm.track_beats(notes, None, 22050, pitched=notes)
    first = min(n.start_s for n in notes)
    hyps, feats, grids = meter.meter_hypotheses(beats, events, first)
    if not hyps:
        return None
    pulse_s = float(np.median(np.diff(beats)))
    truth = None
    for i, (ts, e, phase) in enumerate(hyps):
        if ts != perf.time_signature:
            continue
        bpm = 60.0 / (2 * e * pulse_s)
        if abs(bpm / perf.tempo_bpm - 1) > 0.08:
            continue
        tatums = grids[e]
        j = int(np.argmin(np.abs(tatums - perf.downbeat_s)))
        if j % meter.SCORER_METERS[ts][0] == phase:
            truth = i
            break
    return None if truth is None else (feats, truth)


def fit(data: list[tuple[np.ndarray, int]], l2: float = L2, steps: int = STEPS) -> np.ndarray:
    """Conditional-logit weights (in raw feature units) by Adam on standardised features."""
    allf = np.vstack([f for f, _ in data])
    mu, sd = allf.mean(axis=0), allf.std(axis=0)
    sd[sd == 0] = 1.0
    zs = [((f - mu) / sd, t) for f, t in data]
    w = np.zeros(allf.shape[1])
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for step in range(1, steps + 1):
        grad = l2 * w * len(zs)
        for z, t in zs:
            s = z @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            grad += p @ z - z[t]
        grad /= len(zs)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= 0.05 * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
    raw = w / sd   # the constant -mu/sd shift is the same for every hypothesis of a piece
    return raw


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args(argv)
    data, missing = [], 0
    for ex in cp.load_excerpts():
        if cp.split_of(ex["key"]) != "train":
            continue
        for seed in (args.seed, args.seed + 1000):
            d = piece_data(cp.perform(ex, seed))
            if d is None:
                missing += 1
            else:
                data.append(d)
    w = fit(data)
    acc = np.mean([int(np.argmax(f @ w)) == t for f, t in data])
    weights = {name: round(float(x), 4) for name, x in zip(meter.SCORER_FEATURES, w)}
    print(f"# {len(data)} train performances ({missing} with no true hypothesis); train top-1 {acc:.3f}")
    print("METER_SCORER_WEIGHTS = " + json.dumps(weights, indent=4))
    (cp.RESULTS / "meter_scorer_weights.json").write_text(json.dumps(weights, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
