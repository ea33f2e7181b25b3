"""Which bot delivers a job's outcome to its chat: the book of undelivered jobs and delivery leases.

Exports: DeliveryBook.

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
crashed one's leases lapse after ``settings.delivery_lease_s``. An instance
that dies half-way through posting files leaves the job undelivered, and the
next one posts everything again: that one window is at-least-once.

Entries older than ``job_result_ttl_s`` are pruned: the job and its files are
gone by then, so there is nothing left to deliver.
"""

from __future__ import annotations

import time

from redis import Redis

from .queues import delivery_lease_key, undelivered_key

# KEYS: book, lease. ARGV: job id, owner, lease ms. 1 = claimed.
_CLAIM = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
"""
# 1 = still ours (extended, or taken back after it lapsed with nobody else taking it); 0 = lost.
_RENEW = """
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[2] then redis.call('PEXPIRE', KEYS[2], ARGV[3]) return 1 end
if holder then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS: lease. ARGV: owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# 1 = marked delivered; 0 = another instance holds the job (it delivers instead).
_DONE = """
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if holder then redis.call('DEL', KEYS[2]) end
return 1
"""


class DeliveryBook:
    """Undelivered jobs per platform and the leases of the bot instances delivering them.

    Args:
        redis: the job client's connection.
        prefix: settings.queue_prefix.
        lease_s: how long a claim lasts without renewal.
        retention_s: how long an undelivered entry is kept (the job's result TTL).
    """

    def __init__(self, redis: Redis, *, prefix: str, lease_s: float, retention_s: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.lease_ms = max(1, int(lease_s * 1000))
        self.retention_s = retention_s
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._done = redis.register_script(_DONE)

    def _keys(self, platform: str, job_id: str) -> list[str]:
        return [undelivered_key(self.prefix, platform), delivery_lease_key(self.prefix, job_id)]

    def record(self, pipe, platform: str, job_id: str, owner: str | None) -> None:
        """Queue, on a pipeline, the commands that book a new job as undelivered (and leased to owner)."""
        book = undelivered_key(self.prefix, platform)
        pipe.zadd(book, {job_id: time.time()})
        pipe.expire(book, int(self.retention_s) + 60)
        if owner:
            pipe.set(delivery_lease_key(self.prefix, job_id), owner, px=self.lease_ms)

    def forget(self, platform: str, job_id: str) -> None:
        """Drop a job from the book (it was never queued, or it no longer exists)."""
        with self.redis.pipeline() as pipe:
            pipe.zrem(undelivered_key(self.prefix, platform), job_id)
            pipe.delete(delivery_lease_key(self.prefix, job_id))
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
        return bool(self._claim(keys=self._keys(platform, job_id), args=[job_id, owner, self.lease_ms]))

    def renew(self, platform: str, job_id: str, owner: str) -> bool:
        """Extend owner's lease; False when another instance holds it now or the job was delivered."""
        return bool(self._renew(keys=self._keys(platform, job_id), args=[job_id, owner, self.lease_ms]))

    def release(self, job_id: str, owner: str) -> None:
        """Give up owner's lease, leaving the job undelivered for the next instance."""
        self._release(keys=[delivery_lease_key(self.prefix, job_id)], args=[owner])

    def done(self, platform: str, job_id: str, owner: str) -> bool:
        """Mark the job delivered; False (and nothing changed) when another instance holds it."""
        return bool(self._done(keys=self._keys(platform, job_id), args=[job_id, owner]))

    def holder(self, job_id: str) -> str | None:
        """The owner id holding the job's lease now, or None."""
        value = self.redis.get(delivery_lease_key(self.prefix, job_id))
        return value.decode() if value is not None else None
