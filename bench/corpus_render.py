#!/usr/bin/env python3
"""Rendered-audio corpus clips for the meter/tempo bench (issue 17) and the timbre check (issue 18).

Takes corpus excerpts from bench/corpus_perform.py (reserved pieces already left
out there; checked again here), performs each one without symbolic damage
(tempo curve, onset jitter, accents: corpus_perform.perform(damage=False)),
cuts it to at most MAX_CLIP_S seconds at a bar line, picks instruments by kind
(single-line tunes on a wind or violin, chorales and quartets on strings, brass
or organ, keyboard pieces on piano), writes a MIDI file and renders it with
FluidSynth through each General MIDI soundfont (FluidR3_GM from
fluid-soundfont-gm, TimGM6mb from timgm6mb-soundfont; the MuseScore soundfont is
held out by ../shared/bench/reserved.txt and refused in code). Each piece gets
one listening condition, the same for both soundfonts:

- clean: the dry render (FLAC);
- room: convolved with a seeded synthetic room response (RT60 0.4-0.9 s, FLAC);
- phone: a phone voice note: mono, band-passed 300-3400 Hz, OGG/Opus at 16 kbit/s (ffmpeg).

Each clip folder has the dev set's format (../shared/devset): audio.*, meta.json
(tempo_bpm, tempo_beat_bpm, time_signature, key, ...), gt_notes.csv (performed
notes, seconds), gt.musicxml and gt_score_notes.csv (written notes, quarters),
gt.mid. The same piece, seed and soundfont give byte-identical files.

    .venv/bin/python bench/corpus_render.py --split validation --count 45     # -> bench/results/rendered/
    .venv/bin/python bench/corpus_render.py --split train --count 20
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import corpus_perform as cp  # noqa: E402

OUT_ROOT = cp.RESULTS / "rendered"
#: Bumped when the generator's output changes (cached renders of another version are redone).
GENERATOR_VERSION = 1
SEED = 18
SAMPLE_RATE = 44100
MAX_CLIP_S = 25.0
MIN_BARS = 4
TAIL_S = 1.2
SOUNDFONTS = {
    "fluidr3": Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    "timgm6mb": Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
}
CONDITIONS = ("clean", "room", "phone")

#: Single-line instruments: (name, GM program, lowest, highest MIDI pitch written for it).
LINE_INSTRUMENTS = (("flute", 73, 60, 93), ("violin", 40, 55, 93), ("clarinet", 71, 50, 86),
                    ("trumpet", 56, 55, 82), ("alto-sax", 65, 49, 80), ("oboe", 68, 58, 88))
#: Ensembles for chorales and quartets, top part first (the last entry plays every lower part).
ENSEMBLES = {
    "strings": (("violin", 40), ("violin", 40), ("viola", 41), ("cello", 42)),
    "brass": (("trumpet", 56), ("french-horn", 60), ("trombone", 57), ("tuba", 58)),
    "organ": (("organ", 19),),
}


def _hash01(text: str) -> float:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def check_soundfont(path: Path) -> Path:
    """The soundfont's real file, refused when it is the held-out MuseScore one."""
    real = Path(path).resolve()
    if "musescore" in real.name.lower() or "musescore" in str(path).lower():
        raise ValueError(f"{path} is the held-out MuseScore soundfont (../shared/bench/reserved.txt)")
    return real


def max_polyphony(notes: list) -> int:
    """How many notes of the excerpt sound at once at most (quarters; touching notes do not overlap)."""
    events = sorted([(n[0], 1) for n in notes] + [(n[0] + n[1] - 1e-6, -1) for n in notes],
                    key=lambda e: (e[0], e[1]))
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def kind_of(excerpt: dict) -> str:
    """'line' (one voice, one note at a time), 'ensemble' (three or more parts) or 'keyboard'."""
    if excerpt["parts"] == 1 and max_polyphony(excerpt["notes"]) <= 1:
        return "line"
    if excerpt["parts"] >= 3:
        return "ensemble"
    return "keyboard"


def _octave_fit(pitches: list[int], lo: int, hi: int) -> int:
    """The smallest octave shift (semitones) that puts the most pitches inside lo..hi (then nearest the middle)."""
    best = None
    for k in range(-3, 4):
        s = 12 * k
        inside = sum(lo <= p + s <= hi for p in pitches)
        centre = abs(float(np.median(pitches)) + s - (lo + hi) / 2)
        cand = (-inside, abs(k), centre)
        if best is None or cand < best[0]:
            best = (cand, s)
    return best[1]


def orchestrate(excerpt: dict) -> dict:
    """Instruments for a piece, drawn from its key: {kind, ensemble, parts: [(name, program)], transpose}."""
    kind = kind_of(excerpt)
    h = _hash01("orch:" + excerpt["key"])
    if kind == "line":
        name, program, lo, hi = LINE_INSTRUMENTS[int(h * len(LINE_INSTRUMENTS)) % len(LINE_INSTRUMENTS)]
        shift = _octave_fit([n[2] for n in excerpt["notes"]], lo, hi)
        return dict(kind=kind, ensemble=name, parts=[(name, program)], transpose=shift)
    if kind == "keyboard":
        return dict(kind=kind, ensemble="piano", parts=[("piano", 0)] * excerpt["parts"], transpose=0)
    names = sorted(ENSEMBLES)
    ens = names[int(h * len(names)) % len(names)]
    table = ENSEMBLES[ens]
    parts = [table[min(i, len(table) - 1)] for i in range(excerpt["parts"])]
    return dict(kind=kind, ensemble=ens, parts=parts, transpose=0)


def condition_of(key: str) -> str:
    return CONDITIONS[int(_hash01("cond:" + key) * len(CONDITIONS)) % len(CONDITIONS)]


def cut_excerpt(excerpt: dict, bars: int) -> dict:
    """The excerpt up to its bars-th full bar (the pickup kept), notes cut at that bar line."""
    end_q = excerpt["pickup_q"] + bars * excerpt["bar_q"]
    notes = [[n[0], round(min(n[1], end_q - n[0]), 4), n[2], n[3]] for n in excerpt["notes"] if n[0] < end_q - 1e-6]
    return dict(excerpt, notes=notes, bars=bars)


def perform_clip(excerpt: dict, seed: int) -> tuple[dict, cp.Performance]:
    """The longest cut of the excerpt whose undamaged performance lasts at most MAX_CLIP_S."""
    full = cp.EXCERPT_BARS
    for bars in range(full, MIN_BARS - 1, -1):
        cut = cut_excerpt(excerpt, bars)
        perf = cp.perform(cut, seed, damage=False)
        if max(n.end_s for n in perf.notes) <= MAX_CLIP_S or bars == MIN_BARS:
            return cut, perf
    raise AssertionError("unreachable")


def parts_of_notes(excerpt: dict, perf: cp.Performance) -> list[int]:
    """The excerpt part of each performed note (perform() keeps one event per note, sorted by time).

    Notes of one pitch are paired in time order: performed onsets of one pitch keep the score's order."""
    by_pitch: dict[int, list[int]] = {}
    for n in sorted(excerpt["notes"], key=lambda n: (n[0], n[3])):
        by_pitch.setdefault(n[2], []).append(n[3])
    taken: dict[int, int] = {}
    out = []
    for note in perf.notes:
        i = taken.get(note.pitch, 0)
        taken[note.pitch] = i + 1
        out.append(by_pitch[note.pitch][i])
    return out


def write_midi(path: Path, perf: cp.Performance, parts: list[int], orch: dict) -> None:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    insts = []
    for name, program in orch["parts"]:
        insts.append(pretty_midi.Instrument(program=program, name=name))
    for note, part in zip(perf.notes, parts):
        insts[part].notes.append(pretty_midi.Note(velocity=int(note.velocity), pitch=int(note.pitch),
                                                  start=float(note.start_s), end=float(note.end_s)))
    pm.instruments = [i for i in insts if i.notes]
    pm.write(str(path))


def key_of(excerpt: dict) -> str:
    """The key the excerpt's notes are in (music21's default key finder), e.g. 'G major'."""
    from music21 import note as m21note, stream

    s = stream.Stream()
    for on, dur, pitch, _ in excerpt["notes"]:
        n = m21note.Note(pitch)
        n.quarterLength = max(dur, 0.125)
        s.insert(on, n)
    k = s.analyze("key")
    return f"{k.tonic.name.replace('-', 'b')} {k.mode}"


def write_musicxml(path: Path, excerpt: dict, orch: dict, key: str) -> None:
    """gt.musicxml: one part per excerpt part; a pickup is written as a first bar that begins with rests
    (meta.json's pickup_q says how long it is; gt_score_notes.csv has the notes from the first one)."""
    from music21 import chord, instrument, key as m21key, meter, note as m21note, stream

    score = stream.Score()
    pad = (excerpt["bar_q"] - excerpt["pickup_q"]) if excerpt["pickup_q"] > 0 else 0.0
    tonic, mode = key.split()
    for pi in range(excerpt["parts"]):
        part = stream.Part()
        inst = instrument.Instrument()
        inst.partName = orch["parts"][pi][0]
        inst.midiProgram = orch["parts"][pi][1]
        part.insert(0, inst)
        part.insert(0, meter.TimeSignature(excerpt["time_signature"]))
        part.insert(0, m21key.Key(tonic.replace("b", "-") if len(tonic) > 1 else tonic, mode))
        groups: dict[tuple[float, float], list[int]] = {}
        for on, dur, pitch, p in excerpt["notes"]:
            if p == pi:
                groups.setdefault((on, dur), []).append(pitch)
        for (on, dur), pitches in sorted(groups.items()):
            el = m21note.Note(pitches[0]) if len(pitches) == 1 else chord.Chord(sorted(pitches))
            el.quarterLength = _fraction(dur)
            part.insert(_fraction(on + pad), el)
        if _overlaps(groups):
            part.makeVoices(inPlace=True)
        score.insert(0, part)
    made = score.makeNotation()
    made.write("musicxml", fp=str(path))
    _stable_xml(path)


def _stable_xml(path: Path) -> None:
    """music21 writes random part/instrument ids and today's date: make them the same on every run."""
    text = path.read_text()
    text = re.sub(r"\s*<encoding-date>[^<]*</encoding-date>", "", text)
    ids: dict[str, str] = {}

    def renumber(m: re.Match) -> str:
        old = m.group(2)
        ids.setdefault(old, f"{m.group(2)[0]}{len(ids) + 1}")
        return f'{m.group(1)}="{ids[old]}"'
    text = re.sub(r'\b(id|part|instrument)="([PI][0-9a-f]{16,})"', renumber, text)
    path.write_text(text)


def _fraction(q: float) -> Fraction:
    """A cached (4-decimal) quarter length as the fraction it stands for (triplets: 1/3, not 0.3333)."""
    return Fraction(q).limit_denominator(48)


def _overlaps(groups: dict) -> bool:
    spans = sorted(groups)
    return any(b[0] < a[0] + a[1] - 1e-6 for a, b in zip(spans, spans[1:]))


def room_response(seed_text: str, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """A seeded synthetic room impulse response: direct sound, early reflections, exponential tail."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(int(hashlib.sha1(seed_text.encode()).hexdigest()[:8], 16))
    rt60 = float(rng.uniform(0.4, 0.9))
    n = int(rt60 * 1.2 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    tail = lfilter([0.4], [1.0, -0.6], tail)  # a darker tail: one-pole low-pass
    ir = 0.35 * tail / (np.sqrt(np.sum(tail ** 2)) + 1e-12)
    ir[0] += 1.0
    for _ in range(6):
        d = int(rng.uniform(0.005, 0.04) * sample_rate)
        ir[d] += float(rng.uniform(0.2, 0.5)) * (1 if rng.random() < 0.5 else -1)
    return ir.astype(np.float64), rt60


def render(midi: Path, soundfont: Path) -> np.ndarray:
    """FluidSynth's dry float render of a MIDI file (stereo, SAMPLE_RATE), peak-normalized to 0.8."""
    import soundfile as sf

    sf_path = check_soundfont(soundfont)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(SAMPLE_RATE),
                        "-O", "float", "-T", "wav", "-F", str(raw), str(sf_path), str(midi)],
                       check=True, capture_output=True, timeout=600)
        audio, sr = sf.read(str(raw), dtype="float64", always_2d=True)
    assert sr == SAMPLE_RATE
    peak = float(np.max(np.abs(audio))) or 1.0
    return audio * (0.8 / peak)


def apply_condition(audio: np.ndarray, condition: str, seed_text: str, folder: Path) -> tuple[str, dict]:
    """Write the clip's audio for one condition; returns (file name, condition details)."""
    import soundfile as sf
    from scipy.signal import fftconvolve

    if condition == "clean":
        sf.write(str(folder / "audio.flac"), audio, SAMPLE_RATE, subtype="PCM_16")
        return "audio.flac", {}
    if condition == "room":
        ir, rt60 = room_response(seed_text)
        wet = np.stack([fftconvolve(audio[:, c], ir)[: len(audio)] for c in range(audio.shape[1])], axis=1)
        wet *= 0.8 / (float(np.max(np.abs(wet))) or 1.0)
        sf.write(str(folder / "audio.flac"), wet, SAMPLE_RATE, subtype="PCM_16")
        return "audio.flac", {"rt60_s": round(rt60, 3)}
    if condition == "phone":
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in.wav"
            sf.write(str(src), audio, SAMPLE_RATE, subtype="PCM_16")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-fflags", "+bitexact",
                            "-af", "highpass=f=300,highpass=f=300,lowpass=f=3400,lowpass=f=3400",
                            "-ac", "1", "-ar", "48000", "-c:a", "libopus", "-b:a", "16k",
                            "-flags:a", "+bitexact", "-map_metadata", "-1", str(folder / "audio.ogg")],
                           check=True, capture_output=True, timeout=300)
        return "audio.ogg", {"band_hz": [300, 3400], "codec": "opus", "bitrate": "16k", "channels": 1}
    raise ValueError(condition)


def clip_name(index: int, excerpt: dict, orch: dict, condition: str) -> str:
    base = cp.normalize_key(excerpt["key"]).replace("/", "_").replace("#", "-n")
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-")
    return f"{index:03d}-{base}-{orch['ensemble']}-{condition}"


def make_clip(excerpt: dict, soundfont: str, folder: Path, *, seed: int = SEED, index: int = 0,
              condition: str | None = None) -> dict:
    """Render one clip folder (dev-set format) and return its meta.json content."""
    warnings.filterwarnings("ignore")
    if cp.is_reserved(excerpt["key"], cp.reserved_keys()):
        raise ValueError(f"{excerpt['key']} is reserved")
    orch = orchestrate(excerpt)
    condition = condition or condition_of(excerpt["key"])
    shift = orch["transpose"]
    # Pitches play no part in perform()'s random draws: the shifted excerpt performs the same way.
    shifted = dict(excerpt, notes=[[n[0], n[1], n[2] + shift, n[3]] for n in excerpt["notes"]])
    cut, perf = perform_clip(shifted, seed)
    parts = parts_of_notes(cut, perf)
    folder.mkdir(parents=True, exist_ok=True)
    write_midi(folder / "gt.mid", perf, parts, orch)
    audio = render(folder / "gt.mid", SOUNDFONTS.get(soundfont, Path(soundfont)))
    end = max(n.end_s for n in perf.notes) + TAIL_S
    audio = audio[: int(end * SAMPLE_RATE)]
    audio_name, cond_info = apply_condition(audio, condition, f"{excerpt['key']}|{seed}|room", folder)
    key = key_of(cut)
    write_musicxml(folder / "gt.musicxml", cut, orch, key)
    with open(folder / "gt_notes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["onset_s", "offset_s", "midi_pitch", "velocity", "part"])
        for n, p in zip(perf.notes, parts):
            w.writerow([f"{n.start_s:.4f}", f"{n.end_s:.4f}", n.pitch, n.velocity, orch["parts"][p][0]])
    with open(folder / "gt_score_notes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["onset_q", "midi_pitch"])
        for on, _, pitch, _ in sorted(cut["notes"], key=lambda n: (n[0], n[2])):
            w.writerow([f"{on:.4f}", pitch])
    ts = cut["time_signature"]
    beat_q = cp.BEAT_QUARTERS[ts]
    suggested = {"line": "solo", "keyboard": "piano", "ensemble": "piano"}[orch["kind"]]
    accepted = {"line": ["solo"], "keyboard": ["piano"], "ensemble": ["piano", "stems"]}[orch["kind"]]
    meta = dict(
        title=cp.normalize_key(excerpt["key"]), source=f"music21 corpus: {cp.normalize_key(excerpt['key'])}",
        category={"line": "solo", "keyboard": "piano", "ensemble": "ensemble"}[orch["kind"]],
        kind=orch["kind"], ensemble=orch["ensemble"],
        parts=[dict(name=n, gm_program=p) for n, p in orch["parts"]],
        tempo_bpm=round(perf.tempo_bpm, 2), tempo_beat_bpm=round(perf.tempo_bpm / beat_q, 2),
        beat_unit_quarters=beat_q, time_signature=ts, key=key,
        duration_s=round(len(audio) / SAMPLE_RATE, 3), bars=cut["bars"], pickup_q=cut["pickup_q"],
        suggested_mode=suggested, accepted_modes=accepted, audio=audio_name, sample_rate=SAMPLE_RATE if audio_name != "audio.ogg" else 48000,
        lead_in_s=round(perf.first_note_s, 4), transpose_semitones=shift,
        soundfont=soundfont, soundfont_file=check_soundfont(SOUNDFONTS.get(soundfont, Path(soundfont))).name,
        condition=condition, condition_details=cond_info, performance=perf.conditions,
        split=cp.split_of(excerpt["key"]), seed=seed, generator_version=GENERATOR_VERSION, index=index,
        n_notes_pitched=len(perf.notes), n_notes_drums=0,
        notes="tempo_bpm in quarter notes/min (median of the performance); gt times in seconds from the "
              "start of the audio; gt_score_notes.csv is the written truth (quarters from the first note)")
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def select(split: str, count: int) -> list[dict]:
    """``count`` excerpts of a split, round robin over meters (hash order within each)."""
    by_meter: dict[str, list[dict]] = {}
    for e in cp.load_excerpts():
        if cp.split_of(e["key"]) == split:
            by_meter.setdefault(e["time_signature"], []).append(e)
    for m in by_meter:
        by_meter[m].sort(key=lambda e: _hash01("render:" + e["key"]))
    out: list[dict] = []
    while len(out) < count and any(by_meter.values()):
        for m in cp.METER_QUOTA:
            if by_meter.get(m) and len(out) < count:
                out.append(by_meter[m].pop(0))
    return out


def build(split: str, count: int, soundfonts: list[str], *, seed: int = SEED, root: Path = OUT_ROOT,
          log=print) -> list[Path]:
    """Render (or reuse) count clips of a split for each soundfont; returns the clip folders."""
    folders = []
    t0 = time.time()
    for i, ex in enumerate(select(split, count)):
        orch = orchestrate(ex)
        name = clip_name(i, ex, orch, condition_of(ex["key"]))
        for sf_name in soundfonts:
            folder = root / f"{split}-{sf_name}" / name
            meta_path = folder / "meta.json"
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                if meta.get("generator_version") == GENERATOR_VERSION and meta.get("seed") == seed:
                    folders.append(folder)
                    continue
            if folder.exists():
                shutil.rmtree(folder)
            make_clip(ex, sf_name, folder, seed=seed, index=i)
            folders.append(folder)
        log(f"  {name} ({time.time() - t0:.0f} s)")
    return folders


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="validation", choices=["validation", "train"])
    ap.add_argument("--count", type=int, default=45)
    ap.add_argument("--soundfont", action="append", choices=sorted(SOUNDFONTS),
                    help="render with this soundfont only (repeatable); default both")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=OUT_ROOT)
    a = ap.parse_args(argv)
    if not shutil.which("fluidsynth"):
        print("fluidsynth is not installed: run scripts/bench-deps", file=sys.stderr)
        return 2
    t0 = time.time()
    folders = build(a.split, a.count, a.soundfont or list(SOUNDFONTS), seed=a.seed, root=a.out)
    print(f"{len(folders)} clips in {time.time() - t0:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
