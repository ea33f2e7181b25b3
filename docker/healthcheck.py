#!/usr/bin/env python3
"""Container health check: is this container's stemscribe process doing its job?

Usage: stemscribe-healthcheck [worker|telegram|discord]   (default: read from PID 1's command line)

- worker: Redis answers, and an RQ worker started in this container is registered
  (RQ drops a worker whose heartbeat stopped) and its process is alive.
- telegram, discord: Redis answers (the bots cannot enqueue without it).

Prints one short line and exits 0 (healthy) or 1. Never prints settings or secrets.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROLES = ("worker", "telegram", "discord")


def role_from_pid1() -> str:
    """The role named on PID 1's command line (tini -- entrypoint ROLE ...)."""
    try:
        words = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        words = []
    return next((w for w in words if w in ROLES), "worker")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check(role: str) -> tuple[bool, str]:
    import redis
    from rq import Worker

    from stemscribe.settings import load_settings

    settings = load_settings()
    try:
        connection = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
        connection.ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        return False, f"redis unreachable: {type(exc).__name__}"
    if role != "worker":
        return True, f"{role}: redis ok"
    host = socket.gethostname()
    mine = [w for w in Worker.all(connection=connection) if w.hostname == host]
    alive = [w for w in mine if w.pid and process_alive(int(w.pid))]
    if not alive:
        return False, f"no live RQ worker registered from {host} ({len(mine)} stale)"
    return True, f"worker: {len(alive)} registered ({', '.join(sorted(w.name for w in alive))})"


def main(argv: list[str]) -> int:
    role = argv[0] if argv else role_from_pid1()
    if role not in ROLES:
        print(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        return 2
    try:
        healthy, message = check(role)
    except Exception as exc:  # a health check reports, it does not crash with a traceback
        healthy, message = False, f"health check error: {type(exc).__name__}"
    print(message)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
