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
import pickle
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
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
#: The scorer model: hidden units, full-batch AdamW steps, weight decay.
HIDDEN = 16
MLP_STEPS = 600
MLP_DECAY = 0.3
ENSEMBLE = 5
MODEL_FILE = ROOT / "core" / "notation" / "meter_model.py"


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


def _piece_job(args: tuple[dict, int, str]):
    warnings.filterwarnings("ignore")
    ex, seed, style = args
    perf = cp.perform(ex, seed, damage=style == "damaged", exact=style == "exact")
    d = piece_data(perf)
    return None if d is None else (d[0].astype(np.float32), d[1], perf.time_signature)


def collect(split: str, seeds: list[int], workers: int = 2, style: str = "damaged"
            ) -> tuple[list[tuple[np.ndarray, int, str]], int]:
    """Hypothesis features and the true hypothesis of every performance of a split (seeds x pieces).

    style: "damaged" (transcription-like damage), "clean" (humanized, no damage) or "exact"
    (steady tempo, almost no jitter, no damage: a sequencer's rendering).
    """
    pieces = [ex for ex in cp.load_excerpts() if cp.split_of(ex["key"]) == split]
    if split == "train":
        pieces += cp.load_extra_train()
    jobs = [(ex, s, style) for ex in pieces for s in seeds]
    with ProcessPoolExecutor(workers) as pool:
        out = list(pool.map(_piece_job, jobs, chunksize=4))
    return [d for d in out if d is not None], sum(1 for d in out if d is None)


def fit_mlp(data: list[tuple[np.ndarray, int]], hidden: int = HIDDEN, steps: int = MLP_STEPS,
            decay: float = MLP_DECAY, seed: int = 0) -> dict:
    """A one-hidden-layer scorer of hypothesis rows, trained by softmax over each piece's hypotheses."""
    import torch

    torch.manual_seed(seed)
    allf = np.vstack([f for f, _ in data])
    mu, sd = allf.mean(axis=0), allf.std(axis=0)
    sd[sd == 0] = 1.0
    xs = [torch.tensor((f - mu) / sd, dtype=torch.float32) for f, _ in data]
    ts = [int(t) for _, t in data]
    n_in = allf.shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=decay)
    # One batch of every piece: the hypotheses stacked, a segment id per row.
    x = torch.cat(xs)
    seg = torch.cat([torch.full((len(v),), i, dtype=torch.long) for i, v in enumerate(xs)])
    offsets = np.cumsum([0] + [len(v) for v in xs])[:-1]
    target = torch.tensor(offsets + np.array(ts), dtype=torch.long)
    n = len(xs)
    for _ in range(steps):
        s = net(x).squeeze(1)
        m = torch.zeros(n).scatter_reduce(0, seg, s, reduce="amax", include_self=False)
        lse = torch.log(torch.zeros(n).index_add(0, seg, torch.exp(s - m[seg]))) + m
        loss = (lse - s[target]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    w2, b2 = net[2].weight.detach().numpy()[0], float(net[2].bias.detach().numpy()[0])
    return dict(features=list(meter.SCORER_FEATURES), mean=mu.tolist(), scale=sd.tolist(),
                w1=w1.T.tolist(), b1=b1.tolist(), w2=w2.tolist(), b2=b2)


def top1(data, score) -> tuple[float, float]:
    """Share of performances whose best hypothesis is the true one, and whose best meter is right."""
    hyp = meter_ok = 0
    for f, t, *_ in data:
        best = int(np.argmax(score(f)))
        hyp += best == t
        meter_ok += best == t or _meter_of(f, best) == _meter_of(f, t)
    return hyp / len(data), meter_ok / len(data)


def _meter_of(f: np.ndarray, i: int) -> int:
    one_hot = [meter.SCORER_FEATURES.index(f"is_{ts}") for ts in meter.SCORER_METERS]
    return int(np.argmax(f[i, one_hot]))


def write_model(models: list[dict], path: Path = MODEL_FILE, note: str = "") -> None:
    """Write the fitted models as a Python module meter.py imports (no data file to ship)."""
    rounded = [{k: (np.round(np.asarray(v, dtype=float), 5).tolist() if k != "features" and isinstance(v, list)
                    else v) for k, v in m.items()} for m in models]
    path.write_text(
        '"""Joint meter scorer weights, fitted by bench/corpus_fit.py on the corpus bench\'s TRAIN split.\n\n'
        f"{note}\nDo not edit: rerun the fit.\n\"\"\"\n\n"
        f"MODEL = {json.dumps(rounded)}\n")


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--seeds", type=int, default=6, help="performances per train piece")
    ap.add_argument("--linear", action="store_true", help="refit the linear weights instead of the model")
    ap.add_argument("--hidden", type=int, default=HIDDEN)
    ap.add_argument("--steps", type=int, default=MLP_STEPS)
    ap.add_argument("--decay", type=float, default=MLP_DECAY)
    ap.add_argument("--ensemble", type=int, default=ENSEMBLE, help="models averaged (different initial weights)")
    ap.add_argument("--with-exact", action="store_true",
                    help="also train on one clean and one sequencer-exact performance per piece")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    styles = "_styles" if args.with_exact else ""
    cache = cp.RESULTS / f"meter_fit_data_{args.seed}_{args.seeds}_{len(meter.SCORER_FEATURES)}{styles}.pkl"
    if cache.exists():
        train, missing, val = pickle.loads(cache.read_bytes())
    else:
        train, missing = collect("train", [args.seed + 1000 * k for k in range(args.seeds)])
        # --with-exact: besides the damaged performances, one undamaged and one sequencer-exact per
        # piece. Measured: validation meter 0.547 instead of 0.522 at JOINT_DECIDES_CONFIDENCE 0.7,
        # but the dev set's tempo 8/10 at every threshold that keeps the notation tests, so not shipped.
        for k, style in enumerate(("clean", "exact") if args.with_exact else ()):
            more, lost = collect("train", [args.seed + 1000 * (args.seeds + k)], style=style)
            train += more
            missing += lost
        val, _ = collect("validation", [args.seed])
        cache.write_bytes(pickle.dumps((train, missing, val)))
    print(f"# {len(train)} train performances ({missing} with no true hypothesis), {len(val)} validation")
    if args.linear:
        w = fit([(f, t) for f, t, _ in train])
        weights = {name: round(float(x), 4) for name, x in zip(meter.SCORER_FEATURES, w)}
        print("train / validation top-1 (hypothesis, meter):", top1(train, lambda f: f @ w), top1(val, lambda f: f @ w))
        print("METER_SCORER_WEIGHTS = " + json.dumps(weights, indent=4))
        return 0
    model = [fit_mlp([(f, t) for f, t, _ in train], hidden=args.hidden, steps=args.steps, decay=args.decay,
                     seed=k) for k in range(args.ensemble)]
    tr, va = top1(train, lambda f: meter.mlp_scores(f, model)), top1(val, lambda f: meter.mlp_scores(f, model))
    print(f"train top-1 hypothesis {tr[0]:.3f} meter {tr[1]:.3f}; validation (true hypothesis found) "
          f"hypothesis {va[0]:.3f} meter {va[1]:.3f}")
    if not args.no_write:
        extra = ", one clean and one sequencer-exact" if args.with_exact else ""
        write_model(model, note=f"{len(train)} train performances ({args.seeds} damaged{extra} per piece, "
                    f"seed {args.seed}), "
                    f"{args.ensemble} models, hidden {args.hidden}, {args.steps} steps, weight decay {args.decay}; train top-1 "
                    f"hypothesis {tr[0]:.3f}, meter {tr[1]:.3f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
