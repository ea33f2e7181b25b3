"""Speed bench: per engine path, per pipeline stage, warm worker and cold CLI, with note F1 beside each time.

Run (2 cores; other work on the machine makes wall times noisy, so every timing
is repeated and the minimum kept, and process CPU time is recorded beside it):

    nice -n 5 .venv/bin/python bench/speed.py --label after [--repeats 2] [--parts engines,mix,pipeline,cold]
    .venv/bin/python bench/speed.py --compare bench/results/speed-before.json bench/results/speed-after.json

Parts:
- engines: each engine path warm (models loaded once, as a worker does) on the dev
  clips it serves: solo basic-pitch (01, 02, 09 and a 60 s clip made of 01 + 02),
  piano transkun (03, 05, 10), fusion (04, 06, 07, 08); wall, CPU, × real time,
  note F1 (50 ms onsets, tests/helpers/engines_eval.py) against the clip's pitched
  ground truth.
- mix: a 3-minute mix (the dev set's band, ensemble and piano clips 07, 08, 04, 06,
  03, 10 end to end, cut at 180 s, ground truth shifted alike) through transkun
  and fusion warm.
- pipeline: core.pipeline.run in mode auto on the 3-minute mix with one reused
  Toolkit (warm worker), per-stage wall times from result.json.
- cold: `python -m stemscribe transcribe` in a fresh process on a dev clip: time
  from spawn to the first progress line, to the decode line, and to exit.
- stems: the stems path (demucs) when its weights are installed, else skipped.

Writes bench/results/speed-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.engines_eval import clip_dir, load_gt, onset_f1  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SR = 44100
MIX_CLIPS = ("07", "08", "04", "06", "03", "10")
MIX_SECONDS = 180.0
PATHS = {
    "basic-pitch": ("01", "02", "09", "60s"),
    "transkun": ("03", "05", "10"),
    "fusion": ("04", "06", "07", "08"),
}


def _audio(prefix: str) -> np.ndarray:
    from stemscribe.core.audio import decode

    path = next(clip_dir(prefix).glob("audio.*"))
    return decode(path, sample_rate=SR, mono=True).samples[0]


def _concat(prefixes, seconds: float | None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Clips end to end (cut at ``seconds``), with their pitched ground truth shifted alike."""
    pieces, ivs, ps, offset = [], [], [], 0.0
    for prefix in prefixes:
        x = _audio(prefix)
        iv, p = load_gt(prefix, None)
        pieces.append(x)
        ivs.append(iv + offset)
        ps.append(p)
        offset += len(x) / SR
    x = np.concatenate(pieces)
    iv, p = np.concatenate(ivs), np.concatenate(ps)
    if seconds is not None:
        x = x[:int(seconds * SR)]
        keep = iv[:, 0] < seconds
        iv, p = iv[keep], p[keep]
        iv[:, 1] = np.minimum(iv[:, 1], seconds)
    return x.astype(np.float32), (iv, p)


def _case(prefix: str):
    if prefix == "60s":
        return _concat(("01", "02"), 60.0)
    return _audio(prefix), load_gt(prefix, None)


def _timed(fn, repeats: int):
    """(min wall s, min CPU s, last result) of ``repeats`` calls."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


def _row(path: str, case: str, x: np.ndarray, gt, fn, repeats: int) -> dict:
    wall, cpu, notes = _timed(fn, repeats)
    duration = len(x) / SR
    f1 = onset_f1(gt, notes)[2]
    row = dict(path=path, case=case, audio_s=round(duration, 2), wall_s=round(wall, 2), cpu_s=round(cpu, 2),
               rt=round(wall / duration, 3), notes=len(notes), note_f1=round(f1, 4))
    print(json.dumps(row), flush=True)
    return row


def bench_engines(cache, repeats: int) -> list[dict]:
    rows = []
    for path, cases in PATHS.items():
        engine = cache.get(path)
        for case in cases:
            x, gt = _case(case)
            rows.append(_row(path, case, x, gt, lambda: engine.transcribe(x, SR), repeats))
    return rows


def bench_mix(cache, repeats: int) -> list[dict]:
    x, gt = _concat(MIX_CLIPS, MIX_SECONDS)
    rows = []
    for path in ("basic-pitch", "transkun", "fusion"):
        engine = cache.get(path)
        rows.append(_row(path, "mix180", x, gt, lambda: engine.transcribe(x, SR), repeats))
    return rows


def _write_mix(folder: Path) -> Path:
    import soundfile as sf

    x, _ = _concat(MIX_CLIPS, MIX_SECONDS)
    path = folder / "mix180.flac"
    sf.write(str(path), x, SR)
    return path


def bench_pipeline(toolkit, repeats: int) -> list[dict]:
    from stemscribe.core.options import Options
    from stemscribe.core.pipeline import run

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mix = _write_mix(Path(tmp))
        _, gt = _concat(MIX_CLIPS, MIX_SECONDS)
        for i in range(repeats):
            out = Path(tmp) / f"out{i}"
            c0, t0 = time.process_time(), time.perf_counter()
            result = run([mix], out, Options(), toolkit=toolkit)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            row = dict(path="pipeline-auto", case="mix180", audio_s=MIX_SECONDS, wall_s=round(wall, 2),
                       cpu_s=round(cpu, 2), rt=round(wall / MIX_SECONDS, 3), mode=result.get("mode"),
                       stages=result.get("timings_s"), note_f1=round(_midi_f1(out / "notes.mid", gt), 4))
            print(json.dumps(row), flush=True)
            rows.append(row)
    best = min(rows, key=lambda r: r["wall_s"])
    return [best]


def _midi_f1(path: Path, gt) -> float:
    import pretty_midi

    from stemscribe.core.notes import Note

    midi = pretty_midi.PrettyMIDI(str(path))
    notes = [Note(n.start, n.end, n.pitch, n.velocity) for inst in midi.instruments if not inst.is_drum
             for n in inst.notes]
    return onset_f1(gt, notes)[2]


def bench_cold(repeats: int, clip: str = "03") -> list[dict]:
    audio = next(clip_dir(clip).glob("audio.*"))
    rows = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "stemscribe", "transcribe", str(audio), "--out", tmp],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp,
                                    env={**os.environ, "PYTHONWARNINGS": "ignore"})
            first = decode_at = None
            for line in proc.stderr:
                now = time.perf_counter() - t0
                if first is None and "%" in line:
                    first = now
                if decode_at is None and "decode" in line:
                    decode_at = now
            proc.wait()
            total = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            rows.append(dict(path="cold-cli", case=clip, rc=proc.returncode, first_line_s=_r(first),
                             decode_s=_r(decode_at), wall_s=round(total, 2), cpu_s=round(cpu, 2)))
            print(json.dumps(rows[-1]), flush=True)
    return [{k: (min(r[k] for r in rows if r[k] is not None) if k.endswith("_s") else v)
             for k, v in rows[0].items()}]


def _r(x):
    return None if x is None else round(x, 2)


def bench_stems(toolkit, repeats: int) -> list[dict]:
    if not toolkit.separation_available("htdemucs"):
        print(json.dumps(dict(path="stems", skipped="htdemucs weights not installed")), flush=True)
        return []
    from stemscribe.core.options import options_from_pairs
    from stemscribe.core.pipeline import run

    audio = next(clip_dir("07").glob("audio.*"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t0 = time.perf_counter()
            result = run([audio], Path(tmp) / f"s{i}", options_from_pairs({"mode": "stems"}), toolkit=toolkit)
            rows.append(dict(path="stems", case="07", wall_s=round(time.perf_counter() - t0, 2),
                             stages=result.get("timings_s")))
            print(json.dumps(rows[-1]), flush=True)
    return [min(rows, key=lambda r: r["wall_s"])]


def compare(before_path: Path, after_path: Path) -> None:
    """Print a before/after markdown table of two result files."""
    before, after = (json.loads(Path(p).read_text()) for p in (before_path, after_path))

    def key(r):
        return (r["path"], r["case"])

    old = {key(r): r for r in before["rows"]}
    print("| path | case | audio s | wall s before → after | × real time | CPU s | note F1 before → after |")
    print("|---|---|---|---|---|---|---|")
    for r in after["rows"]:
        o = old.get(key(r), {})
        if r["path"] == "cold-cli":
            print(f"| cold CLI first line / decode / exit | {r['case']} | | "
                  f"{o.get('first_line_s')} / {o.get('decode_s')} / {o.get('wall_s')} → "
                  f"{r['first_line_s']} / {r['decode_s']} / {r['wall_s']} | | {o.get('cpu_s')} → {r['cpu_s']} | |")
            continue
        print(f"| {r['path']} | {r['case']} | {r.get('audio_s', '')} | {o.get('wall_s')} → {r['wall_s']} | "
              f"{o.get('rt')} → {r.get('rt')} | {o.get('cpu_s')} → {r.get('cpu_s')} | "
              f"{o.get('note_f1')} → {r.get('note_f1')} |")
        if r.get("stages"):
            print(f"| | stages | | {o.get('stages')} → {r['stages']} | | | |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="engine threads (the worker's STEMSCRIBE_TORCH_THREADS)")
    ap.add_argument("--parts", default="engines,mix,pipeline,cold,stems")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args(argv)
    if args.compare:
        compare(*args.compare)
        return 0
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.toolkit import Toolkit

    parts = args.parts.split(",")
    cache = ModelCache(threads=args.threads)
    toolkit = Toolkit(engines=cache, threads=args.threads)
    t0 = time.perf_counter()
    cache.preload(["basic-pitch", "transkun", "fusion"])
    rows = [dict(path="load", case="models", wall_s=round(time.perf_counter() - t0, 2))]
    if "engines" in parts:
        rows += bench_engines(cache, args.repeats)
    if "mix" in parts:
        rows += bench_mix(cache, args.repeats)
    if "pipeline" in parts:
        rows += bench_pipeline(toolkit, args.repeats)
    if "stems" in parts:
        rows += bench_stems(toolkit, 1)
    if "cold" in parts:
        rows += bench_cold(args.repeats)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"speed-{args.label}.json"
    info = dict(label=args.label, threads=args.threads, cpus=os.cpu_count(), load=os.getloadavg(),
                when=time.strftime("%Y-%m-%d %H:%M:%S"), rows=rows)
    out.write_text(json.dumps(info, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
