#!/usr/bin/env python3
"""Per-part F1 of the ensembles and band mixes, three ways: perfect stems, real separation, reduction.

Usage:
    .venv/bin/python bench/stems_parts.py [--devset ../shared/devset] [--clips 04 06 07 08]
                                          [--ways perfect separated reduction] [--threads 2]
                                          [--model models/htdemucs.onnx]

For each clip, ../shared/bench/part_f1.py scores the output's notes.mid against
the clip's ground-truth parts (Hungarian pairing of true parts to output tracks):

  perfect    the clip's stems/ files through core.pipeline.run in mode multitrack
             (a perfect separator);
  separated  the mix split by the htdemucs ONNX export (core.separate_onnx), then
             core.pipeline.run in mode stems end to end (routing, artifact guard,
             melody split); also scored with the split's Melody and Accompaniment
             tracks merged back into one (the "no split" number: the split only
             partitions one stem's notes, so the merge is exactly the unsplit part);
  reduction  core.pipeline.run in mode piano (the reduction mode auto falls back to).

Separated stems are cached as WAV under bench/results/stems_cache/<clip>/ (git-ignored),
so a rerun costs only the transcriptions. Writes bench/results/stems_parts.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = ("04", "06", "07", "08")
WAYS = ("perfect", "separated", "reduction")


def _reserved(devset: Path) -> set[str]:
    """The corpus paths ../shared/bench/reserved.txt holds out (comment lines start with '#')."""
    listing = devset.parent / "bench" / "reserved.txt"
    if not listing.exists():
        return set()
    return {line.strip().lower() for line in listing.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


def separated_stems(clip: Path, mix_path: Path, model_path: Path, threads: int, cache: Path) -> tuple[dict, float]:
    """The ONNX separation of one clip, from the cache when it is there; (stems, seconds spent separating)."""
    from stemscribe.core.audio import decode

    folder = cache / clip.name
    done = folder / "done.json"
    if done.exists():
        names = json.loads(done.read_text())["stems"]
        return {name: decode(folder / "stems" / f"{name}.wav", sample_rate=44100) for name in names}, 0.0
    from stemscribe.core.separate import write_stems
    from stemscribe.core.separate_onnx import OnnxHTDemucs, OnnxSeparator

    separator = OnnxSeparator(OnnxHTDemucs(model_path, threads=threads))
    started = time.perf_counter()
    stems = separator.separate(decode(mix_path, sample_rate=44100))
    seconds = time.perf_counter() - started
    write_stems(stems, folder, fmt="wav")
    done.write_text(json.dumps({"stems": list(stems), "separate_s": round(seconds, 1)}))
    return stems, seconds


class _CachedSeparator:
    """Hands the pipeline stems separated earlier (same contract as core.separate.Separator)."""

    def __init__(self, stems: dict) -> None:
        self.stems = stems

    def separate(self, audio, reporter=None) -> dict:
        return dict(self.stems)


def _toolkit_with(stems: dict | None, threads: int):
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.toolkit import Toolkit

    class CachedToolkit(Toolkit):
        def separator(self, name: str):
            return _CachedSeparator(stems)

        def require_separation(self, name: str) -> None:
            return None

    return CachedToolkit(engines=ModelCache(threads=threads), threads=threads)


def part_f1(clip: Path, out_dir: Path) -> dict:
    """../shared/bench/part_f1.py on one output folder (its JSON)."""
    script = clip.parent.parent / "bench" / "part_f1.py"
    proc = subprocess.run([sys.executable, str(script), "--gt", str(clip), "--out", str(out_dir), "--json"],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def merged_split(out_dir: Path, result: dict, merged_dir: Path) -> bool:
    """notes.mid with each split stem's Melody + Accompaniment tracks merged back; False when nothing was split."""
    import pretty_midi

    groups = [entry["split"]["tracks"] for entry in result.get("stems", []) if (entry.get("split") or {}).get("split")]
    if not groups:
        return False
    midi = pretty_midi.PrettyMIDI(str(out_dir / "notes.mid"))
    for names in groups:
        members = [inst for inst in midi.instruments if inst.name in names]
        if len(members) < 2:
            continue
        keep = members[0]
        for other in members[1:]:
            keep.notes.extend(other.notes)
            midi.instruments.remove(other)
        keep.notes.sort(key=lambda n: n.start)
    merged_dir.mkdir(parents=True, exist_ok=True)
    midi.write(str(merged_dir / "notes.mid"))
    return True


def bench_clip(clip: Path, ways: list[str], args, out_root: Path) -> dict:
    from stemscribe.core.options import Mode, Options
    from stemscribe.core.pipeline import run

    meta = json.loads((clip / "meta.json").read_text())
    mix_path = clip / meta["audio"]
    row: dict = {"clip": clip.name, "ways": {}}
    for way in ways:
        out_dir = out_root / clip.name / way
        started = time.perf_counter()
        if way == "perfect":
            inputs = [clip / rel for rel in meta["stems"] if "drums" not in Path(rel).stem]
            result = run(inputs, out_dir, Options(mode=Mode.MULTITRACK), toolkit=_toolkit_with(None, args.threads))
        elif way == "separated":
            stems, separate_s = separated_stems(clip, mix_path, args.model, args.threads, args.cache)
            row["separate_s"] = round(separate_s, 1)
            result = run([mix_path], out_dir, Options(mode=Mode.STEMS), toolkit=_toolkit_with(stems, args.threads))
        else:
            result = run([mix_path], out_dir, Options(mode=Mode.PIANO), toolkit=_toolkit_with(None, args.threads))
        scored = part_f1(clip, out_dir)
        entry = {"per_part": scored["per_part"], "pairs": scored["pairs"], "mean": scored["mean_part_f1"],
                 "seconds": round(time.perf_counter() - started, 1)}
        if way == "separated":
            entry["stems"] = result.get("stems", [])
            if merged_split(out_dir, result, out_root / clip.name / "separated-unsplit"):
                unsplit = part_f1(clip, out_root / clip.name / "separated-unsplit")
                entry["unsplit"] = {"per_part": unsplit["per_part"], "pairs": unsplit["pairs"],
                                    "mean": unsplit["mean_part_f1"]}
        row["ways"][way] = entry
    return row


def _cell(entry: dict | None, part: str) -> str:
    return f"{entry['per_part'][part]:.3f}" if entry and part in entry["per_part"] else "  -  "


def main(argv: list[str] | None = None) -> int:
    """Run the chosen ways over the chosen clips, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devset", type=Path, default=ROOT.parent / "shared" / "devset")
    parser.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS))
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=WAYS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "htdemucs.onnx")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "results" / "stems_cache")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stems_parts_out")
    parser.add_argument("--json-path", type=Path, default=ROOT / "bench" / "results" / "stems_parts.json")
    parser.add_argument("--separate-only", action="store_true", help="only fill the separation cache")
    args = parser.parse_args(argv)

    reserved = _reserved(args.devset)
    clips = [next(args.devset.glob(f"{prefix}-*")) for prefix in args.clips]
    for clip in clips:
        source = json.loads((clip / "meta.json").read_text()).get("source", "").split(":", 1)[-1].strip().lower()
        if source in reserved:
            raise SystemExit(f"{clip.name} is held out ({source} is in reserved.txt)")
    if args.separate_only:
        for clip in clips:
            meta = json.loads((clip / "meta.json").read_text())
            _, seconds = separated_stems(clip, clip / meta["audio"], args.model, args.threads, args.cache)
            print(f"{clip.name}: separated in {seconds:.1f} s (0 = cached)")
        return 0
    rows = [bench_clip(clip, args.ways, args, args.out) for clip in clips]
    args.json_path.parent.mkdir(parents=True, exist_ok=True)
    args.json_path.write_text(json.dumps(rows, indent=2))
    header = "  ".join(f"{w:>9}" for w in args.ways)
    for row in rows:
        ways = row["ways"]
        sep = ways.get("separated")
        print(f"{row['clip']}")
        print(f"  {'part':<18} {header}  {'unsplit':>9}")
        for part in sorted(next(iter(ways.values()))["per_part"]):
            cells = "  ".join(f"{_cell(ways.get(w), part):>9}" for w in args.ways)
            print(f"  {part:<18} {cells}  {_cell(sep.get('unsplit', sep) if sep else None, part):>9}")
        means = "  ".join(f"{ways[w]['mean']:>9.3f}" for w in args.ways)
        unsplit = sep.get("unsplit", sep)["mean"] if sep else float("nan")
        print(f"  {'mean':<18} {means}  {unsplit:>9.3f}")
        if sep:
            for stem in sep["stems"]:
                print(f"    {stem['reason']}" + (f" | {stem['split']['reason']}" if stem.get("split") else ""))
    print(f"wrote {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
