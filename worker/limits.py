"""Size, duration, rate and fairness caps, checked before a job is queued; job timeouts.

Exports: ADMISSION_GRACE_S, probe_facts, Admission; re-exports QueueKind,
JobPlan and human_duration (core.plan, which plans every job: caps, queue, timeout).

Checks run in the order the user would want to hear about them: the file itself
(size, format, length for the mode: core.plan.check_inputs, the same check the
bots run before downloading), then this user's and this chat's running jobs,
then the user's rate window, and last the global queue length. The
fairness caps are one Lua script so that two uploads arriving together cannot
both slip under a cap, and a refused upload does not use up the rate window.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from redis import Redis
from rq.job import Job, JobStatus

from stemscribe.core.audio import check_limits, probe
from stemscribe.core.errors import QueueFullError, RateLimitedError, TooManyJobsError
from stemscribe.core.plan import TIMEOUT_MAX_S, InputFacts, JobPlan, Limits, QueueKind, human_duration

#: A slot whose job does not exist yet is kept this long (submit is between admit and enqueue).
ADMISSION_GRACE_S = 120

_TERMINAL = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def probe_facts(paths: Sequence[Path], names: Sequence[str], limits: Limits) -> list[InputFacts]:
    """Read each saved upload's header (ffprobe): format, sound track, size and duration caps.

    Args:
        paths: the uploaded files, saved to disk.
        names: the file names the user gave them (quoted in messages).
        limits: the deployment's caps (the general duration cap; the mode's own is core.plan's).

    Returns:
        InputFacts with the size and the duration each container reports.

    Raises:
        UnsupportedFormatError, DecodeError, EmptyAudioError, AudioTooLongError, AudioTooLargeError.
    """
    facts = []
    for path, name in zip(paths, names):
        info = probe(path)
        check_limits(info, max_duration_s=limits.max_duration_s, max_bytes=int(limits.max_input_bytes))
        facts.append(InputFacts(name=name, size_bytes=info.size_bytes, duration_s=info.duration_s))
    return facts


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
        slot_ttl = int(s.job_result_ttl_s + TIMEOUT_MAX_S)
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


__all__ = ["ADMISSION_GRACE_S", "Admission", "JobPlan", "QueueKind", "human_duration", "probe_facts"]
