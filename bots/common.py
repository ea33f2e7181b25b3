"""Wording shared by both chat front ends: errors, progress, summaries, help.

Exports: user_message, summary_line, progress_text, format_duration, HELP_TEXT,
OPTIONS_HELP, MODE_DESCRIPTIONS, ARTIFACT_ORDER, artifact_caption, page_caption,
delivery_order, preview_page, has_option_words, caption_options.

One place maps every error to what the user reads, so Discord and Telegram say
the same thing. UserError messages are shown as they are (plus their hint);
anything else is a bug and gets an apology that quotes the job id.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any, Mapping

from stemscribe.core.contract import DELIVERED_FILES, JobError, JobState, delivery_order, is_stem_file, preview_page
from stemscribe.core.errors import OptionsError, StemscribeError
from stemscribe.core.options import OPTION_KEYS, Options, options_from_pairs, parse_options

log = logging.getLogger(__name__)

MODE_DESCRIPTIONS: dict[str, str] = {
    "auto": "let stemscribe choose and say why",
    "solo": "one instrument, chords and all, on its own staff",
    "piano": "a full mix reduced to a grand staff (melody, harmony, bass)",
    "stems": "separate the mix, one staff per instrument, drums on a percussion staff",
    "multitrack": "several files, one part each",
}

OPTIONS_HELP = (
    "Options (all optional): mode:auto|solo|piano|stems|multitrack  stems:yes  "
    "instrument:guitar  title:\"My Song\"  composer:\"Me\"  tempo:92  time:6/8  "
    "key:\"D minor\"  level:easy|full  chords:yes|no  engine:auto|basic-pitch|transkun  "
    "format:opus|flac|wav  tuning:auto|off|432  swing:auto|yes|no  transpose:+2|-m3|Bb-clarinet|alto-sax  "
    "tab:auto|yes|no  strings:standard|drop-d|dadgad|open-g|half-step-down|bass4|bass5  capo:0-12"
)

HELP_TEXT = (
    "Send me a recording and I write it down as sheet music: a PDF, a preview picture, "
    "MusicXML for MuseScore and MIDI.\n\n"
    "Modes:\n" + "\n".join(f"  {k}: {v}" for k, v in MODE_DESCRIPTIONS.items()) + "\n\n"
    + OPTIONS_HELP + "\n\n"
    "Examples:\n"
    "  mode:piano title:\"Autumn Leaves\"\n"
    "  mode:stems stems:yes\n"
    "  instrument:violin tempo:100 time:6/8\n"
    "  stems:yes score:no   (just the separated audio)"
)

#: Order in which result files are delivered (core.contract owns it; see delivery_order).
ARTIFACT_ORDER: tuple[str, ...] = DELIVERED_FILES
_CAPTIONS = {
    "preview.png": "Preview (first page)",
    "score.pdf": "Score (PDF)",
    "score.musicxml": "MusicXML (opens in MuseScore, Sibelius, Dorico)",
    "score.mid": "MIDI of the score (quantized)",
    "notes.mid": "MIDI of the performance (timing as played)",
}


def artifact_caption(name: str) -> str:
    """A short description of one result file for chat captions."""
    if is_stem_file(name):
        return f"Stem: {name.split('/', 1)[1].rsplit('.', 1)[0]}"
    page = preview_page(name)
    if page is not None and page > 1:
        return f"Preview (page {page})"
    return _CAPTIONS.get(name, name)


def page_caption(name: str, result: Mapping[str, Any]) -> str:
    """The caption of one page's preview picture: "Page 2 of 3" ("Page 2" when the count is unknown)."""
    page = preview_page(name) or 1
    pages = int(result.get("pages") or 0)
    return f"Page {page} of {pages}" if pages >= page else f"Page {page}"


_OPTION_WORD = re.compile(r"^([A-Za-z_\-]+)[:=](.*)$", re.S)


def has_option_words(text: str | None) -> bool:
    """Whether chat text holds at least one key:value (or key=value) word, i.e. is meant as options.

    A word counts when something follows the colon ("mode:piano", 'title:"My', "tempi:90"),
    or when it is an option word even without a value ("mode:"); "Tonight:" alone does not.
    """
    for word in (text or "").split():
        m = _OPTION_WORD.match(word)
        if m and (m.group(2) or m.group(1).lower() in OPTION_KEYS):
            return True
    return False


def caption_options(text: str | None, *, base: Options | None = None,
                    title_fallback: bool = False) -> tuple[Options, str | None]:
    """Options from the text sent with a recording.

    Args:
        text: the caption (bot mentions already removed).
        base: options to start from (saved defaults).
        title_fallback: a caption without a single key:value word is the score's title
            instead (private chats: "my song for tonight"); with one, parsing is strict.

    Returns:
        (options, the caption when it became the title, else None).

    Raises:
        OptionsError: bad option words, or a title-caption that is too long or unusable.
    """
    if title_fallback and text and text.strip() and not has_option_words(text):
        try:
            options = options_from_pairs({"title": text}, base=base)
        except OptionsError as error:
            raise OptionsError(f"I took your caption as the score's title, but the {error.message[0].lower()}"
                               f"{error.message[1:]}", hint=error.hint) from None
        return options, options.title
    return parse_options(text, base=base), None


def format_duration(seconds: float) -> str:
    """12.5 -> '0:12', 754 -> '12:34'."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def user_message(error: BaseException | Mapping[str, Any] | None, *, job_id: str | None = None) -> str:
    """What the chat shows for an error (an exception or a job's stored error dict).

    Args:
        error: the exception, or {"type", "message", "hint"} as stored on a failed job.
        job_id: quoted in the apology for bugs so an operator can find the log.

    Returns:
        One or two plain sentences.
    """
    if error is None or isinstance(error, Mapping):
        payload = JobError.from_dict(error)
        if job_id:
            payload = replace(payload, reference=job_id)
    else:
        payload = JobError.from_exception(error, reference=job_id)
    return payload.user_text()


def outcome_text(state: str, error: Mapping[str, Any] | None, *, job_id: str | None = None) -> str:
    """What both chats say of a job that ended without a score (failed or cancelled)."""
    if JobState(state) is JobState.CANCELLED:
        return JobError.cancelled_job().user_text()
    return user_message(error or {}, job_id=job_id)


def progress_text(state: str, *, stage: str | None = None, percent: float | None = None,
                  message: str | None = None, position: int | None = None) -> str:
    """One line for the progress message that the bots edit in place."""
    if state == "queued":
        if position and position > 1:
            return f"Queued: you are number {position} in line."
        return "Queued: starting shortly."
    if state == "started":
        pct = f" {int(round(percent or 0)):d}%" if percent is not None else ""
        what = STAGE_LABELS.get(stage or "", "Working")
        bar = _bar(percent)
        detail = (message or "").strip().rstrip(".…")
        # Stages often repeat their own label as the message; show it once.
        if detail and (detail.lower() in what.lower() or what.lower() in detail.lower()):
            detail = ""
        return f"{what}…{pct} {bar}" + (f"\n{detail}" if detail else "")
    if state == "finished":
        return "Done."
    if state == "cancelled":
        return "Cancelled."
    return "Failed."


#: What the progress message says during each stage of a running job.
STAGE_LABELS = {
    "starting": "Fetching your recording",
    "decode": "Reading the audio",
    "separate": "Separating instruments",
    "transcribe": "Listening for notes",
    "analyze": "Finding tempo, meter and key",
    "score": "Writing the score",
    "engrave": "Engraving",
    "done": "Packing up the files",
}


def _bar(percent: float | None, width: int = 12) -> str:
    if percent is None:
        return ""
    filled = int(round(width * max(0.0, min(100.0, percent)) / 100))
    return "▓" * filled + "░" * (width - filled)


def summary_line(result: Mapping[str, Any]) -> str:
    """One-line summary of a finished job from its result.json content.

    e.g. "Piano reduction (auto: a full mix with several instruments) · 96 bpm · 4/4 · E♭ major · 12 bars"
    (with "· 3 pages" when the score has several, and a line saying the PDF has them all when
    some pages got no preview picture), then up to two of the job's notes.
    """
    bits: list[str] = []
    mode = str(result.get("mode", ""))
    label = {"solo": "Solo", "piano": "Piano reduction", "stems": "Stems", "multitrack": "Multitrack"}.get(mode, mode)
    reason = result.get("mode_reason")
    if result.get("mode_requested") == "auto" and reason:
        label += f" (auto: {reason})"
    if label:
        bits.append(label)
    if result.get("tempo_bpm"):
        bits.append(f"{round(float(result['tempo_bpm']))} bpm")
    if result.get("time_signature"):
        bits.append(str(result["time_signature"]))
    if result.get("key"):
        bits.append(str(result["key"]).replace("b ", "♭ ").replace("# ", "♯ "))
    if result.get("bars"):
        bits.append(f"{result['bars']} bars")
    pages = int(result.get("pages") or 0)
    if pages > 1:
        bits.append(f"{pages} pages")
    line = " · ".join(bits)
    unpreviewed = _unpreviewed_pages_note(result, pages)
    notes = ([unpreviewed] if unpreviewed else []) + [str(w) for w in result.get("user_notes", [])][:2]
    close = close_meter_note(result)
    notes = ([close] if close else []) + notes
    return line + ("\n" + "\n".join(notes) if notes else "")


#: The runner-up meter is worth a line when its score is at least this share of the written one's.
CLOSE_METER_RATIO = 0.6


def close_meter_note(result: Mapping[str, Any]) -> str:
    """"3/4 or 6/8: I wrote 3/4" when result.json's top two meter alternatives are close, else ""."""
    meters = (result.get("alternatives") or {}).get("meter") or []
    if len(meters) < 2:
        return ""
    first, second = meters[0], meters[1]
    s1, s2 = float(first.get("score", 0.0)), float(second.get("score", 0.0))
    if s2 <= 0 or s2 < CLOSE_METER_RATIO * s1:
        return ""
    return f"{first['time_signature']} or {second['time_signature']}: I wrote {first['time_signature']}"


def _unpreviewed_pages_note(result: Mapping[str, Any], pages: int) -> str:
    """A sentence when the score has more pages than preview pictures ("" otherwise, or when files are not listed)."""
    files = result.get("files")
    if not isinstance(files, list):
        return ""
    previews = sum(1 for name in files if preview_page(str(name)) is not None)
    if not 0 < previews < pages:
        return ""
    return f"The previews show the first {previews} pages; the PDF has all {pages}."


__all__ = [
    "ARTIFACT_ORDER", "HELP_TEXT", "STAGE_LABELS", "MODE_DESCRIPTIONS", "OPTIONS_HELP", "StemscribeError",
    "artifact_caption", "caption_options", "close_meter_note", "delivery_order", "format_duration", "has_option_words",
    "outcome_text", "page_caption", "preview_page", "progress_text", "summary_line", "user_message",
]
