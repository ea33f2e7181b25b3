"""Bench: how long a correction takes (re-notate + re-engrave from the kept notes) beside a full re-transcription.

    .venv/bin/python bench/corrections.py [--clips 02-bottle-of-brandy-jig-violin 03-maple-leaf-rag-piano]
                                          [--out bench/results/corrections.json]

For each ~30 s dev-set clip, in one warm process (models loaded once, as a
worker keeps them): the full pipeline runs twice (the second is the timed,
warm re-transcription), then three corrections from its kept material (a
runner-up meter, the tempo doubled, a B-flat transposition), each through
core.revise.revise, the function the correction job runs. The worker's own
overhead (fetching the kept files from the store, storing the version) is
not in these numbers; it is milliseconds on a local Redis.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT.parent / "shared" / "devset"
DEFAULT_CLIPS = ("02-bottle-of-brandy-jig-violin", "03-maple-leaf-rag-piano", "08-fairy-dance-reel-band")


def bench_clip(clip: Path, work: Path, toolkit) -> dict:
    from stemscribe.bots.corrections import ranked_meters, ranked_tempos
    from stemscribe.core import pipeline
    from stemscribe.core.options import Options
    from stemscribe.core.revise import revise

    audio = next(clip.glob("audio.*"))
    timings = []
    for attempt in range(2):
        started = time.perf_counter()
        summary = pipeline.run([audio], work / f"full{attempt}", Options(), toolkit=toolkit)
        timings.append(time.perf_counter() - started)
    kept = work / "full1"
    changes = [{"time": ranked_meters(summary)[0]}, {"tempo": f"{ranked_tempos(summary)[0][1]:g}"},
               {"transpose": "Bb"}]
    corrections = []
    for version, change in enumerate(changes, start=2):
        started = time.perf_counter()
        result = revise(kept, work / f"v{version}", summary, change, version=version)
        corrections.append({"changes": change, "seconds": round(time.perf_counter() - started, 3),
                            "notate_s": result["timings_s"]["notate"], "engrave_s": result["timings_s"]["engrave"],
                            "time_signature": result["time_signature"], "key": result["key"]})
    return {"clip": clip.name, "duration_s": summary["duration_s"], "mode": summary["mode"],
            "full_cold_s": round(timings[0], 3), "full_warm_s": round(timings[1], 3),
            "kept_bytes": sum((kept / n).stat().st_size for n in summary["kept_files"]),
            "corrections": corrections,
            "correction_median_s": round(statistics.median(c["seconds"] for c in corrections), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "corrections.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/stemscribe-bench-corrections"))
    args = parser.parse_args(argv)
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.toolkit import Toolkit

    toolkit = Toolkit(engines=ModelCache(threads=2), threads=2)
    rows = []
    for name in args.clips:
        row = bench_clip(DEVSET / name, args.work / name, toolkit)
        rows.append(row)
        print(f"{name}: {row['duration_s']:.1f} s {row['mode']}: full re-transcription {row['full_warm_s']:.1f} s "
              f"(cold {row['full_cold_s']:.1f} s); corrections "
              + ", ".join(f"{list(c['changes'].values())[0]} {c['seconds']:.2f} s" for c in row["corrections"]),
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "correction_max_s": max(c["seconds"] for r in rows
                                                                        for c in r["corrections"])}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
