"""Where job inputs and outputs live, how they are named, and when they expire.

Exports: ArtifactStore, RedisArtifactStore, FolderArtifactStore, open_store,
artifact_kind, check_artifact_name, check_job_id, INPUT_PREFIX.

Bots and workers may run on different hosts, so audio and score files travel
through a store both can reach, never through job arguments:

* ``redis`` (default): one Redis hash per job (``<prefix>:artifacts:<job id>``,
  field = artifact name, value = bytes) with a TTL on the whole hash. Simple and
  needs nothing else, but every byte sits in Redis memory until it expires; size
  Redis for ``artifact_ttl_s`` worth of results, or use a folder.
* ``folder``: ``<artifact_dir>/<job id>/<name>`` on a disk every host mounts
  (NFS, a shared volume). The expiry time is a file next to the artifacts;
  expired folders are refused on read and swept by ``purge_expired`` (workers run
  it as part of their maintenance).

An S3-compatible store is not implemented; a shared folder (or an S3 FUSE
mount such as s3fs) covers the multi-host case.

Names are a small, path-safe alphabet (``score.pdf``, ``stems/bass.opus``,
``input/0-clip.ogg``); job ids are long random tokens, so knowing a job id is
what grants access, and the client also checks the requester.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Protocol

from redis import Redis

from stemscribe.core.engrave import preview_page

#: Artifact names under this prefix are the job's input recordings.
INPUT_PREFIX = "input/"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99})?$")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_EXPIRY_FILE = ".expires_at"

_KINDS = {
    "score.pdf": "pdf",
    "preview.png": "preview",
    "score.ly": "lilypond",
    "score.musicxml": "musicxml",
    "score.mid": "midi",
    "notes.mid": "performance-midi",
    "result.json": "summary",
}


def artifact_kind(name: str) -> str:
    """The kind of an artifact from its name, for bots choosing how to send it.

    Args:
        name: an artifact name such as ``score.pdf`` or ``stems/bass.opus``.

    Returns:
        One of pdf, preview (every page's: preview.png, preview-2.png, ...), lilypond,
        musicxml, midi, performance-midi, summary, stem, input, log, other.
    """
    if name in _KINDS:
        return _KINDS[name]
    if preview_page(name) is not None:
        return "preview"
    if name.startswith("stems/"):
        return "stem"
    if name.startswith(INPUT_PREFIX):
        return "input"
    if name.endswith(".log"):
        return "log"
    return "other"


def check_artifact_name(name: str) -> str:
    """Return ``name`` if it is a safe artifact name (at most one folder level, no '..').

    Raises:
        ValueError: the name could escape its folder or holds odd characters.
    """
    if not _NAME_RE.match(name) or ".." in name:
        raise ValueError(f"not a valid artifact name: {name!r}")
    return name


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if it looks like one of our job ids (also makes it path-safe).

    Raises:
        ValueError: anything else.
    """
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise ValueError(f"not a valid job id: {job_id!r}")
    return job_id


class ArtifactStore(Protocol):
    """Bytes by (job id, name), expiring ``ttl_s`` after the last write of that job."""

    def put(self, job_id: str, name: str, data: bytes, *, ttl_s: int) -> None:
        """Store one artifact and (re)start the job's expiry clock."""

    def get(self, job_id: str, name: str) -> bytes:
        """The artifact's bytes. Raises KeyError when missing or expired."""

    def sizes(self, job_id: str) -> dict[str, int]:
        """Name -> size in bytes of every live artifact of the job ({} if none)."""

    def delete(self, job_id: str, names: list[str] | None = None) -> None:
        """Remove the named artifacts, or all of the job's when names is None."""

    def purge_expired(self) -> int:
        """Remove expired artifacts the backend does not expire by itself; returns how many jobs."""


class RedisArtifactStore:
    """Artifacts as fields of one Redis hash per job, expired by Redis itself.

    Args:
        redis: connection (bytes responses, i.e. decode_responses=False).
        prefix: key prefix shared with the queues (settings.queue_prefix).
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:artifacts:{check_job_id(job_id)}"

    def put(self, job_id: str, name: str, data: bytes, *, ttl_s: int) -> None:
        """Store one artifact; the whole job's hash expires ttl_s from now."""
        key = self._key(job_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, check_artifact_name(name), data)
            pipe.expire(key, max(1, int(ttl_s)))
            pipe.execute()

    def get(self, job_id: str, name: str) -> bytes:
        """The artifact's bytes.

        Raises:
            KeyError: missing or expired.
        """
        data = self.redis.hget(self._key(job_id), check_artifact_name(name))
        if data is None:
            raise KeyError(name)
        return bytes(data)

    def sizes(self, job_id: str) -> dict[str, int]:
        """Name -> size in bytes of every live artifact of the job."""
        key = self._key(job_id)
        names = sorted(n.decode() if isinstance(n, bytes) else n for n in self.redis.hkeys(key))
        if not names:
            return {}
        with self.redis.pipeline() as pipe:
            for name in names:
                pipe.hstrlen(key, name)
            lengths = pipe.execute()
        return dict(zip(names, (int(n) for n in lengths)))

    def delete(self, job_id: str, names: list[str] | None = None) -> None:
        """Remove the named artifacts, or the whole job's hash."""
        key = self._key(job_id)
        if names is None:
            self.redis.delete(key)
        elif names:
            self.redis.hdel(key, *[check_artifact_name(n) for n in names])

    def purge_expired(self) -> int:
        """Redis expires the hashes itself; nothing to do."""
        return 0


class FolderArtifactStore:
    """Artifacts as files under ``root/<job id>/``, for a folder shared by all hosts.

    Args:
        root: the shared folder; created if missing.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, job_id: str) -> Path:
        return self.root / check_job_id(job_id)

    def _expired(self, folder: Path) -> bool:
        try:
            return float((folder / _EXPIRY_FILE).read_text()) <= time.time()
        except (FileNotFoundError, ValueError):
            # A folder without a readable expiry is half-written or foreign: treat as expired
            # only once it is older than a day, so a concurrent put is not swept away.
            try:
                return folder.stat().st_mtime < time.time() - 24 * 3600
            except FileNotFoundError:
                return True

    def put(self, job_id: str, name: str, data: bytes, *, ttl_s: int) -> None:
        """Write one artifact atomically (temp file + rename) and reset the expiry."""
        folder = self._dir(job_id)
        path = folder / check_artifact_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_atomic(folder / _EXPIRY_FILE, str(time.time() + max(1, int(ttl_s))).encode())
        self._write_atomic(path, data)

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, job_id: str, name: str) -> bytes:
        """The artifact's bytes.

        Raises:
            KeyError: missing or expired (an expired folder is removed on the way).
        """
        folder = self._dir(job_id)
        path = folder / check_artifact_name(name)
        if not folder.is_dir() or self._expired(folder):
            shutil.rmtree(folder, ignore_errors=True)
            raise KeyError(name)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(name) from None

    def sizes(self, job_id: str) -> dict[str, int]:
        """Name -> size in bytes of every live artifact of the job."""
        folder = self._dir(job_id)
        if not folder.is_dir() or self._expired(folder):
            return {}
        out = {}
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and not path.name.startswith(".") and _NAME_RE.match(rel):
                out[rel] = path.stat().st_size
        return out

    def delete(self, job_id: str, names: list[str] | None = None) -> None:
        """Remove the named artifacts, or the job's whole folder."""
        folder = self._dir(job_id)
        if names is None:
            shutil.rmtree(folder, ignore_errors=True)
            return
        for name in names:
            (folder / check_artifact_name(name)).unlink(missing_ok=True)

    def purge_expired(self) -> int:
        """Remove every expired job folder; returns how many were removed."""
        removed = 0
        for folder in self.root.iterdir():
            if folder.is_dir() and _JOB_ID_RE.match(folder.name) and self._expired(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed


def open_store(settings, redis: Redis) -> ArtifactStore:
    """The store the settings name.

    Args:
        settings: stemscribe Settings (artifact_store, artifact_dir, queue_prefix).
        redis: connection used by the redis store.

    Returns:
        A RedisArtifactStore or FolderArtifactStore.

    Raises:
        ValueError: an unknown artifact_store value.
    """
    kind = settings.artifact_store.strip().lower()
    if kind == "redis":
        return RedisArtifactStore(redis, settings.queue_prefix)
    if kind == "folder":
        return FolderArtifactStore(settings.artifact_dir)
    raise ValueError(f"STEMSCRIBE_ARTIFACT_STORE={settings.artifact_store!r}: use 'redis' or 'folder'")
