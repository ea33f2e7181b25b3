"""The RQ entry function: fetch the audio, run core, store the files, report progress.

Exports: transcribe_job, ProgressWriter, CancelPoll, PROGRESS_INTERVAL_S,
CANCEL_POLL_INTERVAL_S, SHUTDOWN_REQUEUES_MAX.

A job's arguments are one small dict (see JobClient.submit): artifact names of the
input audio, the options as plain data, the requester. The job fetches the audio
from the artifact store, runs core.pipeline.run with the models the worker loaded
at start-up, stores every output file as an artifact and returns a small dict
(result.json content, artifact sizes, timings).

Job meta, written at most every PROGRESS_INTERVAL_S and read by JobClient.status:
``stage`` (core.progress.Stage value), ``percent`` (0..100), ``message``,
``timings`` (seconds per stage), ``error`` ({"type", "message", "hint",
"user_error", "reference"} on failure), ``cancelled`` (True once cancelled),
``requester`` (set at submit), ``updated_at``.

Outcomes: success returns the dict; user errors, cancellation, timeouts and bugs
record ``error`` and raise (the worker's retry policy does not retry them); a
TransientError raises and RQ retries the job; a warm shutdown that outlasts its
grace period returns rq.Retry so RQ puts the job back at the front of its queue.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import redis
from redis import Redis
from rq import Queue, Worker, get_current_job
from rq.job import Job, Retry
from rq.timeouts import JobTimeoutException

from stemscribe.core.contract import JobError
from stemscribe.core.plan import QueueKind
from stemscribe.core.errors import CancelledError, TransientError, UserError
from stemscribe.core.options import Options
from stemscribe.core.progress import CancelToken, Reporter, Stage, overall_fraction

from .artifacts import check_artifact_name
from .limits import human_duration
from .queues import cancel_key, queue_name
from .runtime import ShutdownState, WorkerRuntime, current_runtime

log = logging.getLogger(__name__)

#: Least time between two progress writes to the job's meta.
PROGRESS_INTERVAL_S = 1.0
#: Least time between two reads of the cancel flag.
CANCEL_POLL_INTERVAL_S = 0.5
#: How often one job may be put back in its queue by worker shutdowns before it fails.
SHUTDOWN_REQUEUES_MAX = 5


class ProgressWriter:
    """The Reporter callback: keeps stage timings and writes meta at most every interval_s.

    Args:
        job: the running RQ job (meta is saved with save_meta, never the whole job).
        interval_s: least time between writes; stage changes wait for the next slot too.
    """

    def __init__(self, job: Job, interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.job = job
        self.interval_s = interval_s
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._stage_started = time.perf_counter()
        self._last_write = 0.0

    def __call__(self, stage: Stage, fraction: float, message: str | None = None) -> None:
        now = time.perf_counter()
        if stage != self._stage:
            self._close_stage(now)
            self._stage, self._stage_started = str(stage), now
        meta = self.job.meta
        meta["stage"] = str(stage)
        meta["percent"] = round(100.0 * overall_fraction(Stage(stage), fraction), 1)
        meta["message"] = message or ""
        if now - self._last_write >= self.interval_s:
            self.flush(now)

    def _close_stage(self, now: float) -> None:
        if self._stage is not None:
            self.timings[self._stage] = round(self.timings.get(self._stage, 0.0) + now - self._stage_started, 3)

    def add_timing(self, name: str, seconds: float) -> None:
        """Record a step outside the pipeline (fetching inputs, storing artifacts)."""
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)

    def finish(self) -> None:
        """Close the current stage's timing (call once the pipeline returned or raised)."""
        self._close_stage(time.perf_counter())
        self._stage = None

    def flush(self, now: float | None = None, *, required: bool = False) -> None:
        """Write stage, percent, message and timings to the job's meta now.

        Progress is best effort: if Redis is away (restarting) the job goes on and the
        next write catches up. With required=True (outcomes) the error propagates.
        """
        self._last_write = now if now is not None else time.perf_counter()
        meta = self.job.meta
        meta["timings"] = dict(self.timings)
        meta["updated_at"] = time.time()
        try:
            self.job.save_meta()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if required:
                raise
            log.warning("could not write progress of job %s; Redis unreachable", self.job.id)


class CancelPoll:
    """The CancelToken poll: the user's cancel flag in Redis, or a due shutdown requeue.

    Args:
        redis: connection. key: the job's cancel flag. shutdown: the worker's shutdown state.
    """

    def __init__(self, redis: Redis, key: str, shutdown: ShutdownState) -> None:
        self.redis, self.key, self.shutdown = redis, key, shutdown
        self.reason: str | None = None
        self._next_poll = 0.0

    def __call__(self) -> bool:
        if self.reason is not None:
            return True
        if self.shutdown.requeue_due():
            self.reason = "shutdown"
            return True
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + CANCEL_POLL_INTERVAL_S
            try:
                if self.redis.exists(self.key):
                    self.reason = "cancel"
            except Exception:  # a Redis hiccup must not kill a long job; the next poll retries
                log.warning("could not read the cancel flag", exc_info=True)
        return self.reason is not None


def _fetch_inputs(runtime: WorkerRuntime, request: dict, folder: Path) -> list[Path]:
    """Write the stored input audio to folder/<i>/<original file name> (the name sets the default title)."""
    titles = request.get("titles") or []
    paths = []
    for i, name in enumerate(request["inputs"]):
        try:
            data = runtime.store.get(request["job_id"], name)
        except KeyError:
            raise UserError("The recording for this job is no longer stored; it waited too long.",
                            hint="Please send it again.") from None
        title = Path(str(titles[i])).name if i < len(titles) else ""
        target = folder / str(i) / (title if usable_file_name(title) else Path(name).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        paths.append(target)
    return paths


def usable_file_name(name: str) -> bool:
    """Whether a user's file name can be used as-is on disk (no folders, dots or control characters)."""
    return (0 < len(name) <= 120 and "/" not in name and "\\" not in name and not name.startswith(".")
            and all(ord(c) >= 32 for c in name))


def _store_outputs(runtime: WorkerRuntime, job_id: str, out_dir: Path) -> dict[str, int]:
    sizes = {}
    for path in sorted(out_dir.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(out_dir).as_posix()
        try:
            check_artifact_name(name)
        except ValueError:
            log.warning("output %r has an unusable name; not stored", name)
            continue
        data = path.read_bytes()
        runtime.store.put(job_id, name, data, ttl_s=runtime.settings.artifact_ttl_s)
        sizes[name] = len(data)
    return sizes


def _end_of_job(runtime: WorkerRuntime, request: dict) -> None:
    """Give back the user's slots and drop the input audio (the job will not run again)."""
    req = request["requester"]
    try:
        runtime.store.delete(request["job_id"], list(request["inputs"]))
        if runtime.admission is not None:
            runtime.admission.release(request["job_id"], req["platform"], req["user_id"], req["chat_id"])
    except Exception:  # the slot is pruned and the inputs expire anyway; the outcome must still be recorded
        log.warning("could not clean up after job %s", request["job_id"], exc_info=True)


def _record_error(job: Job, error: dict, progress: ProgressWriter) -> None:
    job.meta["error"] = error
    progress.finish()
    progress.flush()


def _describe_failure(exc: Exception, job: Job) -> tuple[dict, bool]:
    """The error payload stored for the user (core.contract.JobError), and whether the job is over."""
    job_id = job.id
    if isinstance(exc, (TransientError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        log.warning("job %s hit a transient error: %s", job_id, exc)
        error = exc if isinstance(exc, TransientError) else _REDIS_AWAY
        return JobError.from_exception(error, reference=job_id).to_dict(), False
    if isinstance(exc, UserError):
        log.info("job %s refused: %s: %s", job_id, type(exc).__name__, exc)
        return JobError.from_exception(exc).to_dict(), True
    if isinstance(exc, JobTimeoutException):
        log.warning("job %s timed out after %s s", job_id, job.timeout)
        return JobError.timed_out(human_duration(job.timeout or 0), reference=job_id).to_dict(), True
    log.error("job %s failed with a bug", job_id, exc_info=exc)
    return JobError.from_exception(exc, reference=job_id).to_dict(), True


_REDIS_AWAY = TransientError("The job queue was not reachable for a while.", hint="Please try again in a minute.")


class MoveToQueue(Exception):
    """Raised inside a job that must go on on another queue (mode auto chose separation)."""

    def __init__(self, queue: str) -> None:
        super().__init__(queue)
        self.queue = queue


def separation_queue_guard(runtime: WorkerRuntime, job: Job):
    """The pipeline's before_auto_separation hook: move the job to the separation queue.

    An auto job is planned before anyone has listened to it, so it waits on the
    short or default queue; once the pipeline decides to separate, the job belongs
    where the separation workers (a GPU machine, say) take jobs. It moves only when
    it is not there already and some worker takes that queue, so no job is stranded.
    """
    target = queue_name(runtime.settings.queue_prefix, QueueKind.SEPARATION)

    def guard() -> None:
        if job.origin == target:
            return
        if not Worker.all(connection=runtime.redis, queue=Queue(target, connection=runtime.redis)):
            return
        raise MoveToQueue(target)

    return guard


def _run(runtime: WorkerRuntime, request: dict, progress: ProgressWriter, reporter: Reporter,
         before_auto_separation=None) -> tuple[dict, dict]:
    """Fetch the inputs, run the pipeline, store the outputs; returns (summary, artifact sizes)."""
    with tempfile.TemporaryDirectory(prefix=f"stemscribe-{request['job_id'][:8]}-") as tmp:
        reporter.check()
        t0 = time.perf_counter()
        inputs = _fetch_inputs(runtime, request, Path(tmp) / "in")
        progress.add_timing("fetch_inputs", time.perf_counter() - t0)
        out_dir = Path(tmp) / "out"
        summary = runtime.pipeline(inputs, out_dir, Options.from_dict(request["options"]), toolkit=runtime.toolkit,
                                   limits=runtime.limits, reporter=reporter,
                                   before_auto_separation=before_auto_separation)
        progress.finish()
        t0 = time.perf_counter()
        sizes = _store_outputs(runtime, request["job_id"], out_dir)
        progress.add_timing("store_artifacts", time.perf_counter() - t0)
    return summary, sizes


def transcribe_job(request: dict) -> dict | Retry:
    """RQ entry: transcribe the stored input audio and store the score files.

    Args:
        request: {"job_id", "inputs": [artifact names], "titles": [file names],
            "options": Options.to_dict(), "requester": Requester.to_dict(), "duration_s", "queue"}.

    Returns:
        {"summary": result.json content, "artifacts": {name: size}, "timings": {...}},
        or rq.Retry when a worker shutdown interrupted the job (RQ requeues it).

    Raises:
        UserError: unusable input, recorded in meta for the user.
        CancelledError: the requester cancelled.
        TransientError: a passing failure (Redis away too long included); RQ retries the job.
        JobTimeoutException: the job ran past its timeout (RQ's death penalty).
        Exception: a bug, logged with the job id and recorded as InternalError.
    """
    runtime = current_runtime()
    job = get_current_job()
    if job is None:
        raise RuntimeError("transcribe_job must run inside an RQ worker")
    job_id = request["job_id"]
    job.meta.update({"stage": "starting", "percent": 0.0, "message": "", "error": None})
    progress = ProgressWriter(job)
    progress.flush()
    poll = CancelPoll(runtime.redis, cancel_key(runtime.settings.queue_prefix, job_id), runtime.shutdown)
    started = time.perf_counter()
    try:
        summary, sizes = _run(runtime, request, progress, Reporter(progress, CancelToken(poll)),
                              before_auto_separation=separation_queue_guard(runtime, job))
    except MoveToQueue as move:
        progress.finish()
        log.info("job %s chose separation; moving it to %s", job_id, move.queue)
        job.meta.update({"stage": "queued", "percent": 0.0, "move_to": move.queue,
                         "message": "It sounds like a band: waiting for a separation worker."})
        progress.flush(required=True)
        return Retry(max=SHUTDOWN_REQUEUES_MAX, enqueue_at_front=True)
    except CancelledError:
        progress.finish()
        if poll.reason == "shutdown":
            log.warning("job %s interrupted by worker shutdown; requeued", job_id)
            job.meta.update({"stage": "queued", "percent": 0.0, "message": "Requeued: the worker was restarted."})
            progress.flush()
            return Retry(max=SHUTDOWN_REQUEUES_MAX, enqueue_at_front=True)
        log.info("job %s cancelled by its requester", job_id)
        job.meta["cancelled"] = True
        _record_error(job, JobError.cancelled_job().to_dict(), progress)
        _end_of_job(runtime, request)
        raise
    except Exception as exc:
        error, over = _describe_failure(exc, job)
        _record_error(job, error, progress)
        if over:
            _end_of_job(runtime, request)
        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            raise TransientError(_REDIS_AWAY.message, hint=_REDIS_AWAY.hint) from exc
        raise
    progress.add_timing("total", time.perf_counter() - started)
    job.meta.update({"stage": str(Stage.DONE), "percent": 100.0, "message": ""})
    progress.flush()
    _end_of_job(runtime, request)
    log.info("job %s done: %d files, %.1f s", job_id, len(sizes), time.perf_counter() - started)
    return {"summary": summary, "artifacts": sizes, "timings": dict(progress.timings)}
