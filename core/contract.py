"""The job contract shared by core, the worker and both bots: states, errors, result files.

Exports: JobState, ErrorKind, JobError, SCORE_FILES, DELIVERED_FILES, LISTING_ORDER,
preview_file_name, preview_page, is_stem_file, delivery_order, listing_order.

One module owns each of these so that no layer re-lists them in its own words:

- ``JobState``: where a job is (queued, started, finished, failed, cancelled), a
  string enum, so it is stored in Redis and compared as the plain word.
- ``JobError``: the error payload a failed job stores in Redis and every front
  end reads: what kind it was, the user-facing text and hint, whether the user can
  act on it, and a reference (the job id) for bugs. Built from an exception in
  one place (``JobError.from_exception``) and read back by ``JobError.from_dict``.
- Result file names and their order: what a score job writes (``SCORE_FILES``),
  which of them the chats post and in which order (``delivery_order``), and how
  the job API lists them (``listing_order``). Page previews are ``preview.png``
  (page 1), ``preview-2.png``, ``preview-3.png``, ...; stems are ``stems/<name>.<ext>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Iterable, Mapping

from . import errors


class JobState(StrEnum):
    """Where a job is; FINISHED, FAILED and CANCELLED are final."""

    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether the job will not change any more."""
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)

    @property
    def active(self) -> bool:
        """Whether the job still waits or runs."""
        return not self.final


class ErrorKind(StrEnum):
    """The error kinds that are not an exception class of core.errors (those go by class name)."""

    CANCELLED = "CancelledError"
    TRANSIENT = "TransientError"
    TIMEOUT = "JobTimeoutError"
    WORKER_LOST = "WorkerLostError"
    INTERNAL = "InternalError"


def _subclass_names(base: type) -> frozenset[str]:
    names, stack = set(), [base]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return frozenset(names)


_USER_KINDS = _subclass_names(errors.UserError) | {ErrorKind.TIMEOUT.value}
_TRANSIENT_KINDS = _subclass_names(errors.TransientError)

_CANCELLED_TEXT = "Cancelled."
_TRANSIENT_TEXT = "A service I depend on hiccuped. Please try again in a minute"
_BUG_TEXT = "Sorry, something went wrong on my side while writing your score"


@dataclass(frozen=True)
class JobError:
    """Why a job failed, as stored with it and shown in the chat.

    kind: the error's class name in core.errors, or an ErrorKind value.
    message / hint: text written for the user (None for bugs: they get an apology).
    user_error: the user can act on it (bad input, limits, a job over its time).
    reference: the job id, quoted in the apology for bugs and hiccups.
    """

    kind: str
    message: str | None = None
    hint: str | None = None
    user_error: bool = False
    reference: str | None = None

    @property
    def cancelled(self) -> bool:
        """The requester (or an operator) cancelled the job."""
        return self.kind == ErrorKind.CANCELLED

    @property
    def transient(self) -> bool:
        """A passing failure of a service (Redis, a download): try again later."""
        return not self.user_error and self.kind in _TRANSIENT_KINDS

    @property
    def is_bug(self) -> bool:
        """Neither the user's doing, nor a hiccup, nor a cancellation: an operator should look."""
        return not (self.user_error or self.cancelled or self.transient)

    def user_text(self) -> str:
        """What the chat shows: the message and hint, or an apology quoting the reference."""
        if self.user_error:
            message = self.message or "That did not work."
            return f"{message} {self.hint}" if self.hint else message
        if self.cancelled:
            return _CANCELLED_TEXT
        ref = f" (reference: {self.reference})" if self.reference else ""
        if self.transient:
            return _TRANSIENT_TEXT + ref + "."
        return _BUG_TEXT + ref + ". It has been logged."

    def to_dict(self) -> dict[str, Any]:
        """Plain data for Redis (the job's meta) and result files."""
        return {"type": self.kind, "message": self.message, "hint": self.hint,
                "user_error": self.user_error, "reference": self.reference}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "JobError":
        """Read a stored payload back; a missing or partial one reads as a bug."""
        data = data or {}
        kind = str(data.get("type") or ErrorKind.INTERNAL)
        user_error = bool(data.get("user_error")) or kind in _USER_KINDS
        return cls(kind=kind, message=data.get("message"), hint=data.get("hint"), user_error=user_error,
                   reference=data.get("reference"))

    @classmethod
    def from_exception(cls, exc: BaseException, *, reference: str | None = None) -> "JobError":
        """The payload for an exception: user errors keep their text; anything else is a bug or a hiccup."""
        if isinstance(exc, errors.UserError):
            return cls(type(exc).__name__, exc.message, exc.hint, user_error=True, reference=reference)
        if isinstance(exc, errors.CancelledError):
            return cls.cancelled_job()
        if isinstance(exc, errors.TransientError):
            return cls(type(exc).__name__, exc.message, exc.hint, reference=reference)
        if isinstance(exc, errors.StemscribeError):
            return cls(type(exc).__name__, exc.message, exc.hint, reference=reference)
        return cls(ErrorKind.INTERNAL.value, reference=reference)

    @classmethod
    def cancelled_job(cls) -> "JobError":
        """The payload of a cancelled job."""
        return cls(ErrorKind.CANCELLED.value, "The job was cancelled.")

    @classmethod
    def timed_out(cls, limit_text: str, *, reference: str | None) -> "JobError":
        """The payload of a job that ran past its time (e.g. limit_text '21 minutes')."""
        return cls(ErrorKind.TIMEOUT.value, f"This recording took longer than the {limit_text} I allow for it.",
                   "Try a shorter section, or without stems.", user_error=True, reference=reference)

    @classmethod
    def worker_lost(cls, *, reference: str | None) -> "JobError":
        """The payload of a job whose worker died under it (killed, out of memory)."""
        return cls(ErrorKind.WORKER_LOST.value,
                   "The worker running this job stopped unexpectedly (it may have run out of memory).",
                   "Try again, or send a shorter recording.", reference=reference)


# ---------------------------------------------------------------- result files

#: Files every successful score job writes, in the order the job API lists them
#: (the extra previews of later pages follow preview.png; stems/ and the rest come after).
SCORE_FILES: tuple[str, ...] = (
    "score.pdf", "preview.png", "score.ly", "score.musicxml", "score.mid", "notes.mid", "result.json",
)
#: The files the chats post, in their order: every page's preview, then the score files (stems after).
DELIVERED_FILES: tuple[str, ...] = ("preview.png", "score.pdf", "score.musicxml", "score.mid", "notes.mid")
#: How JobClient.result lists a job's files.
LISTING_ORDER: tuple[str, ...] = ("score.pdf", "preview.png", "score.musicxml", "score.mid", "notes.mid",
                                  "score.ly", "result.json")

_PREVIEW_NAME = re.compile(r"^preview(?:-([1-9][0-9]*))?\.png$")


def preview_file_name(page: int) -> str:
    """The preview picture of a page: 1 -> 'preview.png', 2 -> 'preview-2.png'."""
    if page < 1:
        raise ValueError(f"pages count from 1, not {page}")
    return "preview.png" if page == 1 else f"preview-{page}.png"


def preview_page(name: str) -> int | None:
    """The page a preview file shows ('preview-3.png' -> 3), or None for any other name."""
    match = _PREVIEW_NAME.match(name)
    if match is None:
        return None
    page = int(match.group(1) or 1)
    return page if name == preview_file_name(page) else None


def is_stem_file(name: str) -> bool:
    """Whether a result file is a separated stem (stems/<name>.<ext>)."""
    return name.startswith("stems/")


def _ordered(names: Iterable[str], order: tuple[str, ...]) -> list[str]:
    def key(name: str) -> tuple[int, int, str]:
        page = preview_page(name)
        if page is not None:
            return order.index("preview.png"), page, name
        if name in order:
            return order.index(name), 0, name
        return len(order), 0, name

    return sorted(names, key=key)


def delivery_order(names: Iterable[str]) -> list[str]:
    """The result files the chats post, in the order they post them; other files are left out.

    Every page's preview first (preview.png, preview-2.png, ...), then the PDF,
    MusicXML, MIDI and performance MIDI, then the stems by name.
    """
    sent = [n for n in names if n in DELIVERED_FILES or preview_page(n) is not None or is_stem_file(n)]
    return _ordered(sent, DELIVERED_FILES)


def listing_order(names: Iterable[str]) -> list[str]:
    """All of a job's files in the order the job API lists them (LISTING_ORDER, pages by number, rest by name)."""
    return _ordered(names, LISTING_ORDER)
