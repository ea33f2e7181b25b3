"""Corrections in the chat, shared by both bots: the buttons under a score, /fix, and following a version.

Exports: Suggestion, suggestions, button_data, parse_button_data, parse_fix_text, relative_key,
version_file_name, version_caption, follow_version, submit, REFUSED_TEXT, BUTTON_PREFIX,
MAX_SUGGESTIONS.

Every delivered score carries the likeliest corrections as buttons: the
runner-up meters (the notation's ranked alternatives when result.json has them,
else the meters of the same family), the tempo read twice as fast or half as
fast, the relative key, ``level:easy`` for a full piano reduction, and the
score written for B\u266d, E\u266d and F instruments. A button's data is
``fx:<job id>:<word>=<value>`` (at most 64 bytes, Telegram's limit; Discord
allows 100). Anything else is typed: ``/fix time:6/8 tempo:140 key:"E minor"
transpose:Bb``. Both go to worker.corrections.submit_correction, which checks
who may correct the job, that its notes are still kept, and that no other
version is being written.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from stemscribe.core.errors import OptionsError, TransientError
from stemscribe.core.options import split_option_words
from stemscribe.core.revise import CORRECTABLE

#: Prefix of a correction button's callback data / custom id.
BUTTON_PREFIX = "fx"
#: Most correction buttons under one score.
MAX_SUGGESTIONS = 11
#: Meter buttons offered, and how many of them come from the notation's ranking before METER_FAMILY's.
#: Where the written meter is wrong on the corpus bench (bench/corpus_bench.py, "buttons_cover_wrong"),
#: four buttons from the ranking alone hold the right meter for 96.3 % of the validation pieces
#: (77 of 80); three from the ranking, then the family: 98.8 % (79 of 80; train 71 of 73).
METER_BUTTONS = 4
METER_RANKED_FIRST = 3
#: Telegram's limit on callback data.
MAX_BUTTON_DATA_BYTES = 64
#: What another user's tap is answered with.
REFUSED_TEXT = "Only the person who asked for this score can correct it. Send your own recording to get one."
#: Meters confused with each one, likeliest first (used when result.json ranks none): for each meter
#: the notation wrote, the three true meters most often behind it when it was wrong on the corpus
#: bench's training pieces (bench/results/corpus_bench_train_baseline.json); on its validation pieces
#: these cover 72 of the 102 wrong first choices (train: 79 of 106). Meters the bench never wrote keep their musical family.
METER_FAMILY: dict[str, tuple[str, ...]] = {
    "4/4": ("2/4", "2/2", "3/4"), "2/4": ("2/2", "9/8", "3/4"), "3/4": ("6/8", "3/8", "9/8"),
    "6/8": ("3/8", "9/8", "3/4"), "9/8": ("2/4", "3/4", "6/8"), "12/8": ("6/8", "3/8", "4/4"),
    "2/2": ("4/4", "2/4", "3/4"), "3/8": ("3/4", "6/8", "9/8"), "5/4": ("4/4", "3/4"), "7/8": ("4/4", "6/8"),
}
#: Transposing instruments offered as buttons: label, transpose word.
INSTRUMENT_BUTTONS = (("for B\u266d", "Bb"), ("for E\u266d", "Eb"), ("for F", "F"))
#: How often a version's progress is read, and how long the chat waits for it at most.
POLL_INTERVAL_S = 0.5
MAX_WAIT_S = 300.0
_FIX_WORDS = ("fix",)


@dataclass(frozen=True)
class Suggestion:
    """One correction button: what it says and the option changes it asks for."""

    label: str
    changes: dict[str, str] = field(default_factory=dict)


def ranked_meters(summary: Mapping[str, Any]) -> list[str]:
    """Runner-up meters: the notation's first ranked alternatives, then the current meter's family, then the rest.

    The last button goes to the meter most often confused with the written one
    (METER_FAMILY) rather than to the ranking's fourth alternative: the ranking
    is least sure exactly where the family's bar-length confusions (4/4, 2/2,
    2/4) happen.
    """
    current = str(summary.get("time_signature") or "")
    ranked = (summary.get("alternatives") or {}).get("meter") or []
    ranked_names = [str(a.get("time_signature")) for a in ranked
                    if isinstance(a, Mapping) and a.get("time_signature") and a.get("time_signature") != current]
    names = ranked_names[:METER_RANKED_FIRST] + list(METER_FAMILY.get(current, ())) + ranked_names[METER_RANKED_FIRST:]
    out: list[str] = []
    for name in names:
        if name != current and name not in out:
            out.append(name)
    return out[:METER_BUTTONS]


def ranked_tempos(summary: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(label, bpm) of the other tempo readings: the ranked alternatives, else twice and half as fast."""
    bpm = float(summary.get("tempo_bpm") or 0)
    ranked = (summary.get("alternatives") or {}).get("tempo") or []
    out: list[tuple[str, float]] = []
    for alt in ranked:
        value = float(alt.get("bpm") or 0) if isinstance(alt, Mapping) else 0.0
        if value and bpm and abs(value / bpm - 1) > 0.1:
            out.append((f"\u2669={round(value)}", value))
    if not out and bpm:
        out = [(f"\u2669={round(bpm * 2)} (\u00d72)", bpm * 2), (f"\u2669={round(bpm / 2)} (\u00bd)", bpm / 2)]
    return [(label, value) for label, value in out if 20 <= value <= 320][:2]


def relative_key(key_text: str) -> str | None:
    """'C major' -> 'A minor', 'E minor' -> 'G major'; None for text that names no key."""
    from music21 import key as m21key

    try:
        tonic, mode = str(key_text).split()
        relative = m21key.Key(tonic[0] + tonic[1:].replace("b", "-"), mode).relative
    except Exception:  # noqa: BLE001 - music21 raises several types for a malformed key
        return None
    return f"{relative.tonic.name.replace('-', 'b')} {relative.mode}"


def suggestions(summary: Mapping[str, Any]) -> list[Suggestion]:
    """The likeliest corrections of a delivered score, in button order (meters, tempos, key, level, instruments)."""
    out = [Suggestion(meter, {"time": meter}) for meter in ranked_meters(summary)]
    out += [Suggestion(label, {"tempo": f"{value:g}" if value == int(value) else f"{value:.1f}"})
            for label, value in ranked_tempos(summary)]
    relative = relative_key(str(summary.get("key") or ""))
    if relative:
        out.append(Suggestion(relative.replace("b ", "\u266d ").replace("# ", "\u266f "), {"key": relative}))
    options = summary.get("options") or {}
    if summary.get("layout") == "piano" and options.get("level") != "easy":
        out.append(Suggestion("easy", {"level": "easy"}))
    if not options.get("transpose"):
        out += [Suggestion(label, {"transpose": word}) for label, word in INSTRUMENT_BUTTONS]
    return [s for s in out if len(button_data("x" * 24, s.changes).encode()) <= MAX_BUTTON_DATA_BYTES][:MAX_SUGGESTIONS]


def button_data(job_id: str, changes: Mapping[str, str]) -> str:
    """A button's callback data: 'fx:<job id>:time=6/8' (one change per button)."""
    ((word, value),) = changes.items()
    return f"{BUTTON_PREFIX}:{job_id}:{word}={value}"


def parse_button_data(data: str) -> tuple[str, dict[str, str]] | None:
    """(job id, changes) of a correction button's data, or None when it is not one."""
    match = re.fullmatch(rf"{BUTTON_PREFIX}:([A-Za-z0-9_-]{{8,64}}):([a-z]+)=(.{{1,40}})", data or "")
    if match is None or match.group(2) not in CORRECTABLE:
        return None
    return match.group(1), {match.group(2): match.group(3)}


def parse_fix_text(text: str) -> tuple[str | None, dict[str, str]]:
    """The job id (if named) and the changes of a typed fix: '/fix time:6/8 key:"E minor"', 'abc123... transpose:Bb'.

    Raises:
        OptionsError: nothing to change, an unknown word, or one a correction cannot change.
    """
    text = re.sub(r"^\s*/(\w+)(@\w+)?", lambda m: "" if m.group(1).lower() in _FIX_WORDS else m.group(0), text or "")
    job_id = None
    first = text.split(maxsplit=1)
    if first and re.fullmatch(r"[A-Za-z0-9_-]{20,64}", first[0]) and ":" not in first[0]:
        job_id, text = first[0], (first[1] if len(first) > 1 else "")
    pairs = split_option_words(text)
    if not pairs:
        raise OptionsError("Tell me what to change.", hint='For example /fix time:6/8 tempo:140 key:"E minor" transpose:Bb.')
    for word in pairs:
        if word not in CORRECTABLE:
            raise OptionsError(f"{word}: cannot be changed without listening again.",
                               hint="/fix changes " + ", ".join(CORRECTABLE) + "; send the recording again for the rest.")
    return job_id, pairs


def version_file_name(base: str, artifact: str) -> str:
    """The file a user receives for a version's artifact: ('Reel', 'v2/score.pdf') -> 'Reel-v2.pdf'."""
    folder, _, name = artifact.partition("/")
    stem, dot, ext = name.rpartition(".")
    if stem == "score":
        return f"{base}-{folder}.{ext}"
    return f"{base}-{folder}-{stem}.{ext}" if dot else f"{base}-{folder}-{name}"


def version_caption(summary: Mapping[str, Any]) -> str:
    """'Version 2: 6/8 · 84 bpm · 6/8 · C major · 8 bars' for a version's preview."""
    from stemscribe.bots.common import summary_line

    label = str(summary.get("version_label") or f"version {summary.get('version', '?')}")
    line = summary_line(summary).split("\n")[0]
    return (label[:1].upper() + label[1:]) + (f" \u00b7 {line}" if line else "")


def delivered_names(artifacts: list[Any]) -> list[str]:
    """The version files a chat posts, in order: the previews (pages in order), PDF, MusicXML, MIDI."""
    from stemscribe.bots.common import preview_page

    def rank(name: str) -> tuple[int, int]:
        leaf = name.split("/", 1)[1]
        page = preview_page(leaf)
        if page is not None:
            return 0, page
        order = ("score.pdf", "score.musicxml", "score.mid")
        return (1 + order.index(leaf), 0) if leaf in order else (9, 0)

    return sorted((a.name for a in artifacts if rank(a.name)[0] < 9), key=rank)


async def submit(client: Any, job_id: str, changes: Mapping[str, str], requester: Any, *,
                 moderator: bool = False) -> Any:
    """Queue a correction off the event loop (worker.corrections.submit_correction)."""
    from stemscribe.worker.corrections import submit_correction

    return await asyncio.to_thread(submit_correction, client, job_id, dict(changes), requester, moderator=moderator)


async def follow_version(client: Any, correction_id: str, *, poll_interval_s: float = POLL_INTERVAL_S,
                         max_wait_s: float = MAX_WAIT_S) -> tuple[Any | None, dict | None]:
    """Wait for a correction to end: (its JobOutput, None) when it finished, (None, error dict) otherwise."""
    from stemscribe.worker.corrections import correction_output

    waited = 0.0
    while True:
        try:
            status = await asyncio.to_thread(client.status, correction_id)
        except TransientError:
            status = None
        if status is not None and status.state in ("finished", "failed", "cancelled"):
            break
        if waited > max_wait_s:
            return None, {"type": "TransientError", "message": "Writing the new version took too long.",
                          "hint": "Please try again in a minute.", "user_error": False}
        await asyncio.sleep(poll_interval_s)
        waited += poll_interval_s
    if status.state != "finished":
        return None, status.error or {"type": "InternalError", "reference": correction_id}
    return await asyncio.to_thread(correction_output, client, correction_id), None


__all__ = ["BUTTON_PREFIX", "MAX_SUGGESTIONS", "REFUSED_TEXT", "Suggestion", "button_data", "delivered_names",
           "follow_version", "parse_button_data", "parse_fix_text", "ranked_meters", "ranked_tempos",
           "relative_key", "submit", "suggestions", "version_caption", "version_file_name"]
