"""Which bot delivers a job's outcome to its chat: the book of undelivered jobs, delivery leases, posted steps.

Exports: DeliveryBook, DeliveryMethods.

A bot records every job it submits as undelivered for its platform (one sorted
set per platform, scored by submit time; the reply address is already in the
job's meta) and takes a lease on delivering it: a key naming the bot instance,
with an expiry the instance keeps renewing while it follows the job. Once the
results or the error message are posted, the bot marks the job delivered.

A bot that restarts, or a second instance, lists the platform's undelivered
jobs and claims those nobody holds; the claim is one Lua script (still
undelivered, and SET NX on the lease), so of two instances claiming together
exactly one wins, and a job marked delivered can never be claimed again. A bot
that stops cleanly releases its leases so the next instance resumes at once; a
crashed one's leases lapse after ``settings.delivery_lease_s``.

Results often take several messages. After each one the bot records it as a
posted step (an opaque string the bot chooses; both bots use the artifacts the
message carried) in a set next to the lease, and the instance that resumes the
job reads that set and posts only the rest. The set lives as long as the job
may stay undelivered (``job_result_ttl_s``, like the book), so it outlasts a
dead instance's lease, and goes when the job is marked delivered. Only the
instance holding the lease may record a step. What stays at-least-once is the
one message being posted when an instance dies: sent, but not yet recorded.

Entries older than ``job_result_ttl_s`` are pruned: the job and its files are
gone by then, so there is nothing left to deliver.

JobClient inherits DeliveryMethods: the bots call these methods on the client.
"""

from __future__ import annotations

import time

from redis import Redis
from rq.job import Job

from .queues import delivery_lease_key, delivery_steps_key, transient, undelivered_key
from .records import JobStatus

# Scripts on a job take KEYS: book, lease[, steps] and ARGV: job id, owner[, lease ms, ...].
# KEYS: book, lease. 1 = claimed.
_CLAIM = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
"""
# The holder check renewing and recording share. KEYS: book, lease. true = still ours (extended, or
# taken back after it lapsed with nobody else taking it); false = lost (another holds it, or delivered).
_HOLD = """
local function hold()
  local holder = redis.call('GET', KEYS[2])
  if holder == ARGV[2] then redis.call('PEXPIRE', KEYS[2], ARGV[3]) return true end
  if holder then return false end
  if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return true
end
"""
# 1 = still ours; 0 = lost.
_RENEW = _HOLD + "if hold() then return 1 end return 0"
# KEYS: book, lease, steps. ARGV: ..., lease ms, steps TTL s, step. 1 = recorded (lease renewed); 0 = not ours.
_STEP = _HOLD + """
if not hold() then return 0 end
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 1
"""
# KEYS: lease. ARGV: owner (the only script without a job id).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: book, lease, steps. 1 = marked delivered; 0 = another instance holds the job (it delivers instead).
_DONE = """
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
"""


class DeliveryBook:
    """Undelivered jobs per platform, the leases of the bot instances delivering them, and their posted steps.

    Args:
        redis: the job client's connection.
        prefix: settings.queue_prefix.
        lease_s: how long a claim lasts without renewal.
        retention_s: how long an undelivered entry (and its posted steps) is kept: the job's result TTL.
    """

    def __init__(self, redis: Redis, *, prefix: str, lease_s: float, retention_s: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.lease_ms = max(1, int(lease_s * 1000))
        self.retention_s = retention_s
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._step = redis.register_script(_STEP)
        self._release = redis.register_script(_RELEASE)
        self._done = redis.register_script(_DONE)

    @property
    def _keep_s(self) -> int:
        """Expiry of a platform's book and of a job's steps: they go by themselves once nothing is left."""
        return int(self.retention_s) + 60

    def _keys(self, platform: str, job_id: str) -> list[str]:
        return [undelivered_key(self.prefix, platform), delivery_lease_key(self.prefix, job_id),
                delivery_steps_key(self.prefix, platform, job_id)]

    def record(self, pipe, platform: str, job_id: str, owner: str | None) -> None:
        """Queue, on a pipeline, the commands that book a new job as undelivered (and leased to owner)."""
        book = undelivered_key(self.prefix, platform)
        pipe.zadd(book, {job_id: time.time()})
        pipe.expire(book, self._keep_s)
        if owner:
            pipe.set(delivery_lease_key(self.prefix, job_id), owner, px=self.lease_ms)

    def forget(self, platform: str, job_id: str) -> None:
        """Drop a job from the book (it was never queued, or it no longer exists)."""
        book, lease, steps = self._keys(platform, job_id)
        with self.redis.pipeline() as pipe:
            pipe.zrem(book, job_id)
            pipe.delete(lease, steps)
            pipe.execute()

    def pending(self, platform: str) -> list[str]:
        """Undelivered job ids of a platform, oldest first, after pruning expired entries."""
        book = undelivered_key(self.prefix, platform)
        with self.redis.pipeline() as pipe:
            pipe.zremrangebyscore(book, "-inf", time.time() - self.retention_s)
            pipe.zrange(book, 0, -1)
            _, ids = pipe.execute()
        return [i.decode() for i in ids]

    def claim(self, platform: str, job_id: str, owner: str) -> bool:
        """Take the lease of an undelivered job nobody holds; False if held (even by owner) or delivered."""
        return bool(self._claim(keys=self._keys(platform, job_id)[:2], args=[job_id, owner, self.lease_ms]))

    def renew(self, platform: str, job_id: str, owner: str) -> bool:
        """Extend owner's lease; False when another instance holds it now or the job was delivered."""
        return bool(self._renew(keys=self._keys(platform, job_id)[:2], args=[job_id, owner, self.lease_ms]))

    def add_step(self, platform: str, job_id: str, owner: str, step: str) -> bool:
        """Record a posted step while holding the lease (renewing it); False, nothing recorded, if not held."""
        return bool(self._step(keys=self._keys(platform, job_id), args=[job_id, owner, self.lease_ms,
                                                                        self._keep_s, step]))

    def steps(self, platform: str, job_id: str) -> set[str]:
        """The steps recorded for the job so far (empty once it was delivered)."""
        return {s.decode() for s in self.redis.smembers(delivery_steps_key(self.prefix, platform, job_id))}

    def release(self, job_id: str, owner: str) -> None:
        """Give up owner's lease, leaving the job undelivered (its steps kept) for the next instance."""
        self._release(keys=[delivery_lease_key(self.prefix, job_id)], args=[owner])

    def done(self, platform: str, job_id: str, owner: str) -> bool:
        """Mark the job delivered and drop its steps; False (and nothing changed) when another instance holds it."""
        return bool(self._done(keys=self._keys(platform, job_id), args=[job_id, owner]))

    def holder(self, job_id: str) -> str | None:
        """The owner id holding the job's lease now, or None."""
        value = self.redis.get(delivery_lease_key(self.prefix, job_id))
        return value.decode() if value is not None else None


class DeliveryMethods:
    """The delivery part of JobClient's API, used by the bots through stemscribe.bots.deliveries.

    Expects the class it is mixed into to provide ``redis``, ``deliveries`` (a
    DeliveryBook) and ``_status_of(job) -> JobStatus``. Every method raises
    TransientError when Redis is unreachable.
    """

    redis: Redis
    deliveries: DeliveryBook

    def _status_of(self, job: Job) -> JobStatus:
        """The JobStatus of an RQ job (JobClient provides it)."""
        raise NotImplementedError

    @transient
    def undelivered(self, platform: str) -> list[JobStatus]:
        """The platform's jobs whose outcome has not been posted yet, oldest first.

        Each status carries the requester with the reply address the bot stored at
        submit. Jobs that no longer exist are dropped from the book on the way.

        Raises:
            TransientError: Redis is unreachable.
        """
        ids = self.deliveries.pending(platform)
        out = []
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=self.redis)):
            if job is None:
                self.deliveries.forget(platform, job_id)
            else:
                out.append(self._status_of(job))
        return out

    @transient
    def claim_delivery(self, job_id: str, platform: str, owner: str) -> bool:
        """Take over delivering an undelivered job nobody holds (one instance wins).

        Returns:
            True if owner now holds it; False if another instance (or owner itself)
            holds it already, or it was delivered.

        Raises:
            TransientError: Redis is unreachable.
        """
        return self.deliveries.claim(platform, job_id, owner)

    @transient
    def renew_delivery(self, job_id: str, platform: str, owner: str) -> bool:
        """Keep owner's hold on delivering a job; False when another instance has taken it over."""
        return self.deliveries.renew(platform, job_id, owner)

    @transient
    def release_delivery(self, job_id: str, owner: str) -> None:
        """Give up delivering a job (bot shutting down); the next instance resumes it."""
        self.deliveries.release(job_id, owner)

    @transient
    def record_delivery_step(self, job_id: str, platform: str, owner: str, step: str) -> bool:
        """Record that one step (message) of the job's delivery reached the chat, so no resume repeats it.

        Args:
            step: the bot's deterministic id of the message; see delivery_steps.

        Returns:
            True if recorded (owner's hold is renewed on the way); False, with nothing
            recorded, when another instance holds the job or it was delivered.

        Raises:
            TransientError: Redis is unreachable.
        """
        return self.deliveries.add_step(platform, job_id, owner, step)

    @transient
    def delivery_steps(self, job_id: str, platform: str) -> set[str]:
        """The steps of an undelivered job recorded so far by any instance (empty if none or delivered).

        Raises:
            TransientError: Redis is unreachable.
        """
        return self.deliveries.steps(platform, job_id)

    @transient
    def mark_delivered(self, job_id: str, platform: str, owner: str) -> bool:
        """Record that the job's outcome reached the chat; it is never resumed again.

        Returns:
            False (and nothing changed) when another instance holds the job.

        Raises:
            TransientError: Redis is unreachable.
        """
        return self.deliveries.done(platform, job_id, owner)
