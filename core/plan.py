"""Planning a job: the decisions every layer needs, made in one place.

Exports: Limits, InputFacts, QueueKind, JobPlan, separates, duration_cap_s,
check_inputs, plan_job, auto_separation_refusal, job_timeout_s, format_size,
format_clock, human_duration, TIMEOUT_MAX_S.

Both bots' early checks (before anything is downloaded), the job API's admission
(before anything is queued) and the pipeline (after decoding) ask this module the
same questions, so they give the same answers in the same words:

- how many files a job may take, and in which mode;
- whether the job separates stems, as far as that is known before decoding
  (mode:stems, or stems:yes on one recording; auto decides after listening);
- the size and duration caps that apply, and what "MB" means (core.defaults.MEGABYTE_BYTES);
- the queue (short clips first, separation on its own queue) and the timeout.

When mode auto resolves to separation after decoding, ``auto_separation_refusal``
holds that job to the stems duration cap; the worker moves such a job to the
separation queue (worker.jobs).

Every check raises the core.errors user error that names the problem and the
limit, so a chat shows one message whichever layer caught it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Sequence

from . import defaults
from .errors import AudioTooLargeError, AudioTooLongError, EmptyAudioError, OptionsError
from .options import Mode, Options

#: No job may run longer than this (core.defaults.JOB_TIMEOUT_MAX_S).
TIMEOUT_MAX_S = defaults.JOB_TIMEOUT_MAX_S

_SIZE_HINT = "Send a compressed version (MP3, OGG or M4A) or a shorter section."
_LENGTH_HINT = "Trim it to the part you want written down and send that."


@dataclass(frozen=True)
class Limits:
    """Caps a deployment puts on one job. Defaults are core.defaults."""

    max_duration_s: float = defaults.MAX_DURATION_S
    max_duration_stems_s: float = defaults.MAX_DURATION_STEMS_S
    max_input_bytes: int = defaults.MAX_INPUT_BYTES
    max_files: int = defaults.MAX_MULTITRACK_FILES
    lilypond_timeout_s: float = defaults.LILYPOND_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: Any) -> "Limits":
        """Limits from a stemscribe.settings.Settings (duck-typed to keep core free of it)."""
        return cls(
            max_duration_s=float(settings.max_duration_s),
            max_duration_stems_s=float(settings.max_duration_stems_s),
            max_input_bytes=int(settings.max_input_bytes),
            lilypond_timeout_s=float(settings.lilypond_timeout_s),
        )


class QueueKind(StrEnum):
    """The job queues, in the order a general worker takes jobs from them."""

    SHORT = "short"
    DEFAULT = "default"
    SEPARATION = "separation"


@dataclass(frozen=True)
class InputFacts:
    """What is known of one input before it is decoded.

    name: the file name as the user sent it (quoted in messages).
    size_bytes / duration_s: None where the platform or container does not say.
    """

    name: str
    size_bytes: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class JobPlan:
    """Where and how long a job may run.

    separates: True when the job will separate stems, False when it will not,
    None when mode auto decides after listening. queue: the queue kind.
    timeout_s: the job's time limit. duration_s: total audio length (None when a
    container does not say). max_duration_s: the length cap that applied.
    """

    separates: bool | None
    queue: QueueKind
    timeout_s: int
    duration_s: float | None
    max_duration_s: float


def format_size(size_bytes: float) -> str:
    """A size as users read it: 512 -> '512 bytes', 20_971_520 -> '20 MB', 26_529_000 -> '25.3 MB'."""
    if size_bytes < 1024:
        return f"{int(size_bytes)} bytes"
    if size_bytes < defaults.MEGABYTE_BYTES:
        return f"{size_bytes / 1024:.0f} KB"
    megabytes = size_bytes / defaults.MEGABYTE_BYTES
    return f"{megabytes:.0f} MB" if abs(megabytes - round(megabytes)) < 0.05 else f"{megabytes:.1f} MB"


def format_clock(seconds: float) -> str:
    """Seconds as m:ss (or h:mm:ss), the way musicians read lengths: 751 -> '12:31'."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def human_duration(seconds: float) -> str:
    """A span in words: 45 -> '45 seconds', 600 -> '10 minutes', 3600 -> '1 hour', 7200 -> '2 hours'."""
    seconds = max(1, int(math.ceil(seconds)))
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 7200 and seconds != 3600:
        return f"{math.ceil(seconds / 60)} minutes"
    hours = seconds / 3600
    return "1 hour" if hours == 1 else f"{hours:.3g} hours"


def separates(options: Options, n_inputs: int) -> bool | None:
    """Whether a job separates stems: mode:stems, or stems:yes on one recording.

    Returns None for mode auto on one recording without stems:yes (it decides after
    listening), False otherwise (multitrack inputs are separate already).
    """
    if options.mode is Mode.STEMS or (options.stems and n_inputs == 1):
        return True
    if options.mode is Mode.AUTO and n_inputs == 1:
        return None
    return False


def duration_cap_s(limits: Limits, *, separating: bool | None) -> float:
    """The longest recording accepted: separation has its own cap; auto gets the general one."""
    if separating:
        return min(float(limits.max_duration_s), float(limits.max_duration_stems_s))
    return float(limits.max_duration_s)


def check_inputs(files: Sequence[InputFacts], options: Options, limits: Limits, *,
                 download_limit_bytes: int | None = None, download_limit_owner: str | None = None) -> None:
    """The cheap checks on a job's inputs, in the order a user wants to hear them.

    Args:
        files: what is known of each input (unknown sizes and durations pass).
        options: the job's options (multitrack allows several files).
        limits: the deployment's caps.
        download_limit_bytes: a stricter size limit of the platform the file comes
            through (Telegram's bot download limit), if any.
        download_limit_owner: who sets that limit, for the message ("Telegram").

    Raises:
        OptionsError: no file, several files outside multitrack, too many files, one file for multitrack.
        EmptyAudioError: a zero-byte file.
        AudioTooLargeError: a file over the platform's or this server's size limit.
        AudioTooLongError: a recording longer than this server takes for the mode.
    """
    n = len(files)
    if n == 0:
        raise OptionsError("No recording was given.", hint="Attach an audio file or a voice note.")
    if n > 1 and options.mode not in (Mode.AUTO, Mode.MULTITRACK):
        raise OptionsError(f"mode:{options.mode} takes one recording, but you sent {n}.",
                           hint="Use mode:multitrack (one part per file), or send one file.")
    if n > limits.max_files:
        raise OptionsError(f"That's {n} files; I take up to {limits.max_files} in one multitrack job.",
                           hint="Send fewer files, or mix some of them down first.")
    if options.mode is Mode.MULTITRACK and n < 2:
        raise OptionsError("mode:multitrack needs two or more files, one per part.",
                           hint="Send all the tracks together, or use mode:solo for one recording.")
    separating = separates(options, n)
    cap_s = duration_cap_s(limits, separating=separating)
    for item in files:
        _check_size(item, limits, download_limit_bytes, download_limit_owner)
        if item.duration_s is not None and item.duration_s > cap_s + defaults.DURATION_GRACE_S:
            what = " when separating stems" if separating and cap_s < limits.max_duration_s else ""
            raise AudioTooLongError(f"{item.name} is {format_clock(item.duration_s)} long; "
                                    f"I accept up to {format_clock(cap_s)}{what}.", hint=_LENGTH_HINT)


def _check_size(item: InputFacts, limits: Limits, download_limit_bytes: int | None, owner: str | None) -> None:
    size = item.size_bytes
    if size is None:
        return
    if size == 0:
        raise EmptyAudioError(f"{item.name} is empty (0 bytes).",
                              hint="Send the recording again; the upload may have failed.")
    if download_limit_bytes is not None and download_limit_bytes < limits.max_input_bytes and size > download_limit_bytes:
        raise AudioTooLargeError(f"{owner or 'This chat'} lets bots download files up to {format_size(download_limit_bytes)}, "
                                 f"and {item.name} is {format_size(size)}.", hint=_SIZE_HINT)
    if size > limits.max_input_bytes:
        raise AudioTooLargeError(f"{item.name} is {format_size(size)}; this server takes files up to "
                                 f"{format_size(limits.max_input_bytes)}.", hint=_SIZE_HINT)


def job_timeout_s(duration_s: float | None, *, separating: bool | None, limits: Limits) -> int:
    """A job's time limit: a fixed part plus a per-second-of-audio part.

    Args:
        duration_s: total audio length; None (unknown) counts as the cap.
        separating: as separates() says; auto (None) is budgeted as separation, since it may become it.
        limits: the deployment's caps (LilyPond's limit is part of the fixed time).

    Returns:
        Seconds, at most core.defaults.JOB_TIMEOUT_MAX_S.
    """
    length = duration_cap_s(limits, separating=separating) if duration_s is None else duration_s
    per_s = defaults.JOB_TIMEOUT_PER_AUDIO_S if separating is False else defaults.JOB_TIMEOUT_PER_AUDIO_STEMS_S
    total = defaults.JOB_TIMEOUT_BASE_S + float(limits.lilypond_timeout_s) + per_s * length
    return int(min(defaults.JOB_TIMEOUT_MAX_S, math.ceil(total)))


def plan_job(files: Sequence[InputFacts], options: Options, limits: Limits, **checks: Any) -> JobPlan:
    """Check the inputs and decide the queue, timeout and caps of a job.

    Args:
        files: what is known of each input (sizes; durations from the platform or ffprobe).
        options: the job's options.
        limits: the deployment's caps.
        checks: download_limit_bytes / download_limit_owner, as check_inputs takes them.

    Returns:
        The JobPlan. Short recordings that do not separate go to the short queue,
        separation to its own, everything else (unknown lengths included) to default.

    Raises:
        The errors of check_inputs.
    """
    check_inputs(files, options, limits, **checks)
    separating = separates(options, len(files))
    known = [f.duration_s for f in files if f.duration_s is not None]
    # Multitrack inputs are transcribed one after the other: the timeout scales with the sum.
    total = sum(known) if len(known) == len(files) else None
    if separating:
        queue = QueueKind.SEPARATION
    elif total is not None and max(known, default=0.0) <= defaults.SHORT_CLIP_S:
        queue = QueueKind.SHORT
    else:
        queue = QueueKind.DEFAULT
    return JobPlan(separates=separating, queue=queue, timeout_s=job_timeout_s(total, separating=separating, limits=limits),
                   duration_s=total, max_duration_s=duration_cap_s(limits, separating=separating))


def auto_separation_refusal(duration_s: float, limits: Limits) -> str | None:
    """Why an auto job that wants to separate may not (too long for the stems cap), or None.

    The caller writes the recording another way (a piano reduction) and tells the
    user this reason; mode:stems itself is refused before decoding by check_inputs.
    """
    cap_s = duration_cap_s(limits, separating=True)
    if duration_s > cap_s + defaults.DURATION_GRACE_S:
        return (f"at {format_clock(duration_s)} it is longer than the {format_clock(cap_s)} "
                "this server separates into stems")
    return None
