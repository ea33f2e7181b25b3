"""The one options model every front end shares, and its parser.

Exports: Mode, Engine, Level, StemFormat, Options, OPTION_KEYS, parse_options,
options_from_pairs, split_option_words, merge_option_pairs.

Chat text such as ``stems:yes mode:piano title:"My Song" tempo:92 key:"D minor"
time:6/8`` becomes a validated, frozen Options. Unknown words and bad values
raise OptionsError with a suggestion of the closest valid word. The bots never
parse options themselves: Discord passes its slash-command values through
options_from_pairs, Telegram passes the caption through parse_options.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any, Callable, Mapping

from . import defaults
from .errors import OptionsError
from .instruments import lookup_instrument


class Mode(StrEnum):
    """What kind of score to make from the recording(s)."""

    AUTO = "auto"
    SOLO = "solo"
    PIANO = "piano"
    STEMS = "stems"
    MULTITRACK = "multitrack"


class Engine(StrEnum):
    """Which transcription engine to use for pitched parts."""

    AUTO = "auto"
    BASIC_PITCH = "basic-pitch"
    TRANSKUN = "transkun"


class Level(StrEnum):
    """How much detail a piano reduction keeps."""

    EASY = "easy"
    FULL = "full"


class StemFormat(StrEnum):
    """Audio format of returned stems."""

    OPUS = "opus"
    FLAC = "flac"
    WAV = "wav"


_TIME_RE = re.compile(r"^(\d{1,2})/(1|2|4|8|16)$")
_KEY_RE = re.compile(r"^([A-Ga-g])\s*([#b\u266f\u266d]|-|sharp|flat)?\s*(major|minor|maj|min|m|dur|moll)?$", re.I)


@dataclass(frozen=True)
class Options:
    """Validated options for one transcription job.

    mode: auto picks solo, piano or stems from the audio and says why.
    stems: also return the separated stems as audio files.
    score: make a score (stems:yes score:no returns only the stems).
    instrument: option word of the (main) instrument, or None to guess.
    title / composer: printed on the score; None uses the file name / nothing.
    tempo_bpm: quarter notes per minute, overriding beat tracking.
    time_signature: "6/8" etc., overriding meter detection.
    key: "D minor", "Bb major" etc., overriding key detection.
    engine: transcription engine for pitched parts.
    level: piano reduction detail.
    chords: write chord symbols; None means the mode decides.
    separator: demucs model name for stems mode.
    stem_format: audio format of returned stems.
    tuning_hz: the A4 the recording is tuned to; None detects it, 440 leaves the audio as is.
    swing: write swung eighths straight under a "Swing" mark; None detects swing.
    tab: a tab staff under guitar and bass parts; None (auto) tabs guitars and basses, True every part.
    strings: tuning word of the tab (core.notation.tab.TUNINGS); None is standard guitar / 4-string bass.
    capo: fret of the guitar's capo (0 for none); tab frets are written relative to it.
    transpose: an interval (``+2``, ``-m3``, ``P5``) or a target instrument (``Bb-clarinet``,
        ``alto-sax``, ``F-horn``) the score is written for (core.notation.transpose); None for concert pitch.
    """

    mode: Mode = Mode.AUTO
    stems: bool = False
    score: bool = True
    instrument: str | None = None
    title: str | None = None
    composer: str | None = None
    tempo_bpm: float | None = None
    time_signature: str | None = None
    key: str | None = None
    engine: Engine = Engine.AUTO
    level: Level = Level.FULL
    chords: bool | None = None
    separator: str = "htdemucs"
    stem_format: StemFormat = StemFormat.OPUS
    tuning_hz: float | None = None
    swing: bool | None = None
    tab: bool | None = None
    strings: str | None = None
    capo: int = 0
    transpose: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (enums as strings)."""
        return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Options":
        """Inverse of to_dict; unknown keys are ignored (forward compatibility)."""
        known = {f.name for f in fields(cls)}
        clean = {k: v for k, v in data.items() if k in known}
        for name, enum in (("mode", Mode), ("engine", Engine), ("level", Level), ("stem_format", StemFormat)):
            if name in clean:
                clean[name] = enum(clean[name])
        return cls(**clean)

    def with_changes(self, **changes: Any) -> "Options":
        return replace(self, **changes)


# ---------------------------------------------------------------- value parsers

_YES = {"yes", "y", "true", "on", "1"}
_NO = {"no", "n", "false", "off", "0"}


def _choice(enum: type[StrEnum], aliases: Mapping[str, str] | None = None) -> Callable[[str, str], Any]:
    def parse(key: str, value: str) -> Any:
        norm = value.strip().lower()
        norm = (aliases or {}).get(norm, norm)
        try:
            return enum(norm)
        except ValueError:
            valid = [m.value for m in enum]
            raise OptionsError(f"'{value}' is not a valid {key}.",
                               hint=_suggest(norm, valid, f"Use {key}:" + "|".join(valid) + ".")) from None
    return parse


def _bool(key: str, value: str) -> bool:
    norm = value.strip().lower()
    if norm in _YES:
        return True
    if norm in _NO:
        return False
    raise OptionsError(f"'{value}' is not a valid value for {key}.", hint=f"Use {key}:yes or {key}:no.")


def _text(limit: int) -> Callable[[str, str], str]:
    def parse(key: str, value: str) -> str:
        text = " ".join(value.split())
        if not text:
            raise OptionsError(f"{key} is empty.", hint=f'Write it like {key}:"My Song".')
        if len(text) > limit:
            raise OptionsError(f"{key} is too long ({len(text)} characters).", hint=f"Keep it under {limit}.")
        if any(ord(c) < 32 for c in text):
            raise OptionsError(f"{key} contains control characters.")
        return text
    return parse


def _tempo(key: str, value: str) -> float:
    norm = value.strip().lower().removesuffix("bpm").strip()
    try:
        bpm = float(norm)
    except ValueError:
        raise OptionsError(f"'{value}' is not a tempo.", hint="Give quarter notes per minute, e.g. tempo:92.") from None
    if not 20 <= bpm <= 320:
        raise OptionsError(f"A tempo of {value} is out of range.", hint="Use a tempo between 20 and 320 bpm.")
    return bpm


def _auto_bool(key: str, value: str) -> bool | None:
    if value.strip().lower() in ("auto", "detect"):
        return None
    try:
        return _bool(key, value)
    except OptionsError:
        raise OptionsError(f"'{value}' is not a valid value for {key}.",
                           hint=f"Use {key}:auto (the default), {key}:yes or {key}:no.") from None


def _tuning(key: str, value: str) -> float | None:
    norm = value.strip().lower().replace(" ", "")
    if norm in ("auto", "detect"):
        return None
    if norm in _NO:
        return 440.0
    norm = norm.removeprefix("a4").removeprefix("a").lstrip("=").removesuffix("hz")
    try:
        hz = float(norm)
    except ValueError:
        raise OptionsError(f"'{value}' is not a tuning.",
                           hint="Use tuning:auto (the default), tuning:off, or the A4 in Hz, e.g. tuning:432.") from None
    if not 400 <= hz <= 480:
        raise OptionsError(f"A tuning of A4 = {value} Hz is out of range.", hint="Give A4 between 400 and 480 Hz, e.g. tuning:415.")
    return hz


def _time_signature(key: str, value: str) -> str:
    norm = value.strip().replace(" ", "")
    common = {"c": "4/4", "common": "4/4", "cut": "2/2", "alla-breve": "2/2"}
    norm = common.get(norm.lower(), norm)
    m = _TIME_RE.match(norm)
    if not m or not 1 <= int(m.group(1)) <= 16:
        raise OptionsError(f"'{value}' is not a time signature.", hint="Write it like time:3/4 or time:6/8.")
    return norm


def _key(key: str, value: str) -> str:
    norm = " ".join(value.strip().replace("_", " ").split())
    m = _KEY_RE.match(norm)
    if not m:
        raise OptionsError(f"'{value}' is not a key.", hint='Write it like key:"D minor", key:Bb or key:F#m.')
    tonic = m.group(1).upper()
    acc = (m.group(2) or "").lower()
    acc = {"\u266f": "#", "sharp": "#", "\u266d": "b", "flat": "b", "-": "b"}.get(acc, acc)
    quality = (m.group(3) or "major").lower()
    quality = "minor" if quality in {"minor", "min", "m", "moll"} else "major"
    if m.group(3) == "M":  # "CM" conventionally means C major
        quality = "major"
    return f"{tonic}{acc} {quality}"


def _instrument(key: str, value: str) -> str:
    return lookup_instrument(value).key


def _separator(key: str, value: str) -> str:
    norm = value.strip().lower()
    valid = ["htdemucs", "htdemucs_6s", "htdemucs_ft", "mdx_extra"]
    if norm not in valid:
        raise OptionsError(f"'{value}' is not a separation model I offer.", hint=_suggest(norm, valid, "Use " + ", ".join(valid) + "."))
    return norm


_STRINGS = ("standard", "drop-d", "dadgad", "open-g", "half-step-down", "bass4", "bass5")
_STRINGS_ALIASES = {"drop": "drop-d", "dropd": "drop-d", "drop_d": "drop-d", "e": "standard", "eadgbe": "standard",
                    "open-d-modal": "dadgad", "openg": "open-g", "dgdgbd": "open-g", "eb": "half-step-down",
                    "half-step": "half-step-down", "bass": "bass4", "4": "bass4", "5": "bass5",
                    "bass-4": "bass4", "bass-5": "bass5", "dadgbe": "drop-d"}


def _strings(key: str, value: str) -> str:
    norm = value.strip().lower().replace(" ", "-").replace("_", "-")
    norm = _STRINGS_ALIASES.get(norm, norm)
    if norm not in _STRINGS:
        raise OptionsError(f"'{value}' is not a tuning I can write tab for.",
                           hint=_suggest(norm, list(_STRINGS), "Use strings:" + "|".join(_STRINGS) + "."))
    return norm


def _capo(key: str, value: str) -> int:
    norm = value.strip().lower().removeprefix("fret").strip()
    if norm in _NO or norm == "none":
        return 0
    try:
        fret = int(norm)
    except ValueError:
        raise OptionsError(f"'{value}' is not a capo fret.", hint="Give the fret number, e.g. capo:2 (capo:0 for none).") from None
    if not 0 <= fret <= defaults.TAB_MAX_CAPO_FRET:
        raise OptionsError(f"A capo at fret {value} is out of range.",
                           hint=f"Use capo:0 (no capo) to capo:{defaults.TAB_MAX_CAPO_FRET}.")
    return fret


def _transpose(key: str, value: str) -> str | None:
    from .notation.transpose import parse_transposition

    norm = " ".join(value.split())
    if norm.lower() in ("no", "none", "off", "concert", "c", "0"):
        return None
    parse_transposition(norm)  # validates; the word is kept as the user wrote it
    return norm


# option word -> (Options field, parser). Several words may map to one field.
_PARSERS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "mode": ("mode", _choice(Mode, {"reduction": "piano", "piano-reduction": "piano", "separate": "stems",
                                    "multi": "multitrack", "tracks": "multitrack", "single": "solo"})),
    "stems": ("stems", _bool),
    "score": ("score", _bool),
    "instrument": ("instrument", _instrument),
    "title": ("title", _text(120)),
    "composer": ("composer", _text(120)),
    "tempo": ("tempo_bpm", _tempo),
    "time": ("time_signature", _time_signature),
    "key": ("key", _key),
    "engine": ("engine", _choice(Engine, {"basicpitch": "basic-pitch", "basic_pitch": "basic-pitch", "bp": "basic-pitch"})),
    "level": ("level", _choice(Level, {"simple": "easy", "beginner": "easy", "complete": "full"})),
    "chords": ("chords", _bool),
    "separator": ("separator", _separator),
    "format": ("stem_format", _choice(StemFormat, {"ogg": "opus", "lossless": "flac"})),
    "tuning": ("tuning_hz", _tuning),
    "swing": ("swing", _auto_bool),
    "tab": ("tab", _auto_bool),
    "strings": ("strings", _strings),
    "capo": ("capo", _capo),
    "transpose": ("transpose", _transpose),
}
_ALIASES = {"meter": "time", "timesig": "time", "time_signature": "time", "time-signature": "time",
            "bpm": "tempo", "inst": "instrument", "model": "separator", "chord": "chords",
            "difficulty": "level", "stem": "stems", "name": "title", "by": "composer",
            "pitch": "tuning", "concert": "tuning",
            "transposition": "transpose", "for": "transpose",
            "tabs": "tab", "tablature": "tab", "string-tuning": "strings", "guitar-tuning": "strings"}

#: Option words users may type, for help texts and autocomplete.
OPTION_KEYS: tuple[str, ...] = tuple(_PARSERS)


def _suggest(word: str, valid: list[str], fallback: str) -> str:
    close = difflib.get_close_matches(word, valid, n=2, cutoff=0.5)
    return f"Did you mean {' or '.join(close)}?" if close else fallback


def split_option_words(text: str) -> dict[str, str]:
    """Split ``key:value`` words (quotes allowed) into a dict of option word -> raw value.

    ``key=value`` works too. Words without a colon are rejected with a hint.

    Raises:
        OptionsError: unbalanced quotes, a word that is not key:value, an unknown key,
            or a key given twice.
    """
    try:
        # shlex keeps 'title:"My Song"' together as 'title:My Song'.
        words = shlex.split(text, posix=True)
    except ValueError:
        raise OptionsError("A quote is not closed in your options.", hint='Write titles like title:"My Song".') from None
    pairs: dict[str, str] = {}
    for word in words:
        m = re.match(r"^([A-Za-z_\-]+)\s*[:=]\s*(.*)$", word, re.S)
        if not m:
            raise OptionsError(f"I don't understand '{word}'.",
                               hint="Options look like key:value, e.g. mode:piano stems:yes title:\"My Song\".")
        key = m.group(1).lower()
        key = _ALIASES.get(key, key)
        if key not in _PARSERS:
            raise OptionsError(f"'{m.group(1)}' is not an option I know.",
                               hint=_suggest(key, list(_PARSERS) + list(_ALIASES), "Options: " + ", ".join(_PARSERS) + "."))
        if key in pairs:
            raise OptionsError(f"{key} is given twice.")
        pairs[key] = m.group(2)
    return pairs


def options_from_pairs(pairs: Mapping[str, Any], *, base: Options | None = None) -> Options:
    """Validate option word -> value pairs into Options, starting from base (or defaults).

    Values may be strings (from chat text) or already-typed values from a slash
    command; None and "" leave the field as base has it.

    Raises:
        OptionsError: unknown key or invalid value, with a hint.
    """
    changes: dict[str, Any] = {}
    for raw_key, value in pairs.items():
        key = _ALIASES.get(raw_key.lower(), raw_key.lower())
        if key not in _PARSERS:
            raise OptionsError(f"'{raw_key}' is not an option I know.",
                               hint=_suggest(key, list(_PARSERS), "Options: " + ", ".join(_PARSERS) + "."))
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        field_name, parser = _PARSERS[key]
        if isinstance(value, bool):
            value = "yes" if value else "no"
        changes[field_name] = parser(key, str(value))
    return replace(base or Options(), **changes)


def parse_options(text: str | None, *, base: Options | None = None) -> Options:
    """Parse chat text like ``mode:piano stems:yes title:"My Song"`` into Options.

    Args:
        text: the option words; None or blank gives base (or the defaults).
        base: options to start from, e.g. a user's saved defaults.

    Returns:
        A validated, frozen Options.

    Raises:
        OptionsError: with a message and a hint naming the closest valid word.
    """
    if not text or not text.strip():
        return base or Options()
    return options_from_pairs(split_option_words(text), base=base)


def merge_option_pairs(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay option-pair dicts left to right (later wins), dropping empty values."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None and v != ""})
    return merged
