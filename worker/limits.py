"""Size, duration, rate and fairness caps, checked before a job is queued; job timeouts.

Exports: SHORT_CLIP_S, TIMEOUT_BASE_S, TIMEOUT_PER_AUDIO_S, TIMEOUT_PER_AUDIO_STEMS_S,
TIMEOUT_MAX_S, ADMISSION_GRACE_S, QueueKind, JobPlan, check_files, probe_files,
plan_job, job_timeout_s, max_duration_for, wants_separation, human_duration, Admission.

Checks run in the order the user would want to hear about them: the file itself
(size, format, length for the mode), then this user's and this chat's running
jobs, then the user's rate window, and last the global queue length. The
fairness caps are one Lua script so that two uploads arriving together cannot
both slip under a cap, and a refused upload does not use up the rate window.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Sequence

from redis import Redis
from rq.job import Job, JobStatus

from stemscribe.core.audio import check_limits, probe
from stemscribe.core.errors import (AudioTooLargeError, EmptyAudioError, OptionsError, QueueFullError,
                                    RateLimitedError, TooManyJobsError)
from stemscribe.core.options import Mode, Options

#: Recordings up to this long (and not separated) go to the priority queue.
SHORT_CLIP_S = 60.0
#: Fixed part of every job's timeout: model warm-up, notation, LilyPond.
TIMEOUT_BASE_S = 240
#: Timeout added per second of audio for a score without separation.
TIMEOUT_PER_AUDIO_S = 4.0
#: Timeout added per second of audio when demucs separates stems (CPU speed).
TIMEOUT_PER_AUDIO_STEMS_S = 15.0
#: No job may run longer than this, whatever its length.
TIMEOUT_MAX_S = 4 * 3600
#: A slot whose job does not exist yet is kept this long (submit is between admit and enqueue).
ADMISSION_GRACE_S = 120

_TERMINAL = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


class QueueKind(StrEnum):
    """The RQ queues, in the order a general worker takes jobs from them."""

    SHORT = "short"
    DEFAULT = "default"
    SEPARATION = "separation"


@dataclass(frozen=True)
class JobPlan:
    """Where and how long a job may run.

    queue: the queue kind; timeout_s: RQ job timeout; duration_s: total audio length
    (None when a container does not say).
    """

    queue: QueueKind
    timeout_s: int
    duration_s: float | None


def human_duration(seconds: float) -> str:
    """45 -> '45 seconds', 600 -> '10 minutes', 3600 -> '1 hour', 7200 -> '2 hours'."""
    seconds = max(1, int(math.ceil(seconds)))
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 7200 and seconds != 3600:
        return f"{math.ceil(seconds / 60)} minutes"
    hours = seconds / 3600
    return "1 hour" if hours == 1 else f"{hours:.3g} hours"


def wants_separation(options: Options) -> bool:
    """Whether the job will run demucs (stems mode, or stems asked for)."""
    return options.mode is Mode.STEMS or options.stems


def check_files(sizes: Sequence[tuple[str, int]], options: Options, settings) -> None:
    """Cheap checks on the uploaded files before anything touches Redis or ffprobe.

    Args:
        sizes: (file name, size in bytes) per input.
        options: the job's options (multitrack allows several files).
        settings: stemscribe Settings (max_input_bytes).

    Raises:
        OptionsError: no file, or several files outside multitrack mode.
        EmptyAudioError: a zero-byte file.
        AudioTooLargeError: a file over max_input_bytes.
    """
    from stemscribe.core import defaults

    if not sizes:
        raise OptionsError("No recording was given.", hint="Attach an audio file or a voice note.")
    if len(sizes) > 1 and options.mode is not Mode.MULTITRACK:
        raise OptionsError(f"You sent {len(sizes)} files; several files make one score only in multitrack mode.",
                           hint="Add mode:multitrack, or send one recording.")
    if len(sizes) > defaults.MAX_MULTITRACK_FILES:
        raise OptionsError(f"You sent {len(sizes)} files; a multitrack score takes up to {defaults.MAX_MULTITRACK_FILES}.")
    for name, size in sizes:
        if size == 0:
            raise EmptyAudioError(f"{name} is empty (0 bytes).", hint="Send the recording again; the upload may have failed.")
        if size > settings.max_input_bytes:
            raise AudioTooLargeError(
                f"{name} is {size / 1e6:.1f} MB; this server takes files up to {settings.max_input_bytes / 1e6:.1f} MB.",
                hint="Send a compressed version (MP3, OGG or M4A) or a shorter section.")


def max_duration_for(options: Options, settings) -> float:
    """The longest recording accepted for these options (separation has its own cap)."""
    if wants_separation(options):
        return min(float(settings.max_duration_s), float(settings.max_duration_stems_s))
    return float(settings.max_duration_s)


def probe_files(paths: Sequence[Path], options: Options, settings) -> list[float | None]:
    """Read each file's header (ffprobe) and apply the format and duration caps for the mode.

    Args:
        paths: the uploaded files, saved to disk.
        options: the job's options.
        settings: stemscribe Settings.

    Returns:
        Each file's duration in seconds (None where the container does not say).

    Raises:
        UnsupportedFormatError, DecodeError, EmptyAudioError, AudioTooLongError, AudioTooLargeError.
    """
    cap_s = max_duration_for(options, settings)
    durations: list[float | None] = []
    for path in paths:
        info = probe(path)
        check_limits(info, max_duration_s=cap_s, max_bytes=int(settings.max_input_bytes))
        durations.append(info.duration_s)
    return durations


def job_timeout_s(duration_s: float | None, options: Options, settings) -> int:
    """The RQ timeout for a job: a fixed part plus a per-second-of-audio part for the mode.

    Args:
        duration_s: total audio length; None (unknown) counts as the mode's maximum.
        options: the job's options.
        settings: stemscribe Settings (duration caps, LilyPond timeout).

    Returns:
        Seconds, at most TIMEOUT_MAX_S.
    """
    length = max_duration_for(options, settings) if duration_s is None else duration_s
    per_s = TIMEOUT_PER_AUDIO_STEMS_S if wants_separation(options) or options.mode is Mode.AUTO else TIMEOUT_PER_AUDIO_S
    total = TIMEOUT_BASE_S + float(settings.lilypond_timeout_s) + per_s * length
    return int(min(TIMEOUT_MAX_S, math.ceil(total)))


def plan_job(durations: Sequence[float | None], options: Options, settings) -> JobPlan:
    """Choose the queue (short clips first, separation on its own queue) and the timeout."""
    known = [d for d in durations if d is not None]
    total = sum(known) if len(known) == len(durations) else None
    if wants_separation(options):
        kind = QueueKind.SEPARATION
    elif total is not None and max(known, default=0.0) <= SHORT_CLIP_S:
        kind = QueueKind.SHORT
    else:
        kind = QueueKind.DEFAULT
    # Multitrack inputs are transcribed one after the other: the timeout scales with the sum.
    return JobPlan(queue=kind, timeout_s=job_timeout_s(total, options, settings), duration_s=total)


# KEYS: user slots, chat slots, user rate window, then the RQ queue lists.
# ARGV: job id, max per user, max per chat, rate limit, window s, now, max queue length, slot ttl s
# Returns {0, waiting} when admitted, else {1, n} user cap, {2, n} chat cap,
# {3, n, retry_after_s} rate, {4, waiting} queue full. A rate limit of 0 turns the window off.
_ADMIT_LUA = """
local now = tonumber(ARGV[6])
local n_user = redis.call('ZCARD', KEYS[1])
if n_user >= tonumber(ARGV[2]) then return {1, n_user} end
local n_chat = redis.call('ZCARD', KEYS[2])
if n_chat >= tonumber(ARGV[3]) then return {2, n_chat} end
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
local n_rate = redis.call('ZCARD', KEYS[3])
local rate_limit = tonumber(ARGV[4])
if rate_limit > 0 and n_rate >= rate_limit then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {3, n_rate, math.ceil(tonumber(oldest[2]) + window - now)}
end
local waiting = 0
for i = 4, #KEYS do waiting = waiting + redis.call('LLEN', KEYS[i]) end
if waiting >= tonumber(ARGV[7]) then return {4, waiting} end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('EXPIRE', KEYS[3], window)
return {0, waiting}
"""


class Admission:
    """Per-user and per-chat job slots, the per-user rate window and the global queue cap.

    A slot is taken at submit and given back when the job ends (the job does it, and
    ``prune`` gives back slots of jobs that ended without doing so, e.g. a killed worker).

    Args:
        redis: connection (bytes responses).
        settings: stemscribe Settings (caps and window).
        queue_keys: Redis list keys of the RQ queues counted against max_queue_length.
    """

    def __init__(self, redis: Redis, settings, queue_keys: Sequence[str]) -> None:
        self.redis = redis
        self.settings = settings
        self.queue_keys = list(queue_keys)
        self._script = redis.register_script(_ADMIT_LUA)

    def slot_keys(self, platform: str, user_id: str, chat_id: str) -> tuple[str, str]:
        """Redis keys of the user's and the chat's slot sets."""
        prefix = self.settings.queue_prefix
        return f"{prefix}:slots:user:{platform}:{user_id}", f"{prefix}:slots:chat:{platform}:{chat_id}"

    def admit(self, job_id: str, platform: str, user_id: str, chat_id: str) -> int:
        """Take a slot for job_id, or raise the error that says which cap was hit.

        Returns:
            How many jobs were waiting in the queues before this one.

        Raises:
            TooManyJobsError: the user or the chat has max jobs queued or running.
            RateLimitedError: the user sent rate_limit_jobs in the last window.
            QueueFullError: max_queue_length jobs are waiting.
        """
        s = self.settings
        user_key, chat_key = self.slot_keys(platform, user_id, chat_id)
        self.prune(user_key)
        self.prune(chat_key)
        rate_key = f"{s.queue_prefix}:rate:{platform}:{user_id}"
        slot_ttl = int(s.job_result_ttl_s) + TIMEOUT_MAX_S
        code, count, *rest = self._script(
            keys=[user_key, chat_key, rate_key, *self.queue_keys],
            args=[job_id, s.max_jobs_per_user, s.max_jobs_per_chat, s.rate_limit_jobs, s.rate_limit_window_s,
                  f"{time.time():.3f}", s.max_queue_length, slot_ttl])
        if code == 0:
            return int(count)
        if code == 1:
            raise TooManyJobsError(f"You already have {count} recording{'s' if count != 1 else ''} queued or in progress.",
                                   hint="Wait for one to finish, or cancel one.")
        if code == 2:
            raise TooManyJobsError(f"This chat already has {count} recordings queued or in progress.",
                                   hint="Wait for one of them to finish.")
        if code == 3:
            wait = human_duration(float(rest[0])) if rest else "a while"
            raise RateLimitedError(f"You have sent {count} recordings in the last {human_duration(s.rate_limit_window_s)}.",
                                   hint=f"You can send the next one in {wait}.")
        raise QueueFullError(f"I'm busy: {count} recordings are waiting, so you would be number {count + 1} in line.",
                             hint="Please try again in a few minutes.")

    def release(self, job_id: str, platform: str, user_id: str, chat_id: str) -> None:
        """Give back the user's and chat's slot held by job_id (no-op if not held)."""
        user_key, chat_key = self.slot_keys(platform, user_id, chat_id)
        with self.redis.pipeline() as pipe:
            pipe.zrem(user_key, job_id)
            pipe.zrem(chat_key, job_id)
            pipe.execute()

    def prune(self, key: str) -> None:
        """Give back slots whose job has ended, or never got queued, or expired."""
        members = [m.decode() if isinstance(m, bytes) else m
                   for m in self.redis.zrangebyscore(key, "-inf", time.time() - ADMISSION_GRACE_S)]
        if not members:
            return
        jobs = Job.fetch_many(members, connection=self.redis)
        stale = [job_id for job_id, job in zip(members, jobs)
                 if job is None or job.get_status(refresh=False) in _TERMINAL]
        if stale:
            self.redis.zrem(key, *stale)
