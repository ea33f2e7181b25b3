"""Per-part routing shared by stems mode and multitrack mode: audio parts in, tracks out.

Exports: instrument_for_name, guess_instrument, part_display_name, route_parts, STEM_INSTRUMENTS.

Each part (a separated stem, or one input file in multitrack mode) gets an
instrument from its name, the engine that suits that instrument (piano ->
transkun, drums -> the drum engine, everything else -> basic-pitch tuned by the
instrument's family and range), and one Track. In stems mode the artifact guard
(core.guard) judges every stem against the mix first: near-silent stems are
dropped, mangled ones are transcribed from the mix instead. A kept stem whose name names no instrument
("other") is split into Melody and Accompaniment when its notes are a melody
over chords (core.split).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from . import guard as guard_module
from .audio import Audio
from .errors import OptionsError
from .engines.registry import optional_engine
from .split import split_bass, split_melody
from .guard import GuardThresholds, StemVerdict
from .instruments import INSTRUMENTS, Instrument, lookup_instrument
from .notes import Note, Track
from .options import Options
from .progress import Reporter, Stage
from .tuning import Tuning, transcribe_in_tune

#: What demucs's stems hold ("other" is guessed from its notes).
STEM_INSTRUMENTS: dict[str, str] = {
    "vocals": "voice", "bass": "bass", "drums": "drums", "guitar": "guitar", "piano": "piano",
}
# Words studios put in track names that core.instruments does not list as aliases.
_TRACK_WORDS: dict[str, str] = {
    "vox": "voice", "vocals": "voice", "vocal": "voice", "voc": "voice", "bv": "voice", "bvs": "voice",
    "backing": "voice", "choir": "voice", "singing": "voice", "sing": "voice",
    "kick": "drums", "snare": "drums", "hihat": "drums", "hh": "drums", "hat": "drums", "overhead": "drums",
    "overheads": "drums", "oh": "drums", "toms": "drums", "tom": "drums", "cymbals": "drums", "beat": "drums",
    "rhodes": "piano", "wurli": "piano", "pno": "piano", "pf": "piano",
    "gtr": "guitar", "gt": "guitar", "ag": "guitar", "eg": "guitar", "acoustic": "guitar", "strat": "guitar",
    "bs": "bass", "sub": "bass", "upright": "bass", "db": "bass",
}
# Families never split into melody and accompaniment (one line, or hits).
_UNSPLIT_FAMILIES = {"drums", "bass", "voice"}
# Words that say a part's role rather than its instrument; used only when nothing better is in the name.
_ROLE_WORDS = {"melody", "lead", "main", "solo", "comping", "rhythm", "backing", "track", "part", "mix"}
_EXTENSION_RE = re.compile(r"\.[A-Za-z0-9]{1,5}$")


def _name_words(name: str) -> list[str]:
    stem = _EXTENSION_RE.sub("", name.strip().rsplit("/", 1)[-1])
    spaced = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", stem)
    return [w for w in re.split(r"[\s\-_.,()\[\]+&]+", spaced.lower()) if w and not w.isdigit()]


def _lookup(word: str) -> Instrument | None:
    if word in _TRACK_WORDS:
        return INSTRUMENTS[_TRACK_WORDS[word]]
    try:
        return lookup_instrument(word) if len(word) > 1 else None
    except OptionsError:
        return None


def instrument_for_name(name: str) -> Instrument | None:
    """The instrument a stem or track file name points to, or None when it says nothing.

    Demucs stem names map directly ("vocals" -> voice, "other" -> None). File names
    are tried whole, then by word pairs ("alto sax"), then word by word, role words
    ("lead", "melody") last: "bass.wav" -> bass, "Lead Vox.flac" -> voice,
    "keys.mp3" -> piano, "violin1.ogg" -> violin, "melody-alto-sax" -> alto sax.

    Args:
        name: a stem name or a file name (a path's last part counts).

    Returns:
        The instrument, or None (the caller guesses from the notes).
    """
    words = _name_words(name)
    if not words:
        return None
    if len(words) == 1 and words[0] in STEM_INSTRUMENTS:
        return INSTRUMENTS[STEM_INSTRUMENTS[words[0]]]
    whole = "-".join(words)
    found = _lookup(whole) if len(words) > 1 else None
    if found is not None:
        return found
    for first, second in zip(words, words[1:]):
        found = _lookup(f"{first}-{second}")
        if found is not None:
            return found
    for word in [w for w in words if w not in _ROLE_WORDS] + [w for w in words if w in _ROLE_WORDS]:
        found = _lookup(word)
        if found is not None:
            return found
    return None


def part_display_name(name: str, instrument: Instrument | None) -> str:
    """Staff label: a demucs stem's instrument name, else the file name made readable ("Lead Vox")."""
    words = _name_words(name)
    if len(words) == 1 and (words[0] in STEM_INSTRUMENTS or words[0] == "other"):
        return instrument.name if instrument is not None else "Other"
    stem = _EXTENSION_RE.sub("", name.strip().rsplit("/", 1)[-1])
    spaced = re.sub(r"(?<=[A-Za-z])(?=\d)", " ", stem)
    label = " ".join(w.capitalize() if w.islower() else w for w in re.split(r"[\s\-_]+", spaced) if w)
    return label or (instrument.name if instrument is not None else "Part")


def guess_instrument(notes: list[Note]) -> Instrument:
    """Pick a staff for a part whose name says nothing, from its notes' register and polyphony.

    Chordal parts become piano (wide or low/high range) or guitar; single lines
    become bass (median below E3), cello (below A3) or voice (treble clef).

    Args:
        notes: a generic transcription of the part.

    Returns:
        The instrument to write the part for (piano when there are no notes).
    """
    if not notes:
        return INSTRUMENTS["piano"]
    pitches = np.array([n.pitch for n in notes])
    starts = np.array([n.start_s for n in notes])
    ends = np.array([n.end_s for n in notes])
    sounding = np.array([np.count_nonzero((starts <= s) & (ends > s)) for s in starts])
    polyphony = float(np.mean(sounding))
    low, median, high = np.percentile(pitches, [5, 50, 95])
    if polyphony >= 1.6:
        wide = high - low > 30 or low < 40 or high > 84
        return INSTRUMENTS["piano" if wide else "guitar"]
    if median < 52:
        return INSTRUMENTS["bass"]
    if median < 57:
        return INSTRUMENTS["cello"]
    return INSTRUMENTS["voice"]


def _in_range(notes: list[Note], instrument: Instrument) -> list[Note]:
    if instrument.family == "drums":
        return notes
    return [n for n in notes if instrument.low <= n.pitch <= instrument.high]


class _Transcriber:
    """Runs engines for routing and reports progress over a known number of passes."""

    def __init__(self, models: Any, options: Options, reporter: Reporter | None, passes: int) -> None:
        self.models, self.options, self.reporter = models, options, reporter
        self.passes, self.done = max(1, passes), 0

    def engine_name(self, instrument: Instrument | None) -> str:
        from .engines.registry import choose_engine

        return choose_engine(str(self.options.engine), instrument)

    def run(self, audio: Audio, instrument: Instrument | None, label: str,
            tuning: Tuning | None = None) -> tuple[list[Note], str]:
        engine_name = self.engine_name(instrument)
        engine = optional_engine(self.models, engine_name) if engine_name == "mono" else self.models.get(engine_name)
        if engine is None:  # no pitch tracker installed (stemscribe doctor says so): basic-pitch writes the voice
            engine_name = "basic-pitch"
            engine = self.models.get(engine_name)
        mono = audio.mono().samples[0]
        start = self.done

        def progress(fraction: float) -> None:
            if self.reporter is not None:
                self.reporter(Stage.TRANSCRIBE, (start + fraction) / self.passes, f"transcribing {label}")

        if self.reporter is not None:
            progress(0.0)
        # Drum hits have no pitch to put in tune.
        in_tune = None if engine_name == "drums" else tuning
        notes = transcribe_in_tune(engine.transcribe, mono, audio.sample_rate, in_tune,
                                   instrument=instrument, progress=progress)
        self.done += 1
        self.passes = max(self.passes, self.done)
        if self.reporter is not None:
            self.reporter(Stage.TRANSCRIBE, self.done / self.passes, f"transcribed {label}")
        return (_in_range(notes, instrument) if instrument is not None else notes), engine_name


def route_parts(named_audios: list[tuple[str, Audio]], *, mix: Audio | None, models: Any, options: Options,
                reporter: Reporter | None = None, guard: bool = True,
                thresholds: GuardThresholds = GuardThresholds(),
                instruments: dict[str, str] | None = None, mix_tuning: Tuning | None = None,
                tunings: Mapping[str, Tuning] | None = None, split: bool = True) -> tuple[list[Track], list[StemVerdict]]:
    """Transcribe each part with the engine that suits it, one Track per kept part.

    Args:
        named_audios: (name, audio) per part: demucs stem names in stems mode,
            file names in multitrack mode.
        mix: the recording the stems came from (stems mode), or None (multitrack:
            every file is its own clean part, nothing to guard against).
        models: an engines ModelCache (``.get(name)`` -> engine).
        options: the job's options (``engine`` overrides basic-pitch/transkun choice).
        reporter: progress as Stage.TRANSCRIBE fractions, and cancellation.
        guard: judge stems against the mix (only when ``mix`` is given).
        thresholds: the guard's lines.
        instruments: part name -> instrument word, overriding the name mapping.
        mix_tuning: the mix's offset from A440 (core.tuning), also used for the
            parts without one of their own (stems share the mix's).
        tunings: part name -> that part's offset (multitrack files).
        split: in stems mode, split a kept stem whose name names no instrument
            ("other") into Melody and Accompaniment when its notes are a melody
            over chords (core.split); the decision goes into its verdict's ``split``.

    Returns:
        (tracks in input order without dropped parts, one verdict per part).

    Raises:
        OptionsError: an unknown instrument word in ``instruments``.
        CancelledError: cancelled through the reporter.
    """
    overrides = {name: lookup_instrument(word) for name, word in (instruments or {}).items()}
    use_guard = guard and mix is not None
    transcriber = _Transcriber(models, options, reporter, len(named_audios) + (1 if use_guard else 0))
    spectra = _Spectra(mix, named_audios, overrides) if use_guard else None
    mix_notes: list[Note] | None = None
    tracks: list[Track] = []
    verdicts: list[StemVerdict] = []
    for name, audio in named_audios:
        instrument = overrides.get(name) or instrument_for_name(name)
        named = instrument
        tuning = (tunings or {}).get(name, mix_tuning)
        source = f"stem:{name}" if mix is not None else f"file:{name}"
        if spectra is not None and spectra.energy_db(name) < thresholds.silent_db:
            verdicts.append(spectra.assess(name, instrument, thresholds))
            continue
        notes, engine_name = transcriber.run(audio, instrument, name, tuning)
        if instrument is None:
            instrument = guess_instrument(notes)
            if transcriber.engine_name(instrument) != engine_name or instrument.family in ("bass", "voice"):
                notes, engine_name = transcriber.run(audio, instrument, name, tuning)
            else:
                notes = _in_range(notes, instrument)
        if spectra is not None:
            if mix_notes is None and instrument.family != "drums":
                mix_notes, _ = transcriber.run(mix, None, "the full mix (for checking stems)", mix_tuning)
            verdict = spectra.assess(name, instrument, thresholds, stem_notes=notes, mix_notes=mix_notes)
        elif not notes:
            verdict = StemVerdict(name, "dropped", f"{name}: left out, no notes found in it", {"stem_notes": 0.0})
        else:
            verdict = StemVerdict(name, "stem", f"{name}: written from its own file", {"stem_notes": float(len(notes))})
        verdicts.append(verdict)
        if verdict.decision == "dropped":
            continue
        if verdict.decision == "mix":
            notes, engine_name = transcriber.run(mix, instrument, f"{name} from the mix", mix_tuning)
            source = "mix"
        elif named is None and mix is not None and split and instrument.family not in _UNSPLIT_FAMILIES:
            # A stem whose name says nothing ("other") may be a lead over chords: write them as two parts.
            melody, accompaniment, decision = split_melody(notes, label=f"the {name} stem")
            record = decision.to_dict()
            parts = list(zip(decision.tracks, (melody, accompaniment))) if decision.split else []
            if _bass_missing(verdicts, tracks):
                # The separator left the bass in this stem (its own bass stem came out silent).
                below = accompaniment if decision.split else notes
                bass, above, bass_decision = split_bass(below, label=f"the {name} stem")
                record["bass"] = bass_decision.to_dict()
                if bass_decision.split:
                    if decision.split:
                        parts[-1] = (parts[-1][0], above)
                    else:
                        parts = [(part_display_name(name, guess_instrument(above)), above)]
                    parts.append(("Bass", bass))
            verdict = replace(verdict, split=record)
            verdicts[-1] = verdict
            if parts:
                for part_name, part_notes in parts:
                    part_instrument = INSTRUMENTS["bass"] if part_name == "Bass" else guess_instrument(part_notes)
                    tracks.append(Track(name=part_name, instrument=part_instrument.key,
                                        notes=_in_range(part_notes, part_instrument), source=source,
                                        engine=engine_name, is_drum=False))
                continue
        tracks.append(Track(name=part_display_name(name, instrument), instrument=instrument.key, notes=notes,
                            source=source, engine=engine_name, is_drum=instrument.family == "drums"))
    if reporter is not None:
        reporter(Stage.TRANSCRIBE, 1.0, "transcribed every part")
    return tracks, verdicts


def _bass_missing(verdicts: list[StemVerdict], tracks: list[Track]) -> bool:
    """A band's separated bass stem was dropped as silent and no part so far is a bass.

    Only with drums kept (a band): a bass guitar folded into "other" is a band's problem;
    an ensemble's lowest voice (a cello) is not written as a bass guitar.
    """
    dropped = any(v.name == "bass" and v.decision == "dropped" for v in verdicts)
    band = any(v.name == "drums" and v.decision != "dropped" for v in verdicts)
    return dropped and band and not any(t.instrument == "bass" for t in tracks)


class _Spectra:
    """The guard's spectrograms of the mix and every stem, computed once per routing."""

    def __init__(self, mix: Audio, named_audios: list[tuple[str, Audio]],
                 instruments: dict[str, Instrument]) -> None:
        self.instruments = instruments
        self.mix = guard_module.spectrum(mix)
        self.stems = {name: guard_module.spectrum(audio) for name, audio in named_audios}

    def energy_db(self, name: str) -> float:
        return 10.0 * float(np.log10((self.stems[name].energy + 1e-12) / (self.mix.energy + 1e-12)))

    def assess(self, name: str, instrument: Instrument | None, thresholds: GuardThresholds,
               stem_notes: list[Note] | None = None, mix_notes: list[Note] | None = None) -> StemVerdict:
        others = {other: spec for other, spec in self.stems.items() if other != name}
        other_instruments = {other: self.instruments.get(other) or instrument_for_name(other) for other in others}
        return guard_module.assess_stem(name, self.stems[name], self.mix, others=others, instrument=instrument,
                                        other_instruments=other_instruments, stem_notes=stem_notes,
                                        mix_notes=mix_notes, thresholds=thresholds)

