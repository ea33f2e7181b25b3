"""The job API both bots and ``stemscribe submit`` use: enqueue, watch, cancel, fetch.

Exports: JobClient, and (from worker.records) InputFile, Requester, Submission, JobStatus,
JobOutput, Artifact.

Synchronous (bots call it through ``asyncio.to_thread``). Every method that talks
to Redis raises TransientError when Redis is unreachable for more than a few
seconds, never a raw redis exception, so a Redis restart does not crash a bot.

Delivery: a bot passes ``delivered_by`` (its instance id) to submit, follows the
job, records each message it posts (record_delivery_step), then calls
mark_delivered; after a restart it resumes what undelivered() lists and
claim_delivery() grants it, skipping the steps already posted. Those methods
come from worker.deliveries.DeliveryMethods, which explains the guarantees.

Access: job ids are 24 random URL-safe characters (144 bits), so a job id is a
capability; methods that take an optional ``requester`` additionally refuse jobs
of someone else (answering JobNotFoundError, as if the id did not exist).
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import time
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, Retry
from rq.job import JobStatus as RQStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.worker import Worker

from stemscribe.core.contract import ErrorKind, JobError, JobState, listing_order
from stemscribe.core.errors import JobNotFoundError
from stemscribe.core.plan import InputFacts, Limits, check_inputs, plan_job
from stemscribe.core.options import Options, options_from_pairs

from . import limits
from .artifacts import INPUT_PREFIX, artifact_kind, open_store
from .deliveries import DeliveryBook, DeliveryMethods
from .queues import (JOB_FUNC, cancel_key, connect, defaults_key, history_key, make_queues, queue_name,
                     transient)
from .records import Artifact, InputFile, JobOutput, JobStatus, Requester, Submission

__all__ = ["JobClient", "InputFile", "Requester", "Submission", "JobStatus", "JobOutput", "Artifact"]

#: How many of a user's jobs jobs_for lists.
HISTORY_LENGTH = 20
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def new_job_id() -> str:
    """A fresh job id: 24 random URL-safe characters, never starting with '-'.

    Users paste job ids into commands (`stemscribe result ID`, /status ID); one that
    starts with '-' would be read as an option there.
    """
    while True:
        job_id = secrets.token_urlsafe(18)
        if not job_id.startswith("-"):
            return job_id


def _safe_file_name(name: str, index: int) -> str:
    stem = _UNSAFE_NAME_CHARS.sub("_", Path(name or "audio").name).strip("._") or "audio"
    return f"{index}-{stem[-80:]}"


def _timestamp(value) -> float | None:
    return value.timestamp() if value is not None else None


class JobClient(DeliveryMethods):
    """Enqueue transcription jobs and follow them.

    Args:
        settings: stemscribe Settings (redis_url, queue_prefix, limits, TTLs, artifact store).
        redis: an existing connection (bytes replies); default: one made from settings.redis_url.
    """

    def __init__(self, settings, redis: Redis | None = None) -> None:
        self.settings = settings
        self.redis = redis if redis is not None else connect(settings)
        self.store = open_store(settings, self.redis)
        self.queues = {q.name: q for q in make_queues(settings, self.redis)}
        self.admission = limits.Admission(self.redis, settings, [q.key for q in self.queues.values()])
        self.deliveries = DeliveryBook(self.redis, prefix=settings.queue_prefix, lease_s=settings.delivery_lease_s,
                                       retention_s=settings.job_result_ttl_s)

    # ------------------------------------------------------------------ submit

    @transient
    def submit(self, files: list[InputFile], options: Options, requester: Requester, *,
               delivered_by: str | None = None) -> Submission:
        """Check, store and enqueue one transcription job.

        Args:
            files: the recording(s); several only with mode:multitrack.
            options: validated options.
            requester: who asked; only they may cancel or read the job.
            delivered_by: the bot instance that will post the outcome; the job is then
                booked as undelivered for requester.platform, leased to that instance,
                until mark_delivered.

        Returns:
            Submission(job_id, position) with position 1 = next to start.

        Raises:
            OptionsError, AudioError family: the file(s) cannot be used (size, format, length).
            TooManyJobsError, RateLimitedError, QueueFullError: a fairness cap, message says which.
            TransientError: Redis is unreachable.
        """
        s = self.settings
        caps = Limits.from_settings(s)
        check_inputs([InputFacts(f.name, len(f.data)) for f in files], options, caps)
        with tempfile.TemporaryDirectory(prefix="stemscribe-submit-") as tmp:
            paths = []
            for i, f in enumerate(files):
                # One folder per file so that messages about a file quote the name the user gave it.
                path = Path(tmp) / str(i) / _safe_file_name(f.name, i).split("-", 1)[1]
                path.parent.mkdir()
                path.write_bytes(f.data)
                paths.append(path)
            facts = limits.probe_facts(paths, [f.name for f in files], caps)
        plan = plan_job(facts, options, caps)
        job_id = new_job_id()
        limits_args = (requester.platform, str(requester.user_id), str(requester.chat_id))
        self.admission.admit(job_id, *limits_args)
        input_names = [INPUT_PREFIX + _safe_file_name(f.name, i) for i, f in enumerate(files)]
        request = {"job_id": job_id, "inputs": input_names, "titles": [f.name for f in files],
                   "options": options.to_dict(), "requester": requester.to_dict(),
                   "duration_s": plan.duration_s, "queue": plan.queue.value}
        try:
            if delivered_by:
                # Booked before it is queued, so no crash can leave a queued job that nobody will deliver.
                with self.redis.pipeline() as pipe:
                    self.deliveries.record(pipe, requester.platform, job_id, delivered_by)
                    pipe.execute()
            for name, f in zip(input_names, files):
                self.store.put(job_id, name, f.data, ttl_s=s.artifact_ttl_s)
            queue = self.queues[queue_name(s.queue_prefix, plan.queue)]
            queue.enqueue_call(
                JOB_FUNC, args=(request,), timeout=plan.timeout_s, result_ttl=s.job_result_ttl_s,
                failure_ttl=s.job_result_ttl_s, job_id=job_id, retry=Retry(max=s.job_retries) if s.job_retries > 0 else None,
                description=f"transcribe {len(files)} file(s), {plan.queue.value}",
                meta={"requester": requester.to_dict(), "stage": "queued", "percent": 0.0, "message": "",
                      "timings": {}, "duration_s": plan.duration_s, "updated_at": time.time()})
        except BaseException:
            self.admission.release(job_id, *limits_args)
            self.store.delete(job_id)
            if delivered_by:
                self.deliveries.forget(requester.platform, job_id)
            raise
        key = history_key(s.queue_prefix, requester.platform, str(requester.user_id))
        with self.redis.pipeline() as pipe:
            pipe.zadd(key, {job_id: time.time()})
            pipe.zremrangebyrank(key, 0, -(HISTORY_LENGTH + 1))
            pipe.expire(key, s.job_result_ttl_s + s.artifact_ttl_s)
            pipe.execute()
        return Submission(job_id=job_id, position=max(1, self._position(job_id, queue.name)))

    # ------------------------------------------------------------------ read

    def _fetch(self, job_id: str, requester: Requester | None) -> Job:
        try:
            job = Job.fetch(job_id, connection=self.redis)
        except (NoSuchJobError, ValueError):
            raise JobNotFoundError(f"I have no job {job_id!r}; finished jobs are kept for "
                                   f"{limits.human_duration(self.settings.job_result_ttl_s)}.") from None
        owner = Requester.from_dict(job.meta.get("requester") or {})
        if requester is not None and not requester.owns(owner):
            raise JobNotFoundError(f"I have no job {job_id!r} of yours.")
        return job

    def _position(self, job_id: str, queue_name_: str) -> int:
        """1-based place in line over the queues a general worker takes first, 0 if not waiting."""
        ahead = 0
        for name, queue in self.queues.items():
            if name == queue_name_:
                index = self.redis.lpos(queue.key, job_id)
                return 0 if index is None else ahead + int(index) + 1
            ahead += queue.count
        return 0

    def _reap_if_abandoned(self, job: Job) -> None:
        """If the worker running job died (no heartbeat), let RQ retry or fail it now.

        Workers do this in their maintenance too; doing it on read means a user
        hears about a lost job even when no other worker is alive.
        """
        registry = StartedJobRegistry(job.origin, connection=self.redis)
        if job.id not in registry.get_expired_job_ids(time.time()):
            return
        queue = Queue(job.origin, connection=self.redis)
        if queue.acquire_maintenance_lock():
            try:
                registry.cleanup()
            finally:
                queue.release_maintenance_lock()
        job.refresh()

    @transient
    def status(self, job_id: str, *, requester: Requester | None = None) -> JobStatus:
        """The job's state and progress, readable from any process.

        Args:
            job_id: from submit.
            requester: when given, a job of someone else is reported as not found.

        Raises:
            JobNotFoundError: unknown or expired id (or not the requester's).
            TransientError: Redis is unreachable.
        """
        job = self._fetch(job_id, requester)
        return self._status_of(job)

    def _status_of(self, job: Job) -> JobStatus:
        rq_status = job.get_status(refresh=False)
        if rq_status == RQStatus.STARTED:
            self._reap_if_abandoned(job)
            rq_status = job.get_status(refresh=False)
        meta = job.meta
        error = meta.get("error")
        position = 0
        stage, percent, message = str(meta.get("stage") or ""), float(meta.get("percent") or 0.0), str(meta.get("message") or "")
        if rq_status in (RQStatus.QUEUED, RQStatus.DEFERRED, RQStatus.SCHEDULED, RQStatus.CREATED):
            state, stage, percent = JobState.QUEUED, "queued", 0.0
            position = max(1, self._position(job.id, job.origin)) if rq_status == RQStatus.QUEUED else 1
        elif rq_status == RQStatus.STARTED:
            state = JobState.STARTED
        elif rq_status == RQStatus.FINISHED:
            state, stage, percent = JobState.FINISHED, "done", 100.0
        elif rq_status == RQStatus.CANCELED or meta.get("cancelled") or (error or {}).get("type") == "CancelledError":
            state = JobState.CANCELLED
            error = error or JobError.cancelled_job().to_dict()
        else:  # FAILED, STOPPED
            state = JobState.FAILED
            error = error or self._error_without_meta(job)
        return JobStatus(
            job_id=job.id, state=state, stage=stage, percent=round(percent, 1), message=message, position=position,
            error=error, requester=Requester.from_dict(meta.get("requester") or {}), timings=dict(meta.get("timings") or {}),
            enqueued_at=_timestamp(job.enqueued_at), started_at=_timestamp(job.started_at),
            ended_at=_timestamp(job.ended_at))

    @staticmethod
    def _error_without_meta(job: Job) -> dict:
        """A failure the job function could not record: the worker died (SIGKILL, OOM) mid-job."""
        result = job.latest_result()
        text = (result.exc_string or "") if result is not None else ""
        if "AbandonedJobError" in text or "terminated unexpectedly" in text or not text:
            return JobError.worker_lost(reference=job.id).to_dict()
        return JobError(ErrorKind.INTERNAL.value, reference=job.id).to_dict()

    @transient
    def result(self, job_id: str, *, requester: Requester | None = None) -> JobOutput:
        """The summary (result.json content) and artifact list of a finished job.

        Raises:
            JobNotFoundError: unknown or expired id, or not the requester's, or its files expired.
            RuntimeError: the job has not finished (check status first; a caller bug).
            TransientError: Redis is unreachable.
        """
        job = self._fetch(job_id, requester)
        if job.get_status(refresh=False) != RQStatus.FINISHED:
            raise RuntimeError(f"job {job_id} is {job.get_status(refresh=False)}, not finished")
        value = job.return_value() or {}
        sizes = {n: size for n, size in self.store.sizes(job_id).items() if not n.startswith(INPUT_PREFIX)}
        if not sizes:
            raise JobNotFoundError("The files of this job have expired.",
                                   hint=f"They are kept for {limits.human_duration(self.settings.artifact_ttl_s)}; "
                                        "send the recording again.")
        names = listing_order(sizes)
        return JobOutput(summary=dict(value.get("summary") or {}),
                         artifacts=[Artifact(name=n, kind=artifact_kind(n), size_bytes=sizes[n]) for n in names])

    @transient
    def fetch_artifact(self, job_id: str, name: str, *, requester: Requester | None = None) -> bytes:
        """The bytes of one artifact of a job (a name from result().artifacts).

        Raises:
            JobNotFoundError: no such artifact (expired, never made, or not the requester's job).
            TransientError: Redis is unreachable.
        """
        if requester is not None:
            self._fetch(job_id, requester)
        if name.startswith(INPUT_PREFIX):
            raise JobNotFoundError(f"This job has no file {name!r}.")
        try:
            return self.store.get(job_id, name)
        except (KeyError, ValueError):
            raise JobNotFoundError(f"The file {name!r} of this job is not available; it may have expired.",
                                   hint=f"Files are kept for {limits.human_duration(self.settings.artifact_ttl_s)}.") from None

    @transient
    def jobs_for(self, requester: Requester) -> list[JobStatus]:
        """The requester's recent jobs (newest first, at most HISTORY_LENGTH)."""
        key = history_key(self.settings.queue_prefix, requester.platform, str(requester.user_id))
        ids = [i.decode() for i in self.redis.zrevrange(key, 0, HISTORY_LENGTH - 1)]
        out, gone = [], []
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=self.redis)):
            if job is None:
                gone.append(job_id)
            else:
                out.append(self._status_of(job))
        if gone:
            self.redis.zrem(key, *gone)
        return out

    # ------------------------------------------------------------------ cancel

    @transient
    def cancel(self, job_id: str, requester: Requester) -> bool:
        """Cancel a queued or running job of the requester.

        A queued job is removed at once; a running one stops at its next progress
        report (usually within a second or two) and then reads "cancelled".

        Returns:
            True if the job was queued or running and is being cancelled; False if it
            already ended, is unknown, or belongs to someone else.

        Raises:
            TransientError: Redis is unreachable.
        """
        try:
            job = self._fetch(job_id, requester)
        except JobNotFoundError:
            return False
        rq_status = job.get_status(refresh=False)
        if rq_status in (RQStatus.FINISHED, RQStatus.FAILED, RQStatus.STOPPED, RQStatus.CANCELED):
            return False
        # The flag stops the job if a worker picked it up in the meantime.
        self.redis.set(cancel_key(self.settings.queue_prefix, job_id), b"1", ex=max(60, int(job.timeout or 0) + 120))
        if rq_status != RQStatus.STARTED:
            job.meta["cancelled"] = True
            job.save_meta()
            try:
                job.cancel()
            except Exception:  # started between our read and cancel(): the flag stops it instead
                if job.get_status(refresh=True) != RQStatus.STARTED:
                    raise
            else:
                owner = Requester.from_dict(job.meta.get("requester") or {})
                self.admission.release(job_id, owner.platform, owner.user_id, owner.chat_id)
                self.store.delete(job_id)
        return True

    # ------------------------------------------------------------------ defaults

    @transient
    def load_defaults(self, scope: str) -> dict:
        """Saved option word -> value pairs of a scope (e.g. 'telegram:user:42'); {} if none."""
        raw = self.redis.hgetall(defaults_key(self.settings.queue_prefix, scope))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    @transient
    def save_defaults(self, scope: str, pairs: dict) -> None:
        """Merge option pairs into a scope's defaults; a None or "" value removes that option.

        Raises:
            OptionsError: an unknown option word or invalid value (nothing is saved).
            TransientError: Redis is unreachable.
        """
        options_from_pairs(pairs)  # validate before storing anything
        key = defaults_key(self.settings.queue_prefix, scope)
        removed = [k for k, v in pairs.items() if v is None or (isinstance(v, str) and not v.strip())]
        kept = {k: json.dumps(v) for k, v in pairs.items() if k not in removed}
        with self.redis.pipeline() as pipe:
            if removed:
                pipe.hdel(key, *removed)
            if kept:
                pipe.hset(key, mapping=kept)
            pipe.execute()

    # ------------------------------------------------------------------ operations

    @transient
    def queue_stats(self, *, recent_failures: int = 10) -> dict:
        """Queue depth, workers and recent failures, for `stemscribe status` and health checks.

        Returns:
            {"queues": {name: {"waiting", "started", "failed"}}, "waiting": total,
             "workers": [{"name", "state", "queues", "job_id", "last_heartbeat"}],
             "recent_failures": [{"job_id", "queue", "ended_at", "error"}]}
        """
        queues, failures, workers = {}, [], {}
        for name, queue in self.queues.items():
            failed = FailedJobRegistry(name, connection=self.redis)
            queues[name] = {"waiting": queue.count, "started": StartedJobRegistry(name, connection=self.redis).count,
                            "failed": failed.count}
            for job_id in failed.get_job_ids(0, recent_failures - 1, desc=True):
                job = Job.fetch_many([job_id], connection=self.redis)[0]
                if job is not None:
                    status = self._status_of(job)
                    failures.append({"job_id": job_id, "queue": name, "ended_at": status.ended_at,
                                     "error": (status.error or {}).get("type")})
            for worker in Worker.all(connection=self.redis, queue=queue):
                workers[worker.name] = {"name": worker.name, "state": worker.get_state(), "queues": worker.queue_names(),
                                        "job_id": worker.get_current_job_id(),
                                        "last_heartbeat": _timestamp(worker.last_heartbeat)}
        failures.sort(key=lambda f: f["ended_at"] or 0, reverse=True)
        return {"queues": queues, "waiting": sum(q["waiting"] for q in queues.values()),
                "workers": sorted(workers.values(), key=lambda w: w["name"]),
                "recent_failures": failures[:recent_failures]}
