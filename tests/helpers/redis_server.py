"""A real redis-server for tests: own port, own temp folder, AOF on, always cleaned up.

Exports: RedisServer, free_port, REDIS_SERVER_BIN.

The server runs with ``appendonly yes`` and ``appendfsync always`` (the setting the
deployment docs recommend for the job queue), so ``kill()`` followed by
``start()`` shows what a crash and restart of Redis keeps. On Linux the child is
told to exit if the test process dies, so an aborted run leaves no server behind.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

#: redis-server binary; $REDIS_SERVER overrides.
REDIS_SERVER_BIN = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class RedisServer:
    """One redis-server process with AOF persistence in a private folder.

    Args:
        directory: data folder (default: a new temp folder, removed by close()).
        port: TCP port (default: a free one; the same port is reused across restarts).
    """

    def __init__(self, directory: str | os.PathLike | None = None, port: int | None = None) -> None:
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="stemscribe-redis-"))
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A plain connection (bytes replies) for assertions."""
        return redis.Redis.from_url(self.url, socket_connect_timeout=2)

    def start(self, *, timeout_s: float = 10.0) -> "RedisServer":
        """Start (or restart) the server and wait until it answers PING (dataset loaded)."""
        if self.process is not None and self.process.poll() is None:
            return self
        cmd = [REDIS_SERVER_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
               "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
               "--logfile", str(self.directory / "redis.log"), "--databases", "2"]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        probe = redis.Redis(port=self.port, host="127.0.0.1", socket_connect_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    log = (self.directory / "redis.log")
                    raise RuntimeError(f"redis-server exited at start: {log.read_text()[-800:] if log.exists() else ''}")
                try:
                    if probe.ping():
                        return self
                except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer in time")
                time.sleep(0.05)
        finally:
            probe.close()

    def stop(self) -> None:
        """Stop gracefully (SHUTDOWN, which also fsyncs the AOF); kill if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            redis.Redis(port=self.port, host="127.0.0.1", socket_connect_timeout=1).shutdown()
        except redis.exceptions.ConnectionError:
            pass  # SHUTDOWN closes the connection by design
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server, like a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def close(self) -> None:
        """Kill the server and remove its temp folder."""
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
