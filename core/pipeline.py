"""The whole job: recordings in, a folder of score files out.

Exports: run, choose_mode, needs_probe, stem_summary_line, write_performance_midi, OUTPUT_FILES;
re-exports Limits and Toolkit (core.toolkit).

``run`` composes the stages (decode, optional separation, transcription,
notation, engraving) and writes the files whose names are a contract that the
CLI, the worker and both bots rely on::

    score.pdf  preview.png  [preview-2.png ... preview-<n>.png]  score.ly
    score.musicxml  score.mid  notes.mid  result.json  [stems/<name>.<ext>]

preview.png shows page 1; a longer score gets one more preview per page, up to
defaults.MAX_PREVIEW_PAGES pages (the PDF has every page).

result.json records the mode and why it was chosen, the parts, tempo, meter,
key, duration, bars, pages, warnings, per-stage wall times and the list of
files (the extra previews right after preview.png, in page order).
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .analysis import MixProfile, profile_mix
from .auto import (SUNG_DEVIATION, NoteStream, Probe, attack_count, check_engine, choose_line_engine, kind_of, kind_reason, listen,
                   solo_instrument, sung)
from .audio import Audio, decode
from .contract import SCORE_FILES
from .plan import InputFacts, auto_separation_refusal, check_inputs, duration_cap_s, separates
from .engines.registry import choose_engine, optional_engine
from .errors import NoNotesError, OptionsError
from .instruments import INSTRUMENTS, Instrument, lookup_instrument
from .notes import Track
from .options import Mode, Options
from .progress import Reporter, Stage
from .revise import apply_transposition, write_kept_material
from .toolkit import Limits, Toolkit
from .tuning import Tuning, estimate_tuning, transcribe_in_tune

log = logging.getLogger(__name__)

#: Files every successful score job writes (extra preview pages and stems/ are listed in result.json);
#: the names and their order are the job contract's (core.contract).
OUTPUT_FILES: tuple[str, ...] = SCORE_FILES


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


def run(inputs: Sequence[Path], out_dir: Path, options: Options, *, toolkit: Toolkit | None = None,
        limits: Limits = Limits(), reporter: Reporter | None = None,
        before_auto_separation: Callable[[], None] | None = None) -> dict[str, Any]:
    """Transcribe recordings into a folder of score files.

    Args:
        inputs: one recording, or several for multitrack.
        out_dir: created if needed; the contract files are written into it.
        options: validated options (core.options).
        toolkit: loaded models to reuse; a fresh one is made if None (slow first call).
        limits: duration / size caps.
        reporter: progress callback and cancel token.
        before_auto_separation: called once mode auto has decided to separate (and
            the recording is within the stems cap), before any separation; the worker
            uses it to move the job to the separation queue (it raises to stop here).

    Returns:
        The content of result.json.

    Raises:
        UserError: bad input (decode failures, limits, silence, no notes, unavailable mode).
        CancelledError: the reporter's cancel token was set.
        EngraveError: LilyPond rejected our output (a bug; log kept in out_dir).
    """
    toolkit = toolkit or Toolkit()
    reporter = reporter or Reporter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = [Path(p) for p in inputs]
    timer = _Timer()
    warnings: list[str] = []
    user_notes: list[str] = []

    # The same count and mode rules as the bots' and the job API's checks (core.plan).
    check_inputs([InputFacts(p.name) for p in inputs], options, limits)
    instrument = lookup_instrument(options.instrument) if options.instrument else None

    # ---------------------------------------------------------------- decode
    max_s = duration_cap_s(limits, separating=separates(options, len(inputs)))
    audios: list[Audio] = []
    with timer.stage("decode"):
        for i, path in enumerate(inputs):
            reporter(Stage.DECODE, i / len(inputs), f"Reading {path.name}")
            audios.append(decode(path, sample_rate=44100, mono=False, max_duration_s=max_s,
                                 max_bytes=limits.max_input_bytes))
        reporter(Stage.DECODE, 1.0, None)
    duration_s = max(a.duration_s for a in audios)
    mix = audios[0]
    mix_mono = mix.mono().samples[0]

    # ---------------------------------------------------------------- mode
    profile: MixProfile | None = None
    probe: Probe | None = None
    with timer.stage("analyze"):
        if len(audios) == 1 and options.mode in (Mode.AUTO, Mode.SOLO, Mode.PIANO):
            profile = profile_mix(mix_mono, mix.sample_rate)
        # The first file's mono mixdown is the mix's, made above.
        tunings = [_tuning_of(mix_mono if a is mix else a.mono().samples[0], a.sample_rate, options)
                   for a in audios]
        if needs_probe(options, len(audios), instrument):
            reporter(Stage.DECODE, 1.0, "Listening to how many notes sound at once")
            probe = listen(toolkit.engines.get("basic-pitch"), mix_mono, mix.sample_rate, tunings[0])
    user_notes.extend(_tuning_lines(inputs, tunings))
    mode, reason = choose_mode(options, len(audios), profile, instrument,
                               separation_available=lambda: toolkit.separation_available(options.separator),
                               stream=probe.stream if probe is not None else None)
    if mode is Mode.STEMS and options.mode is Mode.AUTO:
        # Auto chose separation after listening: the stems cap and queue apply now.
        refusal = auto_separation_refusal(duration_s, limits)
        if refusal is not None:
            mode, reason = Mode.PIANO, f"{reason.split(', so ')[0]}, but {refusal}, so it's reduced to piano"
        elif before_auto_separation is not None:
            before_auto_separation()
    # Multitrack inputs are separate already: stems:yes there means nothing to separate.
    separating = mode is Mode.STEMS or bool(separates(options, len(audios)))
    if separating:
        toolkit.require_separation(options.separator)
    log.info("mode %s (%s)", mode, reason)

    tracks: list[Track]
    stem_report: list[dict[str, Any]] = []
    stem_audio: dict[str, Audio] = {}
    layout: str

    # ---------------------------------------------------------------- separate + transcribe
    if separating:
        with timer.stage("separate"):
            separator = toolkit.separator(options.separator)
            stem_audio = separator.separate(mix, reporter)
    if not options.score:
        if not stem_audio:
            raise OptionsError("score:no only makes sense with stems:yes.",
                               hint="Add stems:yes to get just the separated audio.")
        files = _write_stems(stem_audio, out_dir, options, timer)
        result = _result_base(options, mode, reason, inputs, duration_s)
        result.update(files=files + ["result.json"], timings_s=timer.seconds, warnings=warnings,
                      user_notes=user_notes + [f"{len(stem_audio)} stems separated."])
        _write_json(out_dir / "result.json", result)
        reporter(Stage.DONE, 1.0, None)
        return result

    with timer.stage("transcribe"):
        if mode is Mode.STEMS:
            from .routing import route_parts

            layout = "ensemble"
            tracks, verdicts = route_parts(list(stem_audio.items()), mix=mix, models=toolkit.engines,
                                           options=options, reporter=reporter, mix_tuning=tunings[0])
            stem_report = [v.to_dict() for v in verdicts]
            line = stem_summary_line(verdicts)
            if separation_gave_nothing(verdicts):
                # Every part would be the full mix under a stem's name: the piano reduction is the
                # better writing of a mix (dev clip 04, a string quartet: per-part F1 0.038 -> 0.091).
                layout, mode = "piano", Mode.PIANO
                track, engine_note = _transcribe_single(mix_mono, mix.sample_rate, Mode.PIANO, None, options,
                                                        None, toolkit, reporter, tunings[0], None)
                tracks = [track]
                line = SEPARATION_FALLBACK_NOTE
                reason = f"{reason}; {SEPARATION_FALLBACK_REASON}"
                if engine_note:
                    user_notes.append(engine_note)
            if line:
                user_notes.append(line)
        elif mode is Mode.MULTITRACK:
            from .routing import route_parts

            layout = "ensemble"
            named = [(_part_name(p), a) for p, a in zip(inputs, audios)]
            tracks, _ = route_parts(named, mix=None, models=toolkit.engines, options=options, reporter=reporter,
                                    tunings={name: t for (name, _), t in zip(named, tunings)})
        else:
            layout = "solo" if mode is Mode.SOLO else "piano"
            track, engine_note = _transcribe_single(mix_mono, mix.sample_rate, mode, instrument, options,
                                                    profile, toolkit, reporter, tunings[0], probe)
            tracks = [track]
            if engine_note:
                user_notes.append(engine_note)
    tracks = [t for t in tracks if t.notes]
    if not any(not t.is_drum for t in tracks) and not any(t.is_drum for t in tracks):
        raise NoNotesError("I couldn't hear any notes in that recording.",
                           hint="Is it music with a clear pitch? Very noisy or very quiet recordings don't transcribe well.")

    # ---------------------------------------------------------------- notation
    from .notation import notate, write_midi, write_musicxml

    # The user's words first, then the file's own tags (a song's title, not "01 track final v2").
    title = options.title or (audios[0].title if len(audios) == 1 else None) or title_from_filename(inputs[0])
    composer = options.composer or (audios[0].composer if len(audios) == 1 else None)
    with timer.stage("notate"):
        reporter(Stage.ANALYZE, 0.0, "Finding tempo, meter and key")
        notation = notate(tracks, layout=layout, options=options.with_changes(composer=composer),
                          audio_mono=mix_mono, sample_rate=mix.sample_rate, title=title, reporter=reporter)
        warnings.extend(notation.warnings)
        if notation.swing is not None:
            user_notes.append("Swung eighths are written as plain eighths under a Swing mark "
                              "(swing:no writes them as played).")
        transposed_for = apply_transposition(notation, options)
        reporter(Stage.SCORE, 0.5, "Writing MusicXML and MIDI")
        write_musicxml(notation, out_dir / "score.musicxml")
        write_midi(notation, out_dir / "score.mid")
        write_performance_midi(tracks, out_dir / "notes.mid")
        # What a correction re-notates from (core.revise); it expires with the job's other files.
        kept_files = write_kept_material(out_dir, tracks, layout=layout, title=title, composer=composer,
                                         audio_mono=mix_mono, sample_rate=mix.sample_rate,
                                         beats_s=notation.beat_times_s, tuning=tunings[0].to_dict())
        reporter(Stage.SCORE, 1.0, None)

    # ---------------------------------------------------------------- engrave
    from .engrave import engrave

    with timer.stage("engrave"):
        reporter(Stage.ENGRAVE, 0.1, "Engraving with LilyPond")
        engraved = engrave(out_dir / "score.musicxml", out_dir, title=title, composer=composer,
                           subtitle="; ".join(t for t in (transposed_for, notation.tab_header) if t) or None,
                           timeout_s=limits.lilypond_timeout_s)
        reporter(Stage.ENGRAVE, 1.0, None)

    files = _score_files(engraved.preview_paths)
    if options.stems and stem_audio:
        files[-1:-1] = _write_stems(stem_audio, out_dir, options, timer)

    result = _result_base(options, mode, reason, inputs, duration_s)
    result.update(
        title=title,
        composer=composer,
        layout=layout,
        parts=notation.parts,
        tempo_bpm=round(float(notation.tempo_bpm), 2),
        tempo_map=[[round(float(q), 3), round(float(b), 2)] for q, b in notation.tempo_map],
        time_signature=notation.time_signature,
        key=notation.key,
        swing=notation.swing,
        tuning=tunings[0].to_dict() if len(tunings) == 1 else [t.to_dict() for t in tunings],
        pickup_quarters=notation.pickup_quarters,
        bars=notation.bars,
        chords=getattr(notation, "chords", False),
        pages=engraved.pages,
        stems=stem_report,
        warnings=warnings,
        user_notes=user_notes,
        timings_s=timer.seconds,
        files=files,
        kept_files=kept_files,
        transposed_for=transposed_for,
        alternatives=getattr(notation, "alternatives", None) or {},
        evidence=_evidence(profile, probe),
    )
    _write_json(out_dir / "result.json", result)
    reporter(Stage.DONE, 1.0, None)
    return result


def needs_probe(options: Options, n_inputs: int, instrument: Instrument | None) -> bool:
    """Whether a single recording's notes must be heard before the mode or staff is chosen.

    Mode auto (without stems:yes) decides from them, and so does mode solo when nobody
    named the instrument (a line gets a melody staff, chords a grand staff).
    """
    if n_inputs != 1 or instrument is not None:
        return False
    return (options.mode is Mode.AUTO and not options.stems) or options.mode is Mode.SOLO


def choose_mode(options: Options, n_inputs: int, profile: MixProfile | None, instrument: Instrument | None,
                *, separation_available: Any = lambda: False, stream: NoteStream | None = None) -> tuple[Mode, str]:
    """Decide the mode and give a one-line reason a user can read.

    Args:
        options: the user's options (mode auto means we choose).
        n_inputs: number of recordings.
        profile: features of a single recording (None for several).
        instrument: the instrument the user named, if any.
        separation_available: callable telling whether demucs weights are installed.
        stream: the probe's note stream (core.auto): with it the decision rests on how
            many notes sound at once, which no timbre changes; without it on the profile.

    Returns:
        (mode, reason).

    The caller checks that separation is installed when the mode needs it.
    """
    if options.mode is not Mode.AUTO:
        return options.mode, "you asked for it"
    if n_inputs > 1:
        return Mode.MULTITRACK, f"you sent {n_inputs} files, so each one becomes a part"
    if options.stems:
        return Mode.STEMS, "you asked for stems, so each separated instrument gets its own staff"
    if instrument is not None:
        return Mode.SOLO, f"you said it's {instrument.name.lower()}"
    assert profile is not None
    kind = kind_of(profile, stream)
    if kind == "band":
        if separation_available():
            return Mode.STEMS, "it sounds like a band with drums, so each instrument gets its own staff"
        return Mode.PIANO, ("it sounds like a band with drums; stem separation isn't installed on this server, "
                            "so it's reduced to piano")
    return (Mode.PIANO if kind == "ensemble" else Mode.SOLO), kind_reason(kind)


#: What the user reads when separation gave no instrument of its own (see separation_gave_nothing).
SEPARATION_FALLBACK_NOTE = ("Separation: no instrument came out of the recording on its own (every stem was "
                            "silent or unreliable), so the whole mix is written as a piano reduction.")
SEPARATION_FALLBACK_REASON = "separation gave no instrument of its own, so it's reduced to piano"


def separation_gave_nothing(verdicts: Sequence[Any]) -> bool:
    """True when the guard kept no separated stem: every part it would write is the full mix under a stem's name.

    That happens when the separator cannot tell the instruments apart (a string quartet: all of it
    lands in "other", whose notes the mix does not confirm, and the other stems are silent). A kept
    drums part is something the reduction cannot write (a percussion staff, from the mix or not),
    so then the parts stay.
    """
    kept = [v for v in verdicts if v.decision != "dropped"]
    return bool(kept) and all(v.decision == "mix" and v.name != "drums" for v in kept)


def stem_summary_line(verdicts: Sequence[Any]) -> str:
    """One chat line on the artifact guard's decisions ("" when every stem was used as is).

    e.g. "Separation: guitar written from the full mix (its stem was unreliable); bass left out (silent)."
    or "Separation: the other stem written as Melody and Accompaniment (a tune over chords); bass written
    from the other stem (the separated bass stem was silent); vocals left out (silent)."
    """
    from_mix = [v.name for v in verdicts if v.decision == "mix"]
    bass_from = [v.name for v in verdicts if ((v.split or {}).get("bass") or {}).get("split")]
    dropped = [v.name for v in verdicts if v.decision == "dropped" and not (v.name == "bass" and bass_from)]
    melody_from = [v.name for v in verdicts if (v.split or {}).get("split")]
    bits = []
    if from_mix:
        verb = "its stem was" if len(from_mix) == 1 else "their stems were"
        bits.append(f"{', '.join(from_mix)} written from the full mix ({verb} unreliable)")
    for name in melody_from:
        bits.append(f"the {name} stem written as Melody and Accompaniment (a tune over chords)")
    for name in bass_from:
        bits.append(f"bass written from the {name} stem (the separated bass stem was silent)")
    if dropped:
        bits.append(f"{', '.join(dropped)} left out (silent)")
    return ("Separation: " + "; ".join(bits) + ".") if bits else ""


#: Families whose solo line goes to the line-engine choice (pitch tracker or basic-pitch).
_LINE_FAMILIES = frozenset({"voice", "winds", "brass", "strings", "melody"})


def _transcribe_single(samples: np.ndarray, sample_rate: int, mode: Mode, instrument: Instrument | None, options: Options,
                       profile: MixProfile | None, toolkit: Toolkit, reporter: Reporter, tuning: Tuning,
                       probe: Probe | None = None) -> tuple[Track, str]:
    """Transcribe one recording as one track (solo or piano reduction).

    Returns:
        (the track, a sentence for the user about the engine when it is worth saying: the
        pitch tracker wrote a sung line, or one engine heard far less than the other).
    """
    stream = probe.stream if probe is not None else None
    if instrument is None and mode is Mode.SOLO and profile is not None:
        instrument = solo_instrument(kind_of(profile, stream), stream, profile)
    if instrument is None:
        instrument = INSTRUMENTS["piano"]
    reduction = mode is Mode.PIANO
    piano_like = mode is Mode.SOLO and (instrument.family == "keyboard")
    # A piano reduction takes every instrument of the mix, so the named one plays no part in the choice.
    engine_name = choose_engine(str(options.engine), None if reduction else instrument,
                                polyphonic_piano_like=piano_like, mix_reduction=reduction)

    def progress(fraction: float) -> None:
        reporter(Stage.TRANSCRIBE, fraction, None)

    def basic_pitch_notes(part: Instrument | None) -> list:
        if probe is not None:
            return probe.redecode(part)
        return transcribe_in_tune(toolkit.engines.get("basic-pitch").transcribe, samples, sample_rate, tuning,
                                  instrument=part, progress=progress)

    name = "Piano" if reduction else instrument.name
    key = "piano" if reduction else instrument.key
    line = (not reduction and str(options.engine) == "auto" and not instrument.polyphonic
            and instrument.family in _LINE_FAMILIES)
    mono = optional_engine(toolkit.engines, "mono") if line else None
    if mono is not None:
        reporter(Stage.TRANSCRIBE, 0.0, "Listening for notes (pitch tracker and basic-pitch)")
        choice = choose_line_engine(samples, sample_rate, instrument, mono=mono,
                                    basic_pitch_notes=lambda: basic_pitch_notes(instrument), tuning=tuning,
                                    prefer_mono=instrument.family == "voice", progress=progress)
        why = f"Notes: {choice.why}." if choice.why else ""
        return Track(name=name, instrument=key, notes=choice.notes, source="mix", engine=choice.engine), why

    label = "basic-pitch + transkun" if engine_name in ("fusion", "organ") else engine_name
    reporter(Stage.TRANSCRIBE, 0.0, f"Listening for notes ({label})")
    why = ""
    if engine_name == "basic-pitch":
        notes = basic_pitch_notes(instrument)
    elif (reduction and probe is not None and str(options.engine) == "auto" and profile is not None
          and not profile.struck and (tracker := optional_engine(toolkit.engines, "mono")) is not None
          and (deviation := sung(tracker, samples, sample_rate)) >= SUNG_DEVIATION):
        # Voices singing together: a piano model hears little of them, and basic-pitch's own
        # thresholds (not the ones measured on synthesized instruments) keep their soft onsets.
        from .engines.basic_pitch import VOICES_PARAMS

        notes, engine_name = probe.redecode(params=VOICES_PARAMS), "basic-pitch"
        why = (f"Notes: the voices' pitch wavers and glides (deviation {deviation:.2f} semitones), "
               "so basic-pitch alone wrote them, not the piano model.")
    else:
        engine = toolkit.engines.get(engine_name)
        extra = {}
        if probe is not None and probe.run is not None and engine_name in ("fusion", "organ"):
            # The probe already ran basic-pitch on this recording, on the same tuning grid.
            extra["basic_pitch_run"] = probe.run
        notes = transcribe_in_tune(engine.transcribe, samples, sample_rate, tuning,
                                   instrument=None if reduction else instrument, progress=progress, **extra)
    if probe is not None and engine_name == "transkun":
        # A piano model that hears almost nothing is the wrong model: the probe's notes stand in.
        # (Not the organ engine: basic-pitch splits an organ's held chords into many more
        # attacks than are played, 117 against 34 on the dev set's chorale.)
        fallback = check_engine(engine_name, attack_count(notes), "basic-pitch", attack_count(probe.notes))
        if fallback:
            notes, engine_name, why = probe.redecode(instrument), "basic-pitch", f"Notes: {fallback}."
    return Track(name=name, instrument=key, notes=notes, source="mix", engine=engine_name,
                 is_drum=instrument.family == "drums"), why


def _evidence(profile: MixProfile | None, probe: Probe | None) -> dict[str, Any]:
    """What auto mode decided from, for result.json (empty when it decided nothing)."""
    if profile is None:
        return {}
    out: dict[str, Any] = {"profile": profile.to_dict()}
    if probe is not None:
        out["note_stream"] = probe.stream.to_dict()
        out["kind"] = kind_of(profile, probe.stream)
    return out


def write_performance_midi(tracks: Sequence[Track], path: Path) -> None:
    """Write the transcribed notes in performance time (seconds match the recording).

    One MIDI track per part, drums on channel 10. Tempo is 120 bpm so ticks map
    to seconds simply; the notes carry the timing, not the grid.
    """
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for track in tracks:
        inst = INSTRUMENTS.get(track.instrument)
        program = inst.gm_program if inst and not track.is_drum else 0
        out = pretty_midi.Instrument(program=program, is_drum=track.is_drum, name=track.name)
        for n in track.notes:
            end = max(n.end_s, n.start_s + 0.01)
            out.notes.append(pretty_midi.Note(velocity=int(np.clip(n.velocity, 1, 127)), pitch=int(n.pitch),
                                              start=float(n.start_s), end=float(end)))
        pm.instruments.append(out)
    pm.write(str(path))


def _write_stems(stems: dict[str, Audio], out_dir: Path, options: Options, timer: _Timer) -> list[str]:
    from .separate import write_stems

    with timer.stage("encode_stems"):
        written = write_stems(stems, out_dir, fmt=str(options.stem_format))
    return [path.relative_to(out_dir).as_posix() for path in written.values()]


def _score_files(previews: Sequence[Path]) -> list[str]:
    """OUTPUT_FILES with the previews of pages 2.. inserted, in page order, right after preview.png."""
    files = list(OUTPUT_FILES)
    at = files.index("preview.png") + 1
    files[at:at] = [Path(p).name for p in previews[1:]]
    return files


def _result_base(options: Options, mode: Mode, reason: str, inputs: Sequence[Path], duration_s: float) -> dict[str, Any]:
    return {
        "mode": str(mode),
        "mode_requested": str(options.mode),
        "mode_reason": reason,
        "inputs": [p.name for p in inputs],
        "duration_s": round(float(duration_s), 3),
        "options": options.to_dict(),
    }


def _tuning_of(samples_mono: np.ndarray, sample_rate: int, options: Options) -> Tuning:
    """The user's tuning:HZ, else the one read from the recording."""
    if options.tuning_hz is not None:
        return Tuning.given(options.tuning_hz)
    return estimate_tuning(samples_mono, sample_rate)


def _tuning_lines(inputs: Sequence[Path], tunings: Sequence[Tuning]) -> list[str]:
    """What the user is told about tuning: the recording's, or each file's that was corrected."""
    if len(inputs) == 1 or tunings[0].source == "given":
        line = tunings[0].describe()
        return [line] if line else []
    lines = [t.describe(subject=path.name) for path, t in zip(inputs, tunings)]
    return [" ".join(line for line in lines if line)] if any(lines) else []


#: Words of the names that phones, chat apps and recorders give files ("voice-note.ogg",
#: "New Recording 12.m4a", "PTT-20261125-WA0003.opus", "audio_2026-11-25_21-00-03.ogg").
_MACHINE_NAME_WORDS = frozenset(
    "audio voice note notes message memo recording record rec new sound track file untitled ptt aud vid "
    "video img screen at clip attachment document".split())
_MACHINE_NAME_TOKEN = re.compile(r"\d+|wa\d+|[0-9a-f]*\d[0-9a-f]*|(am|pm)", re.IGNORECASE)


def title_from_filename(path: Path) -> str:
    """A score title from a file's name: "my_song-take2.wav" -> "My song take2".

    Names a device or chat app made up (only words like "voice", "audio",
    "recording" with numbers, dates, times or ids) say nothing about the music:
    such a score is "Untitled", as MuseScore names a new one, rather than
    "PTT 20261125 WA0003".
    """
    words = re.split(r"[\s_\-.,()\[\]]+", path.stem)
    words = [w for w in words if w]
    if all(w.lower() in _MACHINE_NAME_WORDS or _MACHINE_NAME_TOKEN.fullmatch(w) for w in words):
        return "Untitled"
    text = _spaced_stem(path)
    return text[:1].upper() + text[1:]


def _part_name(path: Path) -> str:
    return _spaced_stem(path) or "Part"


def _spaced_stem(path: Path) -> str:
    """A file name without its extension, underscores and dashes as single spaces."""
    return " ".join(path.stem.replace("_", " ").replace("-", " ").split())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


__all__ = ["Limits", "OUTPUT_FILES", "Toolkit", "choose_mode", "run", "stem_summary_line", "title_from_filename",
           "write_performance_midi"]
