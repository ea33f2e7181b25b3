"""Shared pytest fixtures. Each section is owned by the engineer named in its header."""

from __future__ import annotations

import pytest


# ---------------------------------------------------------------- redis (worker owner)
# One real redis-server per test session (AOF on, private temp folder, free port),
# flushed before and after every test that uses it. Tests that restart or kill
# Redis take `private_redis_server` instead so the shared one is never disturbed.

@pytest.fixture(scope="session")
def redis_server():
    """The session's redis-server (tests.helpers.redis_server.RedisServer); stopped at the end."""
    from helpers.redis_server import RedisServer

    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server):
    """URL of an empty database on the session's redis-server (flushed before and after)."""
    conn = redis_server.client()
    conn.flushall()
    try:
        yield redis_server.url
    finally:
        conn.flushall()
        conn.close()


@pytest.fixture
def redis_conn(redis_url):
    """A bytes-replies redis.Redis on the flushed test database."""
    import redis

    conn = redis.Redis.from_url(redis_url)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def private_redis_server():
    """A redis-server of this test alone, for killing and restarting it."""
    from helpers.redis_server import RedisServer

    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
# ---------------------------------------------------------------- end redis


# ---------------------------------------------------------------- fake-pipeline workers (bots' restart tests)

@pytest.fixture
def start_worker(redis_url, tmp_path):
    """Factory: a real worker process whose fake jobs take `seconds` (and make `pages` pages); all stopped at the end."""
    from helpers.worker_fakes import start_worker_process, stop_process

    processes = []

    def start(seconds: float, *, pages: int = 1):
        processes.append(start_worker_process(redis_url, seconds=seconds, pages=pages,
                                              log_path=tmp_path / "worker.log"))
        return processes[-1]

    yield start
    for process in processes:
        stop_process(process)
