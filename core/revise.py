"""Corrections: a job's score written again in another meter, tempo, key, level or transposition.

Exports: write_kept_material, load_kept_material, KeptMaterial, revise, apply_transposition,
version_label, KEPT_FILES, KEPT_SAMPLE_RATE.

Some choices cannot be settled from audio alone (2/4 or 4/4, half or double
tempo, the relative key, the instrument a part is for). After transcription the
pipeline keeps what notation needs (``write_kept_material``): the transcribed
notes of every track in performance time, the layout, the title, and the mix at
KEPT_SAMPLE_RATE (float16), which beat tracking reads for its onset strength.
``revise`` runs notation and engraving again from that material with changed
options, never a model: the same notes and the same audio give the same beats,
so a correction changes only what was asked for. Its files have the usual names
(score.pdf, preview.png, ...); the worker stores them as version ``v<n>/``.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import defaults
from .errors import JobNotFoundError, OptionsError
from .notes import Note, Track
from .options import Options, options_from_pairs
from .progress import Reporter, Stage
from .toolkit import Limits

#: The kept material's files, written next to the score files and expiring with them.
KEPT_FILES: tuple[str, ...] = ("performance.json", "performance.npz")
#: Sample rate of the kept mix (defaults.KEPT_SAMPLE_RATE_HZ), under the name this module exports.
KEPT_SAMPLE_RATE = defaults.KEPT_SAMPLE_RATE_HZ
#: Format version of performance.json.
KEPT_FORMAT = 1
#: Options a correction may change; everything else stays as the job had it.
CORRECTABLE = ("time", "tempo", "key", "level", "transpose", "chords", "swing", "title")


@dataclass
class KeptMaterial:
    """What a correction re-notates from: tracks (notes in seconds), layout, title, composer, the mix."""

    tracks: list[Track]
    layout: str
    title: str
    composer: str | None
    audio_mono: np.ndarray | None
    sample_rate: int
    beats_s: list[float]


def write_kept_material(out_dir: Path, tracks: list[Track], *, layout: str, title: str, composer: str | None,
                        audio_mono: np.ndarray | None, sample_rate: int, beats_s: list[float] | None = None,
                        tuning: Any = None) -> list[str]:
    """Write performance.json (notes, layout, beats, tuning) and performance.npz (the mix) into out_dir.

    Returns:
        The names written (KEPT_FILES, or performance.json alone without audio).
    """
    out_dir = Path(out_dir)
    data = {
        "format": KEPT_FORMAT, "layout": layout, "title": title, "composer": composer,
        "sample_rate": KEPT_SAMPLE_RATE if audio_mono is not None else None,
        "beats_s": [round(float(b), 4) for b in (beats_s or [])],
        "tuning": tuning,
        "tracks": [{"name": t.name, "instrument": t.instrument, "source": t.source, "engine": t.engine,
                    "is_drum": t.is_drum,
                    "notes": [[round(float(n.start_s), 4), round(float(n.end_s), 4), int(n.pitch), int(n.velocity)]
                              for n in t.notes]} for t in tracks],
    }
    (out_dir / KEPT_FILES[0]).write_text(json.dumps(data, separators=(",", ":")) + "\n")
    if audio_mono is None:
        return [KEPT_FILES[0]]
    samples = np.asarray(audio_mono, dtype=np.float32)
    if sample_rate != KEPT_SAMPLE_RATE:
        import librosa

        samples = librosa.resample(samples, orig_sr=sample_rate, target_sr=KEPT_SAMPLE_RATE)
    with open(out_dir / KEPT_FILES[1], "wb") as f:
        np.savez(f, audio=samples.astype(np.float16))
    return list(KEPT_FILES)


def load_kept_material(folder: Path) -> KeptMaterial:
    """Read what write_kept_material wrote.

    Raises:
        JobNotFoundError: performance.json is missing (the job's files expired, or it predates corrections).
    """
    folder = Path(folder)
    try:
        data = json.loads((folder / KEPT_FILES[0]).read_text())
    except FileNotFoundError:
        raise JobNotFoundError("The notes of this score are no longer kept, so I cannot write it again.",
                               hint="Send the recording again for a new score.") from None
    audio = None
    if data.get("sample_rate") and (folder / KEPT_FILES[1]).exists():
        with np.load(io.BytesIO((folder / KEPT_FILES[1]).read_bytes())) as npz:
            audio = npz["audio"].astype(np.float32)
    tracks = [Track(name=t["name"], instrument=t["instrument"],
                    notes=[Note(float(s), float(e), int(p), int(v)) for s, e, p, v in t["notes"]],
                    source=t.get("source", "mix"), engine=t.get("engine", ""), is_drum=bool(t.get("is_drum")))
              for t in data["tracks"]]
    return KeptMaterial(tracks=tracks, layout=data["layout"], title=data.get("title") or "Untitled",
                        composer=data.get("composer"), audio_mono=audio,
                        sample_rate=int(data.get("sample_rate") or KEPT_SAMPLE_RATE),
                        beats_s=list(data.get("beats_s") or []))


def apply_transposition(notation: Any, options: Options) -> str | None:
    """Transpose a Notation as options.transpose asks (in place); returns the printed instrument, if any."""
    if not options.transpose:
        return None
    from .notation.transpose import parse_transposition, transpose_notation

    transposition = parse_transposition(options.transpose)
    transpose_notation(notation, transposition)
    return transposition.instrument


def version_label(version: int, changes: Mapping[str, Any]) -> str:
    """How the chat names a version: 'version 2: 6/8', 'version 3: transpose Bb-clarinet'."""
    words = []
    for key, value in changes.items():
        if key == "time":
            words.append(str(value))
        elif key == "tempo":
            words.append(f"\u2669 = {float(value):g}")
        elif key == "key":
            words.append(str(value))
        elif key == "level":
            words.append(f"{value} reduction")
        elif key == "transpose":
            from .notation.transpose import parse_transposition

            moved = parse_transposition(str(value))
            words.append(f"for {moved.instrument}" if moved.instrument else f"transposed {moved.label}")
        else:
            words.append(f"{key}:{value}")
    return f"version {version}: " + ", ".join(words) if words else f"version {version}"


def correction_options(base: Options, changes: Mapping[str, Any]) -> Options:
    """The options of a new version: the job's (or the latest version's), with the changes applied.

    Raises:
        OptionsError: an option a correction cannot change (mode, engine, stems...) or a bad value.
    """
    for key in changes:
        if key not in CORRECTABLE:
            raise OptionsError(f"{key}: cannot be changed without listening again.",
                               hint="A correction can change " + ", ".join(CORRECTABLE)
                                    + "; send the recording again for anything else.")
    return options_from_pairs(dict(changes), base=base)


def revise(kept_dir: Path, out_dir: Path, base_summary: Mapping[str, Any], changes: Mapping[str, Any], *,
           version: int, limits: Limits = Limits(), reporter: Reporter | None = None) -> dict[str, Any]:
    """Write a new version of a job's score from its kept material: notation and engraving only.

    Args:
        kept_dir: folder holding performance.json and performance.npz.
        out_dir: where the version's files go (score.pdf, preview.png.., score.ly, score.musicxml,
            score.mid, result.json); created if needed.
        base_summary: result.json of the version corrected (its "options" are the starting point).
        changes: option word -> value, e.g. {"time": "6/8"} or {"transpose": "Bb"}.
        version: the number of the new version (2 for the first correction).
        limits: LilyPond's timeout.
        reporter: progress and cancellation.

    Returns:
        The version's result.json content (the base summary with the new analysis, "version",
        "changes", "version_label" and "files").

    Raises:
        JobNotFoundError: the kept material is gone.
        OptionsError: a change a correction cannot make, or a bad value.
        EngraveError: LilyPond rejected the score (a bug; log kept in out_dir).
    """
    from .engrave import engrave
    from .notation import notate, write_midi, write_musicxml

    reporter = reporter or Reporter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    options = correction_options(Options.from_dict(base_summary.get("options") or {}), changes)
    kept = load_kept_material(kept_dir)
    title = options.title or kept.title
    reporter(Stage.ANALYZE, 0.0, "Writing the score again")
    notation = notate(kept.tracks, layout=kept.layout, options=options.with_changes(composer=kept.composer),
                      audio_mono=kept.audio_mono, sample_rate=kept.sample_rate, title=title, reporter=reporter)
    instrument = apply_transposition(notation, options)
    write_musicxml(notation, out_dir / "score.musicxml")
    write_midi(notation, out_dir / "score.mid")
    notate_s = time.perf_counter() - started
    reporter(Stage.ENGRAVE, 0.1, "Engraving with LilyPond")
    engraved = engrave(out_dir / "score.musicxml", out_dir, title=title, composer=kept.composer,
                       subtitle=instrument, timeout_s=limits.lilypond_timeout_s)
    previews = [Path(p).name for p in engraved.preview_paths]
    files = ["score.pdf", *previews, "score.ly", "score.musicxml", "score.mid", "result.json"]
    result = {k: v for k, v in base_summary.items() if k not in ("files", "timings_s", "stems")}
    result.update(
        title=title, parts=notation.parts, tempo_bpm=round(float(notation.tempo_bpm), 2),
        tempo_map=[[round(float(q), 3), round(float(b), 2)] for q, b in notation.tempo_map],
        time_signature=notation.time_signature, key=notation.key, swing=notation.swing,
        pickup_quarters=notation.pickup_quarters, bars=notation.bars, chords=getattr(notation, "chords", False),
        pages=engraved.pages, warnings=list(notation.warnings), options=options.to_dict(),
        transposed_for=instrument, version=version, changes=dict(changes),
        version_label=version_label(version, changes),
        timings_s={"notate": round(notate_s, 3), "engrave": round(time.perf_counter() - started - notate_s, 3)},
        files=files,
    )
    (out_dir / "result.json").write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    reporter(Stage.DONE, 1.0, None)
    return result


__all__ = ["CORRECTABLE", "KEPT_FILES", "KEPT_SAMPLE_RATE", "KeptMaterial", "apply_transposition",
           "correction_options", "load_kept_material", "revise", "version_label", "write_kept_material"]
