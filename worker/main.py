"""``stemscribe worker``: the worker class and its start-up (models first, then work).

Exports: StemscribeWorker, retry_policy, build_worker, run_worker, HEARTBEAT_MISSES,
HUNG_JOB_GRACE_S.

Why a SimpleWorker (the job runs in the worker process) and not RQ's forking Worker:
the transcription models (onnxruntime sessions, torch modules with their thread
pools) must be loaded once and reused. Loading them in every forked work-horse
would cost seconds per job, and loading them before the fork is unsafe:
onnxruntime and OpenMP thread pools do not survive fork() (the child inherits
the pool's state but not its threads and can hang). So each worker process
loads the models, then runs jobs one after another in its main thread. What the
fork gave us is replaced as follows:

* Heartbeats: a side thread refreshes the worker's and the job's heartbeat every
  ``worker_heartbeat_s``; the job's registry entry expires after HEARTBEAT_MISSES
  beats, so a worker killed mid-job (SIGKILL, OOM killer) is noticed within
  seconds, by another worker's maintenance or by the next JobClient.status call.
  RQ then retries the job ``job_retries`` times (enqueued with rq.Retry) or
  fails it, and the user is told.
* Timeouts: RQ's SIGALRM death penalty interrupts the job between Python
  bytecodes. If native code ignores it for HUNG_JOB_GRACE_S more, the heartbeat
  thread ends the process (like RQ killing a horse) and the supervisor
  (Docker ``restart:``, systemd) starts a fresh one.
* Memory: ``--max-jobs`` recycles the process after N jobs if a model leaks.

SIGTERM (warm shutdown): the current job goes on for ``worker_shutdown_grace_s``;
if it finishes, the worker exits; if not, the job's cancel token fires, the job
returns rq.Retry and RQ puts it back at the front of its queue for another
worker. A second SIGTERM (cold shutdown) interrupts the job at once and it is
requeued the same way. Either way nothing is lost. Set Docker's
stop_grace_period above worker_shutdown_grace_s.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Sequence

from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.queue import Queue
from rq.worker import SimpleWorker, WorkerStatus

from stemscribe.core.errors import TransientError

from .logs import configure_logging
from .queues import connect, make_queues
from .runtime import Pipeline, WorkerRuntime, install_runtime

log = logging.getLogger(__name__)

#: A job whose worker missed this many heartbeats in a row is abandoned.
HEARTBEAT_MISSES = 3
#: Past its timeout plus this, a job that ignores the SIGALRM ends its process.
HUNG_JOB_GRACE_S = 60
#: Exit status of a worker that ended itself because a job hung in native code.
EXIT_HUNG_JOB = 70


def retry_policy(job: Job, exc_type, exc_value, traceback) -> bool:
    """RQ exception handler deciding whether a failed job may run again.

    Retried (using the job's rq.Retry budget): a dead worker (AbandonedJobError)
    and TransientError. Requeued regardless of budget: a cold shutdown of the worker
    (SystemExit inside the job). Never retried: user errors, cancellation,
    timeouts and bugs, which would fail the same way again.

    Returns:
        True, so RQ's default handler still moves failures to the FailedJobRegistry.
    """
    if exc_type is not None and issubclass(exc_type, (SystemExit, KeyboardInterrupt)):
        job.retries_left = (job.retries_left or 0) + 1
        log.warning("job %s interrupted by a cold shutdown; requeued", job.id)
    elif exc_type is not None and issubclass(exc_type, AbandonedJobError):
        log.warning("job %s abandoned by its worker; %s retries left", job.id, job.retries_left or 0)
    elif exc_type is not None and issubclass(exc_type, TransientError):
        log.warning("job %s: transient failure; %s retries left", job.id, job.retries_left or 0)
    else:
        job.retries_left = 0
    return True


class StemscribeWorker(SimpleWorker):
    """An RQ SimpleWorker with a heartbeat thread, shutdown-to-requeue and store maintenance.

    Args:
        queues: RQ queues in priority order.
        runtime: the loaded runtime (models, store, shutdown state).
        kwargs: passed to rq's SimpleWorker (name, etc.).
    """

    def __init__(self, queues: Sequence[Queue], *, runtime: WorkerRuntime, **kwargs) -> None:
        settings = runtime.settings
        kwargs.setdefault("job_monitoring_interval", max(1, int(settings.worker_heartbeat_s)))
        kwargs.setdefault("maintenance_interval", max(1, int(settings.worker_maintenance_interval_s)))
        # An idle worker only wakes from its blocking dequeue every worker_ttl - 15 s; this makes it
        # wake (and look for abandoned jobs) every maintenance interval.
        kwargs.setdefault("worker_ttl", kwargs["maintenance_interval"] + 15)
        kwargs.setdefault("default_result_ttl", settings.job_result_ttl_s)
        super().__init__(list(queues), connection=runtime.redis, exception_handlers=[retry_policy], **kwargs)
        self.runtime = runtime

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """A short TTL, kept alive by the heartbeat thread, so a dead worker is noticed fast."""
        return int(self.job_monitoring_interval * HEARTBEAT_MISSES)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job in this process while a side thread keeps its heartbeat."""
        execution = self.prepare_execution(job)
        done = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, execution, done), name="heartbeat", daemon=True)
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            beat.join(timeout=5)
        self.set_state(WorkerStatus.IDLE)

    def _beat(self, job: Job, execution, done: threading.Event) -> None:
        started = time.monotonic()
        limit = (job.timeout or 0) + HUNG_JOB_GRACE_S if job.timeout and job.timeout > 0 else None
        while not done.wait(self.job_monitoring_interval):
            if limit is not None and time.monotonic() - started > limit:
                log.critical("job %s ignored its %s s timeout; ending this worker so it can be restarted",
                             job.id, job.timeout)
                logging.shutdown()
                os._exit(EXIT_HUNG_JOB)
            try:
                self.maintain_heartbeats(job, execution)
            except Exception:  # Redis away for a moment: the next beat retries; the job goes on
                log.warning("heartbeat for job %s failed", job.id, exc_info=True)

    def handle_job_retry(self, job: Job, queue: Queue, retry, started_job_registry, execution) -> None:
        """RQ's retry, onto the queue the job asked to move to (worker.jobs.MoveToQueue), if any."""
        target = job.meta.pop("move_to", None)
        if target and target != queue.name:
            job.save_meta()
            queue = Queue(target, connection=self.connection)
        super().handle_job_retry(job, queue, retry, started_job_registry, execution)

    def handle_warm_shutdown_request(self) -> None:
        """SIGTERM: let the job run for the grace period, then have it requeue itself."""
        self.runtime.shutdown.request()
        log.info("worker %s: shutdown requested; a running job has %.0f s to finish before it is requeued",
                 self.name, self.runtime.shutdown.grace_s)

    def run_maintenance_tasks(self) -> None:
        """RQ's registry cleaning (abandoned jobs) plus sweeping expired artifacts."""
        super().run_maintenance_tasks()
        try:
            removed = self.runtime.store.purge_expired()
            if removed:
                log.info("removed the expired artifacts of %d jobs", removed)
        except OSError:
            log.warning("could not sweep expired artifacts", exc_info=True)


def build_worker(settings, *, queues: Sequence[str] | None = None, pipeline: Pipeline | None = None,
                 preload: bool = True, name: str | None = None) -> StemscribeWorker:
    """Create the runtime (loading models unless preload is False) and a worker on it.

    Args:
        settings: stemscribe Settings.
        queues: queue kinds to take jobs from (short, default, separation), in order; default all.
        pipeline: the per-job function (default core.pipeline.run with loaded models).
        preload: load settings.preload_models before returning.
        name: worker name; default host.pid.

    Raises:
        ValueError: an unknown queue kind.
    """
    redis = connect(settings)
    runtime = WorkerRuntime.create(settings, redis, pipeline=pipeline)
    if preload:
        runtime.preload()
    install_runtime(runtime)
    worker_name = name or f"{socket.gethostname()}.{os.getpid()}"
    return StemscribeWorker(make_queues(settings, redis, list(queues) if queues else None), runtime=runtime,
                            name=worker_name)


def run_worker(settings, *, queues: Sequence[str] | None = None, burst: bool = False,
               max_jobs: int | None = None, pipeline: Pipeline | None = None) -> int:
    """Log set-up, model loading, then the work loop until stopped (or idle, with burst).

    Returns:
        0 (a clean stop).
    """
    worker_name = f"{socket.gethostname()}.{os.getpid()}"
    configure_logging(settings, worker=worker_name)
    log.info("starting worker %s with settings %s", worker_name, settings.redacted())
    worker = build_worker(settings, queues=queues, pipeline=pipeline, name=worker_name)
    worker.work(burst=burst, max_jobs=max_jobs, logging_level=settings.log_level.upper())
    return 0
