#!/usr/bin/env python3
"""Rendered-audio corpus bench (issues 17 and 18): the whole pipeline on FluidSynth renders.

Renders (or reuses, bench/corpus_render.py caches them) the validation clips
with each General MIDI soundfont, runs core.pipeline.run in mode auto on every
clip in this process with one Toolkit (models loaded once), scores each output
with ../shared/bench/score.py and reports, per soundfont:

- meter right, meter family right, tempo strict (8 %) and x2-tolerant, the
  share of x1.5 / x2/3 tempo errors, mean score-note F1 and note F1 (onset);
- auto's mode choice per clip, and "mode right": solo for a single-line tune, piano for a
  keyboard piece, piano (reduction) or stems for a chorale or quartet;
- broken down by listening condition (clean, room, phone) and by kind (line,
  keyboard, ensemble);
- FluidR3 against TimGM6mb on the same pieces: mode choice agreement, note F1
  and score-note F1 differences (issue 18 asks for them within 0.03).

Writes bench/results/rendered.json (per-clip rows, summaries, the git commit
measured at and whether core/ had uncommitted changes) and bench/results/rendered.md.

    .venv/bin/python bench/rendered_bench.py                        # 45 validation pieces x 2 soundfonts
    .venv/bin/python bench/rendered_bench.py --limit 5 --soundfont timgm6mb
    .venv/bin/python bench/rendered_bench.py --reuse                # keep pipeline outputs already there
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import corpus_render as cr  # noqa: E402

SCORE_PY = ROOT.parent / "shared" / "bench" / "score.py"
OUT_ROOT = cr.cp.RESULTS / "rendered_out"
RESULT_JSON = cr.cp.RESULTS / "rendered.json"
RESULT_MD = cr.cp.RESULTS / "rendered.md"
#: What auto mode may call each kind of piece (result.json evidence.kind): a tune is a line on
#: one staff; a keyboard piece goes on a grand staff (solo piano or organ, or a reduction);
#: an ensemble on a grand staff or in parts. "mode right" alone counts a solo piano (mode
#: solo, transkun, grand staff) as wrong for a keyboard piece, whose accepted mode is "piano".
SUITABLE = {"line": {"line"}, "keyboard": {"keyboard", "organ", "ensemble"},
            "ensemble": {"ensemble", "organ", "keyboard", "band"}}
#: Tempo ratio classes (estimate / true quarter tempo), each within 8 %.
RATIOS = (("x1", 1.0), ("x2", 2.0), ("x1/2", 0.5), ("x1.5", 1.5), ("x2/3", 2 / 3))


def load_score_module():
    spec = importlib.util.spec_from_file_location("shared_score", SCORE_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ratio_class(est: float | None, meta: dict, tempo_ok: bool | None) -> str:
    """x1 when score.py calls the tempo right, else the ratio to the quarter or notated-beat tempo."""
    if tempo_ok:
        return "x1"
    try:
        est = float(est)
    except (TypeError, ValueError):
        return "none"
    for ref in (float(meta["tempo_bpm"]), float(meta.get("tempo_beat_bpm") or meta["tempo_bpm"])):
        for name, value in RATIOS[1:]:
            if abs(est / ref / value - 1.0) <= 0.08:
                return name
    return "other"


def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "core").splitlines()]
    return dict(commit=git("rev-parse", "HEAD"), core_uncommitted=dirty)


def run_clips(folders: list[Path], out_root: Path, *, reuse: bool, log=print) -> dict[str, dict]:
    """core.pipeline.run in mode auto on every clip (one Toolkit); {clip key: result.json or error}."""
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.options import Options, parse_options
    from stemscribe.core.pipeline import Toolkit, run

    toolkit = Toolkit(engines=ModelCache(threads=0))
    t0 = time.perf_counter()
    toolkit.engines.preload(["basic-pitch", "transkun"])
    warm = ROOT / "stemscribe" / "examples" / "ode-to-joy-flute.ogg"
    if warm.exists():
        with tempfile.TemporaryDirectory() as tmp:
            run([warm], Path(tmp), Options(), toolkit=toolkit)
    log(f"models loaded and warm in {time.perf_counter() - t0:.1f} s")
    results = {}
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        out = out_root / folder.parent.name / folder.name
        key = f"{folder.parent.name}/{folder.name}"
        if reuse and (out / "result.json").exists():
            results[key] = json.loads((out / "result.json").read_text())
            continue
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        t1 = time.perf_counter()
        try:
            result = run([folder / meta["audio"]], out, parse_options("mode:auto"), toolkit=toolkit)
        except Exception as exc:  # a bench reports failures and carries on
            result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        result["wall_s"] = round(time.perf_counter() - t1, 2)
        (out / "bench_run.json").write_text(json.dumps({"wall_s": result["wall_s"], "error": result.get("error")}))
        results[key] = result
        log(f"  {key}: {result.get('mode', 'error')} {result['wall_s']} s {result.get('time_signature', '')} "
            f"{result.get('tempo_bpm', '')} {result.get('error', '')}")
    return results


def _mean(rows: list[dict], field: str) -> float | None:
    vals = [float(r[field]) if r.get(field) is not None else 0.0 for r in rows]
    return round(float(np.mean(vals)), 4) if vals else None


def summarize(rows: list[dict]) -> dict:
    n = len(rows)
    if not n:
        return {"n": 0}
    ratios = Counter(r["tempo_ratio"] for r in rows)
    return dict(
        n=n,
        meter_right=_mean(rows, "meter_ok"), meter_family=_mean(rows, "meter_ok_family"),
        tempo_strict=_mean(rows, "tempo_ok"), tempo_x2=_mean(rows, "tempo_ok_octave"),
        tempo_x1_5_or_x2_3=round((ratios["x1.5"] + ratios["x2/3"]) / n, 4),
        tempo_ratios=dict(sorted(ratios.items())),
        score_note_f1=_mean(rows, "score_note_f1"), note_f1=_mean(rows, "note_f1_onset"),
        key_ok=_mean(rows, "key_ok"),
        modes=dict(sorted(Counter(r["mode"] for r in rows).items())),
        mode_right=round(sum(r["mode"] in r["accepted_modes"] for r in rows) / n, 4),
        layout_right=round(sum(bool(r.get("layout_right")) for r in rows) / n, 4),
        errors=sum(1 for r in rows if r.get("error")),
        wall_s_mean=round(float(np.mean([r.get("wall_s") or 0.0 for r in rows])), 2),
    )


def compare(rows: list[dict], a: str = "fluidr3", b: str = "timgm6mb") -> dict:
    """The same pieces rendered with two soundfonts: mode agreement and F1 differences (b - a)."""
    by = {}
    for r in rows:
        by.setdefault(r["clip"], {})[r["soundfont"]] = r
    pairs = [(v[a], v[b]) for v in by.values() if a in v and b in v]
    if not pairs:
        return {"pairs": 0}
    d_note = [(y.get("note_f1_onset") or 0.0) - (x.get("note_f1_onset") or 0.0) for x, y in pairs]
    d_score = [(y.get("score_note_f1") or 0.0) - (x.get("score_note_f1") or 0.0) for x, y in pairs]
    return dict(
        pairs=len(pairs),
        mode_agreement=round(sum(x["mode"] == y["mode"] for x, y in pairs) / len(pairs), 4),
        meter_agreement=round(sum(x.get("meter_est") == y.get("meter_est") for x, y in pairs) / len(pairs), 4),
        note_f1_mean_diff=round(float(np.mean(d_note)), 4),
        note_f1_mean_abs_diff=round(float(np.mean(np.abs(d_note))), 4),
        note_f1_within_0_03=round(float(np.mean(np.abs(d_note) <= 0.03)), 4),
        score_note_f1_mean_diff=round(float(np.mean(d_score)), 4),
        score_note_f1_mean_abs_diff=round(float(np.mean(np.abs(d_score))), 4),
        mode_disagreements=[dict(clip=x["clip"], **{a: x["mode"], b: y["mode"]})
                            for x, y in pairs if x["mode"] != y["mode"]],
    )


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "✓" if v else "✗"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def markdown(report: dict) -> str:
    cols = [("n", "clips"), ("meter_right", "meter"), ("meter_family", "meter family"), ("tempo_strict", "tempo 8 %"),
            ("tempo_x2", "tempo ×2"), ("tempo_x1_5_or_x2_3", "×1.5/×⅔"), ("score_note_f1", "score-note F1"),
            ("note_f1", "note F1"), ("key_ok", "key"), ("mode_right", "mode right"), ("layout_right", "layout right")]
    lines = [f"Rendered corpus bench, {report['split']} split, mode auto, commit {report['git']['commit'][:10]}"
             + (f" (core/ uncommitted: {', '.join(report['git']['core_uncommitted'])})"
                if report["git"]["core_uncommitted"] else ""), "",
             "| set | " + " | ".join(h for _, h in cols) + " | modes |", "|---|" + "---|" * (len(cols) + 1)]
    for name, s in report["summary"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(s.get(k)) for k, _ in cols)
                     + f" | {', '.join(f'{m} {c}' for m, c in s.get('modes', {}).items())} |")
    c = report["comparison"]
    if c.get("pairs"):
        lines += ["", f"FluidR3 vs TimGM6mb on the same {c['pairs']} pieces: mode choice agrees on "
                      f"{c['mode_agreement']:.3f}, meter on {c['meter_agreement']:.3f}; note F1 difference "
                      f"(TimGM6mb − FluidR3) mean {c['note_f1_mean_diff']:+.3f}, mean |Δ| {c['note_f1_mean_abs_diff']:.3f}, "
                      f"within 0.03 on {c['note_f1_within_0_03']:.3f} of pieces; score-note F1 mean Δ "
                      f"{c['score_note_f1_mean_diff']:+.3f} (mean |Δ| {c['score_note_f1_mean_abs_diff']:.3f})."]
    lines += ["", "| clip | soundfont | kind | condition | true meter / tempo | written | mode (right modes) | "
                  "score-note F1 | note F1 | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["clips"]:
        lines.append(f"| {r['clip']} | {r['soundfont']} | {r['kind']} | {r['condition']} | "
                     f"{r['meter_true']} / {r['tempo_true']:.0f} | {fmt(r.get('meter_est'))} / {fmt(r.get('tempo_est'))} "
                     f"({r['tempo_ratio']}) | {r['mode']} ({'/'.join(r['accepted_modes'])}) | {fmt(r.get('score_note_f1'))} | "
                     f"{fmt(r.get('note_f1_onset'))} | {fmt(r.get('wall_s'))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="validation", choices=["validation", "train"])
    ap.add_argument("--count", type=int, default=45, help="pieces to render (each with every soundfont)")
    ap.add_argument("--limit", type=int, help="run the pipeline on the first N pieces only")
    ap.add_argument("--soundfont", action="append", choices=sorted(cr.SOUNDFONTS),
                    help="this soundfont only (repeatable); default both")
    ap.add_argument("--reuse", action="store_true", help="keep pipeline outputs that are already there")
    ap.add_argument("--out", type=Path, default=RESULT_JSON)
    a = ap.parse_args(argv)
    if not shutil.which("fluidsynth"):
        print("fluidsynth is not installed: run scripts/bench-deps", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    t0 = time.time()
    soundfonts = a.soundfont or list(cr.SOUNDFONTS)
    count = min(a.count, a.limit) if a.limit else a.count
    folders = cr.build(a.split, count, soundfonts, log=lambda *_: None)
    render_s = time.time() - t0
    print(f"{len(folders)} clips rendered or reused in {render_s:.0f} s", flush=True)
    git = git_state()
    results = run_clips(folders, OUT_ROOT, reuse=a.reuse, log=lambda s: print(s, flush=True))
    score = load_score_module()
    rows = []
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        key = f"{folder.parent.name}/{folder.name}"
        result = results[key]
        res = score.score_clip(str(folder), str(OUT_ROOT / folder.parent.name / folder.name))
        row = dict(clip=folder.name, soundfont=meta["soundfont"], kind=meta["kind"], ensemble=meta["ensemble"],
                   condition=meta["condition"], meter_true=meta["time_signature"], tempo_true=meta["tempo_bpm"],
                   pickup_q=meta["pickup_q"], suggested_mode=meta["suggested_mode"],
                   accepted_modes=meta["accepted_modes"],
                   mode=result.get("mode", "error"), mode_reason=result.get("mode_reason"),
                   auto_kind=(result.get("evidence") or {}).get("kind"),
                   wall_s=result.get("wall_s"), error=result.get("error"))
        row["layout_right"] = row["auto_kind"] in SUITABLE.get(meta["kind"], ())
        for k in ("note_f1_onset", "note_precision", "note_recall", "score_note_f1", "tempo_est", "tempo_ok",
                  "tempo_ok_octave", "meter_est", "meter_ok", "meter_ok_family", "key_est", "key_ok"):
            row[k] = res.get(k)
        row["tempo_ratio"] = ratio_class(row["tempo_est"], meta, row["tempo_ok"])
        rows.append(row)
    summary = {}
    for sf_name in soundfonts:
        sf_rows = [r for r in rows if r["soundfont"] == sf_name]
        summary[sf_name] = summarize(sf_rows)
        for group in ("condition", "kind"):
            for value in sorted({r[group] for r in sf_rows}):
                summary[f"{sf_name} · {value}"] = summarize([r for r in sf_rows if r[group] == value])
    confusion: dict[str, dict[str, int]] = {}
    for r in rows:
        confusion.setdefault(r["meter_true"], Counter())[str(r.get("meter_est"))] += 1
    report = dict(split=a.split, soundfonts=soundfonts, git=git, generator_version=cr.GENERATOR_VERSION,
                  seed=cr.SEED, render_s=round(render_s, 1), total_s=round(time.time() - t0, 1),
                  summary=summary, comparison=compare(rows), meter_confusion={k: dict(v) for k, v in confusion.items()},
                  clips=rows)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = markdown(report)
    a.out.with_suffix(".md").write_text(md)
    print(md)
    print(f"total {report['total_s']:.0f} s -> {a.out}, {a.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
