#!/usr/bin/env python3
"""Symbolic corpus performances for the meter/tempo/pickup bench (issue 17).

Picks pieces from music21's bundled corpus (stratified by time signature,
every path in ../shared/bench/reserved.txt left out, checked in code), takes
the first EXCERPT_BARS bars of each, and caches the excerpts (onset/duration
in quarters, pitch, meter, pickup) in bench/results/corpus_excerpts.json so
reruns do not parse music21 again. perform() turns an excerpt into Note
events the way a transcription of a recording would look: a tempo curve
(steady, rubato, ritardando, accelerando), onset jitter, accents and
transcription-like damage (missed and extra notes, octave errors, split and
merged notes), all drawn from a seeded generator so the same seed gives the
same events. split_of() assigns each piece to "train" or "validation" by a
hash of its corpus path.

    .venv/bin/python bench/corpus_perform.py            # build / refresh the excerpt cache
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stemscribe.core.notes import Note  # noqa: E402

RESERVED = ROOT.parent / "shared" / "bench" / "reserved.txt"
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "corpus_excerpts.json"
#: Meters the bench covers, and how many pieces to take of each (fewer when the corpus has fewer).
METER_QUOTA = {"2/4": 50, "3/4": 50, "4/4": 50, "2/2": 45, "3/8": 40, "6/8": 50, "9/8": 40, "12/8": 10}
#: Bars of each piece kept (the pickup bar not counted).
EXCERPT_BARS = 20
#: Excerpts with fewer notes than this are left out.
MIN_NOTES = 24
#: Share of the pieces in the validation split (by path hash).
VALIDATION_SHARE = 0.4
#: Collections the pieces come from (music21 corpus top folders), in preference order.
COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "miscFolk", "bach", "haydn", "mozart",
               "beethoven", "trecento", "schumann_robert", "schumann_clara", "joplin", "verdi", "airdsAirs",
               "nottingham-dataset", "handel", "weber", "schubert", "liliuokalani", "johnson_j_r", "demos",
               "leadSheet", "corelli", "monteverdi")
#: Beat tempo ranges (notated beats per minute: quarter, half for 2/2, dotted quarter for compound,
#: dotted quarter = the whole bar for 3/8) the performances are drawn from.
BEAT_BPM_RANGE = {"2/4": (60, 150), "3/4": (70, 170), "4/4": (56, 140), "2/2": (55, 110), "3/8": (50, 90),
                  "6/8": (44, 110), "9/8": (50, 110), "12/8": (44, 90)}
BEAT_QUARTERS = {"2/4": 1.0, "3/4": 1.0, "4/4": 1.0, "2/2": 2.0, "3/8": 1.5, "6/8": 1.5, "9/8": 1.5,
                 "12/8": 1.5}


def normalize_key(key: str) -> str:
    """A corpus path as reserved.txt writes it, without the file extension ('bach/bwv269')."""
    base, _, number = key.partition("#")
    for ext in (".abc", ".mxl", ".xml", ".krn", ".musicxml", ".mid", ".rntxt"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    return f"{base}#{number}" if number else base


def reserved_keys(path: Path = RESERVED) -> set[str]:
    """Every corpus path held out for acceptance checks (normalized)."""
    out = set()
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "/" in line and " " not in line:
            out.add(normalize_key(line))
    return out


def is_reserved(key: str, reserved: set[str]) -> bool:
    """Whether key (or the whole file it is a tune of) is held out."""
    norm = normalize_key(key)
    return norm in reserved or norm.partition("#")[0] in reserved


def split_of(key: str) -> str:
    """'validation' or 'train', fixed by a hash of the piece's corpus path."""
    h = int(hashlib.sha1(normalize_key(key).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < VALIDATION_SHARE else "train"


def _hash01(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def candidate_pieces() -> dict[str, list[str]]:
    """Corpus keys per meter from music21's metadata bundle, reserved ones removed, in hash order."""
    from music21 import corpus

    reserved = reserved_keys()
    per_meter: dict[str, list[str]] = {m: [] for m in METER_QUOTA}
    for entry in corpus.corpora.CoreCorpus().metadataBundle:
        ts = getattr(entry.metadata, "timeSignatureFirst", None)
        if ts not in per_meter:
            continue
        path = str(entry.sourcePath)
        top = path.split("/")[0]
        if top not in COLLECTIONS or top == "palestrina":
            continue
        key = path + (f"#{entry.number}" if entry.number else "")
        if is_reserved(key, reserved):
            continue
        per_meter[ts].append(key)
    for ts in per_meter:
        per_meter[ts].sort(key=lambda k: _hash01("pick:" + k))
    return per_meter


def _balanced(keys: list[str], want: int) -> list[str]:
    """Up to ``want`` keys spread over collections (round robin, hash order within each)."""
    by_top: dict[str, list[str]] = {}
    for k in keys:
        by_top.setdefault(k.split("/")[0], []).append(k)
    out: list[str] = []
    while len(out) < want and any(by_top.values()):
        for top in list(by_top):
            if by_top[top] and len(out) < want:
                out.append(by_top[top].pop(0))
    return out


def extract(key: str, ts_wanted: str) -> dict | None:
    """The first EXCERPT_BARS bars of a corpus piece as plain data, or None when unusable.

    Returns:
        {key, time_signature, pickup_q, bar_q, notes: [[onset_q, dur_q, pitch, part], ...]}
        with onsets from the first note (the pickup's first beat, or the first downbeat).
    """
    from music21 import corpus, meter as m21meter

    base, _, number = key.partition("#")
    score = corpus.parse(base, number=int(number)) if number else corpus.parse(base)
    if hasattr(score, "scores") and not hasattr(score, "parts"):
        return None
    parts = list(score.parts) if score.parts else [score]
    first = parts[0].getElementsByClass("Measure")
    if not first:
        return None
    sigs = list(parts[0].recurse().getElementsByClass(m21meter.TimeSignature))
    if not sigs or sigs[0].ratioString != ts_wanted:
        return None
    bar_q = float(sigs[0].barDuration.quarterLength)
    m0 = first[0]
    pickup_q = float(m0.duration.quarterLength) if m0.duration.quarterLength < bar_q - 1e-6 else 0.0
    if pickup_q >= bar_q - 1e-6:
        pickup_q = 0.0
    end_q = pickup_q + EXCERPT_BARS * bar_q
    # No meter change inside the excerpt.
    for sig in sigs[1:]:
        if sig.getOffsetInHierarchy(parts[0]) < end_q - 1e-6 and sig.ratioString != ts_wanted:
            return None
    notes = []
    for pi, part in enumerate(parts):
        flat = part.stripTies().flatten()
        for el in flat.notes:
            start = float(el.getOffsetInHierarchy(part)) if el.activeSite is not flat else float(el.offset)
            if start >= end_q - 1e-6:
                continue
            dur = float(el.duration.quarterLength)
            if dur <= 0:
                continue  # grace notes
            pitches = [p.midi for p in el.pitches]
            for p in pitches:
                notes.append([round(start, 4), round(min(dur, end_q - start), 4), int(p), pi])
    if len(notes) < MIN_NOTES:
        return None
    notes.sort()
    lead = notes[0][0]
    # The excerpt starts at its first note: a rest before it (a pickup written as a full bar) is dropped.
    if lead > 1e-6:
        if pickup_q > 0:
            return None
        shift = lead
        bar_pos = shift % bar_q
        pickup_q = 0.0 if bar_pos < 1e-6 else bar_q - bar_pos
        for n in notes:
            n[0] = round(n[0] - shift, 4)
    return dict(key=key, time_signature=ts_wanted, pickup_q=round(pickup_q, 4), bar_q=bar_q,
                parts=len(parts), notes=notes)


def build_cache(path: Path = CACHE, *, log=print, quota: dict[str, int] | None = None,
                split: str | None = None, exclude: set[str] = frozenset()) -> list[dict]:
    """Parse the selected pieces once and store their excerpts (reruns read the file).

    ``quota`` (default METER_QUOTA) is pieces per meter; ``split`` keeps only that split's
    pieces and ``exclude`` leaves out keys already taken (the extra training pieces).
    """
    warnings.filterwarnings("ignore")
    reserved = reserved_keys()
    per_meter = candidate_pieces()
    excerpts: list[dict] = []
    t0 = time.time()
    for ts, want in (quota or METER_QUOTA).items():
        taken = 0
        keys = [k for k in per_meter[ts] if k not in exclude and (split is None or split_of(k) == split)]
        pool = _balanced(keys, want * 3)
        for key in pool:
            if taken >= want:
                break
            assert not is_reserved(key, reserved), key
            try:
                ex = extract(key, ts)
            except Exception as exc:  # a corpus file music21 cannot read: skip it
                log(f"  skip {key}: {type(exc).__name__}")
                continue
            if ex is None:
                continue
            excerpts.append(ex)
            taken += 1
        log(f"{ts}: {taken} pieces ({time.time() - t0:.0f} s)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(excerpts))
    return excerpts


#: More training pieces per meter for fitting the meter scorer (bench/corpus_fit.py), train split only.
EXTRA_TRAIN_QUOTA = {"2/4": 60, "3/4": 60, "4/4": 60, "2/2": 60, "3/8": 60, "6/8": 60, "9/8": 60, "12/8": 30}
EXTRA_TRAIN_CACHE = RESULTS / "corpus_train_extra.json"


def load_extra_train(path: Path = EXTRA_TRAIN_CACHE) -> list[dict]:
    """Training pieces beyond the bench's own (built on first use; never validation pieces)."""
    if not path.exists():
        taken = {e["key"] for e in load_excerpts()}
        build_cache(path, quota=EXTRA_TRAIN_QUOTA, split="train", exclude=taken)
    reserved = reserved_keys()
    return [e for e in json.loads(path.read_text())
            if not is_reserved(e["key"], reserved) and split_of(e["key"]) == "train"]


def load_excerpts(path: Path = CACHE) -> list[dict]:
    """The cached excerpts (built on first use), reserved pieces filtered out again."""
    excerpts = json.loads(path.read_text()) if path.exists() else build_cache(path)
    reserved = reserved_keys()
    return [e for e in excerpts if not is_reserved(e["key"], reserved)]


# ----------------------------------------------------------------------------- performance

@dataclass
class Performance:
    """A performed excerpt: Note events and the truth the analysis should find."""

    key: str
    notes: list[Note]
    time_signature: str
    tempo_bpm: float          # median quarter-note tempo of the performance
    pickup_q: float
    first_note_s: float
    conditions: dict
    downbeat_s: float = 0.0   # performance time of the first downbeat (after the pickup)


def _metric_weight(pos_q: float, ts: str, bar_q: float) -> float:
    """0..1 metrical accent of a score position (downbeat 1, beats 0.5, else 0)."""
    beat_q = BEAT_QUARTERS[ts]
    in_bar = pos_q % bar_q
    if in_bar < 1e-3 or bar_q - in_bar < 1e-3:
        return 1.0
    frac = in_bar / beat_q
    return 0.5 if abs(frac - round(frac)) < 1e-3 else 0.0


def _tempo_curve(kind: str, rng: np.random.Generator, total_q: float):
    """Relative tempo (1 = base) as a function of score position (quarters)."""
    if kind == "steady":
        return lambda q: 1.0
    if kind == "rubato":
        freqs = rng.uniform(0.02, 0.12, size=3)          # cycles per quarter
        phases = rng.uniform(0, 2 * math.pi, size=3)
        depth = rng.uniform(0.04, 0.09)
        return lambda q: 1.0 + depth * float(np.mean(np.sin(2 * math.pi * freqs * q + phases))) * 1.7
    start = rng.uniform(0.55, 0.75) * total_q
    amount = rng.uniform(0.12, 0.25) * (-1 if kind == "rit" else 1)

    def curve(q: float) -> float:
        if q <= start:
            return 1.0
        return 1.0 + amount * min(1.0, (q - start) / max(total_q - start, 1.0))
    return curve


def perform(excerpt: dict, seed: int, *, damage: bool = True, exact: bool = False) -> Performance:
    """Play an excerpt: tempo curve, jitter, accents, legato and (optionally) transcription damage.

    Args:
        excerpt: from load_excerpts().
        seed: the random seed (same seed and excerpt -> the same events).
        damage: apply missed/extra/octave/split/merged-note damage.
        exact: play it like a sequencer (steady tempo, onset jitter under 5 ms), as a MIDI render
            or a quantized synthesizer track sounds; the random draws are the same as without it.
    """
    key = excerpt["key"]
    rng = np.random.default_rng([seed, int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)])
    ts = excerpt["time_signature"]
    bar_q = excerpt["bar_q"]
    pickup = excerpt["pickup_q"]
    lo, hi = BEAT_BPM_RANGE[ts]
    beat_bpm = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    quarter_bpm = beat_bpm * BEAT_QUARTERS[ts]
    notes = excerpt["notes"]
    total_q = max(n[0] + n[1] for n in notes)
    kind = str(rng.choice(["steady", "rubato", "rit", "accel"], p=[0.35, 0.35, 0.15, 0.15]))
    curve = _tempo_curve(kind, rng, total_q)
    if exact:
        kind, curve = "exact", (lambda q: 1.0)
    # Score time -> seconds by integrating the beat period on a fine grid.
    step = 1.0 / 48
    grid_q = np.arange(0, total_q + 2, step)
    rel = np.array([curve(q) for q in grid_q])
    secs = np.concatenate([[0.0], np.cumsum(step * 60.0 / (quarter_bpm * rel[:-1]))])
    start_s = float(rng.uniform(0.2, 1.0))

    def to_s(q: float) -> float:
        return start_s + float(np.interp(q, grid_q, secs))

    jitter_sd = float(rng.uniform(0.010, 0.040))
    if exact:
        jitter_sd /= 8.0
    accent = float(rng.choice([0.0, 0.3, 0.6, 1.0]))
    legato = float(rng.uniform(0.75, 0.97))
    base_vel = float(rng.uniform(60, 90))
    out: list[Note] = []
    chord_jitter: dict[float, float] = {}
    for onset_q, dur_q, pitch, part in notes:
        shared = chord_jitter.setdefault(onset_q, float(rng.normal(0, jitter_sd)))
        t0 = to_s(onset_q) + shared + float(rng.normal(0, 0.005))
        t1 = to_s(onset_q + dur_q * legato)
        t1 = max(t1, t0 + 0.04)
        w = _metric_weight(onset_q - pickup, ts, bar_q)
        vel = base_vel + accent * 25 * w - (4 if part else 0) + float(rng.normal(0, 6))
        out.append(Note(round(max(t0, 0.0), 4), round(t1, 4), int(pitch), int(np.clip(vel, 20, 127))))
    conditions = dict(tempo_curve=kind, beat_bpm=round(beat_bpm, 1), jitter_ms=round(jitter_sd * 1000, 1),
                      accent=accent, damage=damage)
    if damage:
        out, counts = _damage(out, rng)
        conditions.update(counts)
    out.sort(key=lambda n: (n.start_s, n.pitch))
    # Median performed quarter tempo over the excerpt, the way notate reports it.
    beat_grid = np.arange(0, total_q, BEAT_QUARTERS[ts])
    periods = np.diff([to_s(q) for q in beat_grid])
    tempo = float(np.median(60.0 / periods * BEAT_QUARTERS[ts])) if len(periods) else quarter_bpm
    first = min(n.start_s for n in out)
    return Performance(key, out, ts, round(tempo, 2), pickup, first, conditions, round(to_s(pickup), 4))


#: Damage rates drawn per piece (ranges like basic-pitch's errors on clean recordings).
MISSED_RATE = (0.02, 0.08)
EXTRA_RATE = (0.01, 0.05)
OCTAVE_RATE = (0.0, 0.03)
SPLIT_RATE = (0.0, 0.04)
MERGE_RATE = (0.0, 0.03)


def _damage(notes: list[Note], rng: np.random.Generator) -> tuple[list[Note], dict]:
    """Transcription-like errors: missed, extra, octave, split and merged notes."""
    rates = {name: float(rng.uniform(*r)) for name, r in
             (("missed", MISSED_RATE), ("extra", EXTRA_RATE), ("octave", OCTAVE_RATE), ("split", SPLIT_RATE),
              ("merged", MERGE_RATE))}
    counts = {k: 0 for k in rates}
    ordered = sorted(notes, key=lambda n: (n.start_s, n.pitch))
    out: list[Note] = []
    skip_next: set[int] = set()
    for i, n in enumerate(ordered):
        if i in skip_next:
            continue
        r = rng.random(5)
        if r[0] < rates["missed"]:
            counts["missed"] += 1
            continue
        if r[1] < rates["octave"]:
            n = Note(n.start_s, n.end_s, int(np.clip(n.pitch + int(rng.choice([-12, 12])), 21, 108)), n.velocity)
            counts["octave"] += 1
        if r[2] < rates["merged"] and i + 1 < len(ordered) and ordered[i + 1].start_s - n.start_s > 0.05:
            nxt = ordered[i + 1]
            n = Note(n.start_s, max(n.end_s, nxt.end_s), n.pitch, n.velocity)
            skip_next.add(i + 1)
            counts["merged"] += 1
        if r[3] < rates["split"] and n.end_s - n.start_s > 0.3:
            cut = n.start_s + (n.end_s - n.start_s) * float(rng.uniform(0.35, 0.65))
            out.append(Note(n.start_s, cut, n.pitch, n.velocity))
            out.append(Note(cut, n.end_s, n.pitch, max(1, int(n.velocity * 0.6))))
            counts["split"] += 1
            continue
        out.append(n)
        if r[4] < rates["extra"]:
            t = n.start_s + float(rng.uniform(-0.05, 0.25))
            pitch = int(np.clip(n.pitch + int(rng.choice([-12, -7, 7, 12, 19])), 21, 108))
            out.append(Note(max(0.0, t), max(0.0, t) + float(rng.uniform(0.05, 0.2)), pitch,
                            max(1, int(n.velocity * 0.5))))
            counts["extra"] += 1
    return out, counts


def performances(split: str | None = None, *, seed: int = 17, damage: bool = True) -> list[Performance]:
    """Every cached excerpt (of one split, or all), performed with the given seed."""
    return [perform(e, seed, damage=damage) for e in load_excerpts()
            if split is None or split_of(e["key"]) == split]


def main() -> int:
    t0 = time.time()
    excerpts = build_cache()
    counts: dict[str, int] = {}
    for e in excerpts:
        counts[e["time_signature"]] = counts.get(e["time_signature"], 0) + 1
    pickups = sum(1 for e in excerpts if e["pickup_q"] > 0)
    val = sum(1 for e in excerpts if split_of(e["key"]) == "validation")
    print(f"{len(excerpts)} excerpts ({val} validation), {pickups} with pickups, per meter {counts}; "
          f"{time.time() - t0:.0f} s -> {CACHE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
