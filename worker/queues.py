"""Redis connection, queue names and key names shared by the client and the workers.

Exports: connect, queue_name, queue_names, make_queues, cancel_key, history_key,
defaults_key, undelivered_key, delivery_lease_key, delivery_steps_key, JOB_FUNC, META_FIELDS,
transient.

Every key starts with ``settings.queue_prefix`` so several deployments can share
one Redis. RQ's own keys (``rq:job:<id>``, ``rq:queue:<name>``) hold the jobs.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import redis
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue

from stemscribe.core.errors import TransientError

from stemscribe.core.plan import QueueKind

#: The RQ entry function, by import path so that enqueuing never imports the models.
JOB_FUNC = "stemscribe.worker.jobs.transcribe_job"

#: Job meta fields the worker writes and the client reads (see worker.jobs).
META_FIELDS = ("requester", "stage", "percent", "message", "error", "timings", "updated_at", "cancelled")

#: Seconds a client waits for a TCP connection to Redis.
CONNECT_TIMEOUT_S = 5.0
#: Seconds a client waits for one Redis reply.
SOCKET_TIMEOUT_S = 30.0

_T = TypeVar("_T")


def connect(settings) -> Redis:
    """A Redis connection for RQ (bytes replies) that retries brief outages by itself.

    A restarting Redis refuses connections or answers LOADING for a moment; each
    command is retried with backoff for about three seconds before the caller sees
    the error (which ``transient`` turns into TransientError).
    """
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
        retry=RedisRetry(ExponentialBackoff(cap=1.0, base=0.1), 6),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        redis.exceptions.BusyLoadingError],
    )


def transient(func: Callable[..., _T]) -> Callable[..., _T]:
    """Decorator: Redis being unreachable becomes TransientError with a message for users."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise TransientError("The job queue is not reachable right now.",
                                 hint="Please try again in a minute.") from exc

    return wrapper


def queue_name(prefix: str, kind: QueueKind | str) -> str:
    """RQ queue name of one kind, e.g. 'stemscribe:short'."""
    return f"{prefix}:{QueueKind(kind).value}"


def queue_names(prefix: str) -> list[str]:
    """All queue names in the order a general worker takes jobs from them."""
    return [queue_name(prefix, kind) for kind in QueueKind]


def make_queues(settings, connection: Redis, kinds: list[str] | None = None) -> list[Queue]:
    """RQ Queue objects for the given kinds (default all), in priority order.

    Raises:
        ValueError: an unknown queue kind.
    """
    chosen = [QueueKind(k) for k in kinds] if kinds else list(QueueKind)
    return [Queue(queue_name(settings.queue_prefix, k), connection=connection) for k in chosen]


def cancel_key(prefix: str, job_id: str) -> str:
    """Flag the worker polls while a job runs; set by JobClient.cancel."""
    return f"{prefix}:cancel:{job_id}"


def history_key(prefix: str, platform: str, user_id: str) -> str:
    """Sorted set of a user's recent job ids (score: submit time)."""
    return f"{prefix}:jobs:{platform}:{user_id}"


def defaults_key(prefix: str, scope: str) -> str:
    """Hash of saved option defaults for a scope such as 'telegram:user:42'."""
    return f"{prefix}:defaults:{scope}"


def undelivered_key(prefix: str, platform: str) -> str:
    """Sorted set of a platform's job ids whose outcome has not reached the chat yet (score: submit time)."""
    return f"{prefix}:undelivered:{platform}"


def delivery_lease_key(prefix: str, job_id: str) -> str:
    """Which bot instance is delivering a job (value: its owner id; expires unless renewed)."""
    return f"{prefix}:delivering:{job_id}"


def delivery_steps_key(prefix: str, platform: str, job_id: str) -> str:
    """Set of the delivery steps (messages) of a job already posted to its chat (see worker.deliveries)."""
    return f"{prefix}:delivered-steps:{platform}:{job_id}"
