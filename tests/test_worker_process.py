"""Workers as real processes: progress seen from outside, cancel, SIGKILL, SIGTERM, Redis restarts.

Each worker is tests/helpers/worker_proc.py (run_worker around a FakePipeline)
with 1 s heartbeats and maintenance, so dead workers are noticed in ~3 s.
Every process a test starts is killed in the fixture's teardown, pass or fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from helpers.worker_fakes import start_worker_process, wait_for, wav_bytes, worker_settings
from rq.job import Job

from stemscribe.core.errors import TransientError
from stemscribe.core.options import Options
from stemscribe.worker.client import InputFile, JobClient, Requester

ALICE = Requester("telegram", "1001", "chat-1")
BOB = Requester("discord", "2002", "guild-1")


@pytest.fixture
def workers(tmp_path):
    """Start worker processes with workers.start(url, seconds=..); all are killed at teardown."""

    class Workers:
        def __init__(self) -> None:
            self.procs: list[subprocess.Popen] = []
            self.log = tmp_path / "workers.log"

        def start(self, url: str, *, seconds: float, burst: bool = False) -> subprocess.Popen:
            proc = start_worker_process(url, seconds=seconds, burst=burst, log_path=self.log)
            self.procs.append(proc)
            return proc

        def log_text(self) -> str:
            return self.log.read_text(errors="replace") if self.log.exists() else ""

    group = Workers()
    try:
        yield group
    finally:
        for proc in group.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def submit(client: JobClient, requester: Requester = ALICE) -> str:
    return client.submit([InputFile("tune.wav", wav_bytes(1.0))], Options(), requester).job_id


def state(client: JobClient, job_id: str, wanted: str):
    status = client.status(job_id)
    return status if status.state == wanted else None


def test_progress_is_visible_from_another_process(redis_url, workers):
    client = JobClient(worker_settings(redis_url))
    job_id = submit(client)
    seen, updates = [], set()
    worker = workers.start(redis_url, seconds=4.0)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        status = client.status(job_id)
        seen.append((status.state, status.stage, status.percent))
        updates.add(Job.fetch(job_id, connection=client.redis).meta.get("updated_at"))
        if status.state in ("finished", "failed"):
            break
        time.sleep(0.1)
    assert seen[-1][0] == "finished", workers.log_text()
    assert seen[0][0] in ("queued", "started")
    running = [(stage, pct) for st, stage, pct in seen if st == "started"]
    assert len({stage for stage, _ in running}) >= 3, running  # several stages were reported
    percents = [pct for _, pct in running]
    assert percents == sorted(percents)
    assert len({p for p in percents if 0 < p < 100}) >= 3  # the final 100 % may show just before "finished"
    # the worker writes meta about once a second, not at every progress call (80 here)
    assert len(updates) <= 4.0 + 4
    assert worker.poll() is None  # the worker lives on for the next job


def test_cancel_a_running_job(redis_url, workers):
    client = JobClient(worker_settings(redis_url))
    job_id = submit(client)
    workers.start(redis_url, seconds=30.0)
    wait_for(lambda: state(client, job_id, "started"), what="job start")
    assert client.cancel(job_id, BOB) is False  # not Bob's
    assert client.cancel(job_id, ALICE) is True
    t0 = time.monotonic()
    status = wait_for(lambda: state(client, job_id, "cancelled"), timeout_s=10, what="cancellation")
    assert time.monotonic() - t0 < 5
    assert status.error["type"] == "CancelledError"
    # the worker goes on with the next job
    workers.procs[0].send_signal(signal.SIGTERM)  # requeue-or-finish the next one quickly
    assert workers.procs[0].wait(timeout=20) == 0


def test_sigkill_mid_job_is_retried_by_another_worker(redis_url, workers):
    client = JobClient(worker_settings(redis_url))
    job_id = submit(client)
    first = workers.start(redis_url, seconds=30.0)
    wait_for(lambda: state(client, job_id, "started"), what="job start")
    first.kill()  # like the OOM killer: no chance to clean up
    first.wait(timeout=10)
    # Only a second worker's maintenance notices (we read RQ directly, not JobClient.status).
    workers.start(redis_url, seconds=0.3)
    job = Job.fetch(job_id, connection=client.redis)
    wait_for(lambda: job.get_status(refresh=True) == "finished", timeout_s=40, what="retry on the second worker")
    assert client.status(job_id).state == "finished"
    assert client.fetch_artifact(job_id, "score.pdf")
    assert "AbandonedJobError" in workers.log_text() or "abandoned" in workers.log_text()


def test_sigkill_without_retries_is_reported_failed(redis_url, workers):
    client = JobClient(worker_settings(redis_url, job_retries=0))
    job_id = submit(client)
    worker = workers.start(redis_url, seconds=30.0)
    wait_for(lambda: state(client, job_id, "started"), what="job start")
    worker.kill()
    worker.wait(timeout=10)
    # No worker is left: the client itself notices the missing heartbeats and tells the user.
    status = wait_for(lambda: state(client, job_id, "failed"), timeout_s=20, what="failure report")
    assert status.error["type"] == "WorkerLostError" and not status.error["user_error"]
    assert "stopped unexpectedly" in status.error["message"]


def test_sigterm_lets_a_short_job_finish(redis_url, workers):
    client = JobClient(worker_settings(redis_url))
    job_id = submit(client)
    env_grace = {"STEMSCRIBE_WORKER_SHUTDOWN_GRACE_S": "20"}
    worker = start_worker_process(redis_url, seconds=2.0, log_path=workers.log, env_extra=env_grace)
    workers.procs.append(worker)
    wait_for(lambda: state(client, job_id, "started"), what="job start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert client.status(job_id).state == "finished"


def test_sigterm_requeues_a_long_job_and_nothing_is_lost(redis_url, workers):
    client = JobClient(worker_settings(redis_url))
    first_job, second_job = submit(client), submit(client, BOB)
    worker = workers.start(redis_url, seconds=60.0)  # grace is 1 s in these tests
    wait_for(lambda: state(client, first_job, "started"), what="job start")
    t0 = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert time.monotonic() - t0 < 10
    requeued = client.status(first_job)
    assert requeued.state == "queued" and requeued.position == 1  # back at the front, ahead of Bob's
    assert client.status(second_job).position == 2
    workers.start(redis_url, seconds=0.2, burst=True).wait(timeout=60)
    for job_id in (first_job, second_job):
        assert client.status(job_id).state == "finished", workers.log_text()
        assert client.fetch_artifact(job_id, "score.pdf")


def test_redis_restart_keeps_queued_jobs(private_redis_server, workers):
    url = private_redis_server.url
    client = JobClient(worker_settings(url))
    job_ids = [submit(client, Requester("telegram", str(i), f"chat-{i}")) for i in range(3)]
    private_redis_server.kill()  # a crash, not a clean shutdown: only the AOF keeps the queue
    with pytest.raises(TransientError):
        client.status(job_ids[0])
    private_redis_server.start()
    assert [client.status(j).state for j in job_ids] == ["queued"] * 3  # the same client recovers
    workers.start(url, seconds=0.2, burst=True).wait(timeout=60)
    assert [client.status(j).state for j in job_ids] == ["finished"] * 3, workers.log_text()


def test_worker_survives_a_redis_restart_mid_queue(private_redis_server, workers):
    url = private_redis_server.url
    client = JobClient(worker_settings(url))
    job_ids = [submit(client, Requester("telegram", str(i), f"chat-{i}")) for i in range(4)]
    worker = workers.start(url, seconds=1.0)
    wait_for(lambda: state(client, job_ids[0], "started"), what="first job start")
    private_redis_server.kill()
    time.sleep(1.0)
    private_redis_server.start()
    wait_for(lambda: all(client.status(j).state in ("finished", "failed") for j in job_ids), timeout_s=60,
             interval_s=0.5, what="all jobs to end")
    assert [client.status(j).state for j in job_ids] == ["finished"] * 4, workers.log_text()
    assert worker.poll() is None
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
