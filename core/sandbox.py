"""Running helper programs (musicxml2ly, LilyPond) confined to a scratch folder.

Exports: run_sandboxed, bubblewrap_available.

Every run gets a fresh working directory, its own process group (killed whole on
timeout), rlimits (CPU seconds, address space, file size, no core dumps) and an
environment of PATH, HOME and LANG only, so no token or secret is visible. Where
bubblewrap can create namespaces it also gets no network, a read-only system and
its working directory (seen as /work) as the only writable place.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def _limits(cpu_s: int, memory_bytes: int, file_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


_BWRAP_WORKDIR = "/work"


def _bwrap_args(cwd: Path) -> list[str]:
    """bubblewrap arguments that confine a command to ``cwd``: read-only system, no network."""
    return [
        "bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/tmp", "--bind", str(cwd), _BWRAP_WORKDIR, "--chdir", _BWRAP_WORKDIR,
        "--unshare-all", "--die-with-parent", "--new-session",
    ]


@functools.lru_cache(maxsize=1)
def bubblewrap_available() -> bool:
    """True when bubblewrap is installed and can create namespaces here (probed once).

    Containers without user namespaces refuse it; LilyPond then runs under the
    plain POSIX confinement only, which ``run_sandboxed`` always applies.
    """
    if shutil.which("bwrap") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="stemscribe-bwrap-") as tmp:
        try:
            probe = subprocess.run(_bwrap_args(Path(tmp)) + ["/usr/bin/true"], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return False
    if probe.returncode != 0:
        log.warning("bubblewrap cannot run here (%s); LilyPond runs with rlimits only",
                    probe.stderr.decode("utf-8", "replace").strip()[:200])
    return probe.returncode == 0


def run_sandboxed(cmd: list[str], cwd: Path, *, timeout_s: float, memory_bytes: int,
                  file_bytes: int = 256 * 1024 ** 2) -> tuple[int, str]:
    """Run a helper (musicxml2ly, LilyPond) confined to its working directory.

    The process runs in ``cwd`` with HOME there, in a new session (process group),
    under rlimits, with an environment of PATH, HOME and LANG only. Where
    bubblewrap works, it also runs in fresh namespaces: no network, the system
    read-only, and ``cwd`` (seen as /work) the only writable place.

    Args:
        cmd: the command line.
        cwd: a fresh, private working directory.
        timeout_s: wall-clock limit; on expiry the whole process group is killed.
        memory_bytes: address-space limit per process.
        file_bytes: largest file a process may write.

    Returns:
        (exit status, combined stdout and stderr). A timeout gives status -9 and says so in the text.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(cwd), "LANG": "C.UTF-8"}
    if bubblewrap_available() and shutil.which(cmd[0], path="/usr/bin:/bin"):
        env = {"PATH": "/usr/bin:/bin", "HOME": _BWRAP_WORKDIR, "LANG": "C.UTF-8"}
        cmd = _bwrap_args(cwd) + cmd
    cpu_s = max(1, math.ceil(timeout_s) + 1)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_limits(cpu_s, memory_bytes, file_bytes))
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        text = output.decode("utf-8", "replace")
        return -9, text + f"\n[stemscribe] killed after the {timeout_s:g} s time limit\n"
    return proc.returncode, output.decode("utf-8", "replace")


