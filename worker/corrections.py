"""Correction jobs: a finished job's score written again (another meter, tempo, key, level, transposition).

Exports: submit_correction, correct_job, correction_output, Correction, CORRECTION_FUNC,
CORRECTION_TIMEOUT_S, LOCK_TTL_S, lock_key, version_key, version_prefix.

A correction runs only notation and engraving (core.revise) from the material
the transcription kept (performance.json, performance.npz), never a model, so it
takes seconds and goes on the short queue. It is an RQ job of its own, id
``<job id>-v<n>``, carrying the original requester in its meta (so
JobClient.status follows it like any job); its files are stored with the
original job's, under ``v<n>/`` (``v2/score.pdf``, ``v2/preview.png``, ...), so
versions never clobber each other and expire with the job (they are stored
with the job's remaining lifetime, not a new one).

One version at a time per job: submit takes a Redis lock (SET NX, LOCK_TTL_S)
that the job releases when it ends; a second tap meanwhile raises
CorrectionBusyError, so nothing is ever written twice.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus as RQStatus

from stemscribe.core.errors import CorrectionBusyError, JobNotFoundError, StemscribeError, UserError
from stemscribe.core.options import Options
from stemscribe.core.progress import CancelToken, Reporter, Stage, overall_fraction
from stemscribe.core.revise import KEPT_FILES, correction_options, revise

from .artifacts import FolderArtifactStore, RedisArtifactStore, check_artifact_name
from .limits import QueueKind, human_duration
from .queues import queue_name, transient
from .records import Artifact, JobOutput, Requester

log = logging.getLogger(__name__)

#: The RQ entry function of corrections, by import path.
CORRECTION_FUNC = "stemscribe.worker.corrections.correct_job"
#: Longest a correction may run (notation plus LilyPond) before RQ stops it.
CORRECTION_TIMEOUT_S = 180
#: How long the one-version-at-a-time lock holds if the job never releases it (a killed worker).
LOCK_TTL_S = CORRECTION_TIMEOUT_S + 30

EXPIRED_MESSAGE = "This score has expired: I keep a job's notes for {ttl}, and this one's are gone."
EXPIRED_HINT = "Send the recording again (with the options you want, e.g. time:6/8) for a new score."


def lock_key(prefix: str, job_id: str) -> str:
    """Held while a version of job_id is being written (value: the correction's id)."""
    return f"{prefix}:correcting:{job_id}"


def version_key(prefix: str, job_id: str) -> str:
    """Counter of the corrections of job_id (version = counter + 1)."""
    return f"{prefix}:versions:{job_id}"


def version_prefix(version: int) -> str:
    """The artifact folder of a version: 2 -> 'v2/'."""
    return f"v{int(version)}/"


@dataclass(frozen=True)
class Correction:
    """A queued correction: the job it corrects, its own id (to follow), its version number."""

    job_id: str
    correction_id: str
    version: int


def _expired(client: Any) -> JobNotFoundError:
    return JobNotFoundError(EXPIRED_MESSAGE.format(ttl=human_duration(client.settings.artifact_ttl_s)),
                            hint=EXPIRED_HINT)


def _latest_summary(store: Any, job_id: str, before: int) -> tuple[dict, int]:
    """The result.json of the newest version below `before` that exists (the job's own if none), and its number."""
    names = store.sizes(job_id)
    for version in range(before - 1, 1, -1):
        name = version_prefix(version) + "result.json"
        if name in names:
            return json.loads(store.get(job_id, name)), version
    return json.loads(store.get(job_id, "result.json")), 1


@transient
def submit_correction(client: Any, job_id: str, changes: Mapping[str, Any], requester: Requester, *,
                      moderator: bool = False) -> Correction:
    """Queue a new version of a finished job's score.

    Args:
        client: the JobClient (its settings, Redis, store and queues are used).
        job_id: the job whose score is corrected.
        changes: option word -> value, e.g. {"time": "6/8"} (core.revise.CORRECTABLE words).
        requester: who asks; must own the job unless moderator.
        moderator: the requester may correct anyone's job on this platform (Discord's manage_messages).

    Returns:
        The Correction to follow with client.status(correction.correction_id).

    Raises:
        JobNotFoundError: unknown job, someone else's, not finished, or its kept notes expired.
        OptionsError: a change a correction cannot make, or a bad value.
        CorrectionBusyError: a version of this job is being written now.
        TransientError: Redis is unreachable.
    """
    settings, redis = client.settings, client.redis
    try:
        job = Job.fetch(job_id, connection=redis)
    except (NoSuchJobError, ValueError):
        raise _expired(client) from None
    owner = Requester.from_dict(job.meta.get("requester") or {})
    if not (requester.owns(owner) or (moderator and requester.platform == owner.platform)):
        raise JobNotFoundError("Only the person who asked for this score can correct it.",
                               hint="Send your own recording to get a score you can correct.")
    if job.get_status(refresh=False) != RQStatus.FINISHED:
        raise JobNotFoundError("This job has no score to correct.", hint="Wait for it to finish, or send it again.")
    sizes = client.store.sizes(job_id)
    if KEPT_FILES[0] not in sizes or "result.json" not in sizes:
        raise _expired(client)
    changes = {str(k): v for k, v in changes.items() if v is not None and str(v).strip()}
    if not changes:
        raise JobNotFoundError("Nothing to change.", hint='Write it like /fix time:6/8 key:"E minor" transpose:Bb.')
    base, _ = _latest_summary(client.store, job_id, 10 ** 6)
    correction_options(Options.from_dict(base.get("options") or {}), changes)  # validate before queuing
    lock = lock_key(settings.queue_prefix, job_id)
    if not redis.set(lock, b"pending", nx=True, ex=LOCK_TTL_S):
        raise CorrectionBusyError("I am writing a new version of this score already.",
                                  hint="It arrives in a few seconds; tap again after it if you want another.")
    try:
        counter = version_key(settings.queue_prefix, job_id)
        version = int(redis.incr(counter)) + 1
        redis.expire(counter, settings.artifact_ttl_s + settings.job_result_ttl_s)
        correction_id = f"{job_id}-v{version}"
        redis.set(lock, correction_id.encode(), xx=True, ex=LOCK_TTL_S)
        request = {"job_id": job_id, "correction_id": correction_id, "version": version, "changes": changes,
                   "requester": requester.to_dict()}
        queue = client.queues[queue_name(settings.queue_prefix, QueueKind.SHORT)]
        queue.enqueue_call(
            CORRECTION_FUNC, args=(request,), timeout=CORRECTION_TIMEOUT_S, result_ttl=settings.job_result_ttl_s,
            failure_ttl=settings.job_result_ttl_s, job_id=correction_id,
            description=f"correct {job_id} (version {version})",
            meta={"requester": owner.to_dict(), "stage": "queued", "percent": 0.0, "message": "", "timings": {},
                  "corrects": job_id, "version": version, "updated_at": time.time()})
    except BaseException:
        redis.delete(lock)
        raise
    return Correction(job_id=job_id, correction_id=correction_id, version=version)


@transient
def correction_output(client: Any, correction_id: str) -> JobOutput:
    """The summary and files of a finished correction; artifact names carry their version folder ('v2/score.pdf').

    Raises:
        JobNotFoundError: unknown correction, or its files expired.
        RuntimeError: it has not finished (check its status first).
    """
    try:
        job = Job.fetch(correction_id, connection=client.redis)
    except (NoSuchJobError, ValueError):
        raise JobNotFoundError("This version is no longer kept.", hint=EXPIRED_HINT) from None
    if job.get_status(refresh=False) != RQStatus.FINISHED:
        raise RuntimeError(f"correction {correction_id} is {job.get_status(refresh=False)}, not finished")
    value = job.return_value() or {}
    folder = version_prefix(int(value.get("version") or job.meta.get("version") or 0))
    sizes = {n: s for n, s in client.store.sizes(str(value.get("job_id") or job.meta.get("corrects"))).items()
             if n.startswith(folder)}
    if not sizes:
        raise _expired(client)
    return JobOutput(summary=dict(value.get("summary") or {}),
                     artifacts=[Artifact(name=n, kind="version", size_bytes=s) for n, s in sorted(sizes.items())])


def remaining_ttl_s(store: Any, job_id: str, default_s: int) -> int:
    """Seconds until the job's stored files expire, so a version expires with them (default_s if unknown)."""
    if isinstance(store, RedisArtifactStore):
        ttl = int(store.redis.ttl(store._key(job_id)))  # noqa: SLF001 - the store's own key scheme
        return ttl if ttl > 0 else default_s
    if isinstance(store, FolderArtifactStore):
        try:
            left = float((store.root / job_id / ".expires_at").read_text()) - time.time()
        except (OSError, ValueError):
            return default_s
        return max(1, int(left))
    return default_s


def _progress(job: Job) -> Any:
    def report(stage: Stage, fraction: float, message: str | None = None) -> None:
        job.meta.update(stage=str(stage), percent=round(100.0 * overall_fraction(Stage(stage), fraction), 1),
                        message=message or "", updated_at=time.time())
        try:
            job.save_meta()
        except Exception:  # progress is best effort
            log.warning("could not write progress of correction %s", job.id)
    return report


def correct_job(request: dict) -> dict:
    """RQ entry: write version request["version"] of request["job_id"]'s score from its kept material.

    Args:
        request: {"job_id", "correction_id", "version", "changes": {word: value}, "requester"}.

    Returns:
        {"summary": the version's result.json, "artifacts": {name: size}, "version", "job_id"}.

    Raises:
        UserError: the kept notes expired, or a change cannot be made (recorded in meta for the user).
        Exception: a bug, recorded as InternalError with the correction id.
    """
    from .runtime import current_runtime

    runtime = current_runtime()
    job = get_current_job()
    if job is None:
        raise RuntimeError("correct_job must run inside an RQ worker")
    job_id, version = request["job_id"], int(request["version"])
    report = _progress(job)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix=f"stemscribe-fix-{job_id[:8]}-") as tmp:
            kept = Path(tmp) / "kept"
            kept.mkdir()
            try:
                (kept / KEPT_FILES[0]).write_bytes(runtime.store.get(job_id, KEPT_FILES[0]))
                if KEPT_FILES[1] in runtime.store.sizes(job_id):  # no mix is kept for a job without audio
                    (kept / KEPT_FILES[1]).write_bytes(runtime.store.get(job_id, KEPT_FILES[1]))
                base, _ = _latest_summary(runtime.store, job_id, version)
            except KeyError:
                raise JobNotFoundError(EXPIRED_MESSAGE.format(ttl=human_duration(runtime.settings.artifact_ttl_s)),
                                       hint=EXPIRED_HINT) from None
            out = Path(tmp) / "out"
            summary = revise(kept, out, base, request["changes"], version=version, limits=runtime.limits,
                             reporter=Reporter(report, CancelToken(lambda: False)))
            ttl = remaining_ttl_s(runtime.store, job_id, runtime.settings.artifact_ttl_s)
            sizes = {}
            for name in summary["files"]:
                target = check_artifact_name(version_prefix(version) + name)
                data = (out / name).read_bytes()
                runtime.store.put(job_id, target, data, ttl_s=ttl)
                sizes[target] = len(data)
    except Exception as exc:
        if isinstance(exc, UserError):
            error = {**exc.to_dict(), "user_error": True}
        else:
            log.error("correction %s failed", job.id, exc_info=exc)
            error = {**(exc.to_dict() if isinstance(exc, StemscribeError) else
                        {"type": "InternalError", "message": None, "hint": None}),
                     "user_error": False, "reference": job.id}
        job.meta["error"] = error
        job.save_meta()
        raise
    finally:
        runtime.redis.delete(lock_key(runtime.settings.queue_prefix, job_id))
    summary.setdefault("timings_s", {})["total"] = round(time.perf_counter() - started, 3)
    job.meta.update(stage=str(Stage.DONE), percent=100.0, message="")
    job.save_meta()
    log.info("correction %s done (%s) in %.1f s", job.id, summary.get("version_label"), time.perf_counter() - started)
    return {"summary": summary, "artifacts": sizes, "version": version, "job_id": job_id}


__all__ = ["CORRECTION_FUNC", "CORRECTION_TIMEOUT_S", "Correction", "LOCK_TTL_S", "correct_job",
           "correction_output", "lock_key", "remaining_ttl_s", "submit_correction", "version_key",
           "version_prefix"]
