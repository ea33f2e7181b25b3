"""The job contract (core.contract) through a real Redis and a real worker.

Every job state and error kind is written by the worker, read back by the job
API, and worded by the one function both bots use for a job that ended without
a score. Auto jobs that choose separation move to the separation queue.
"""

from __future__ import annotations


import pytest
from helpers.worker_fakes import FakePipeline, run_burst, wav_bytes, worker_settings

from stemscribe.bots.common import outcome_text, progress_text
from stemscribe.core.contract import (ErrorKind, JobError, JobState, delivery_order, listing_order,
                                      preview_file_name, preview_page)
from stemscribe.core.errors import AudioTooLongError, EngraveError, NoNotesError, TransientError
from stemscribe.core.options import Mode, Options
from stemscribe.worker.client import InputFile, JobClient, Requester

ALICE = Requester("telegram", "1001", "chat-1", {"message_id": 7})


@pytest.fixture
def settings(redis_url):
    return worker_settings(redis_url)


@pytest.fixture
def client(settings):
    return JobClient(settings)


def _submit(client, options=Options()):
    return client.submit([InputFile("tune.wav", wav_bytes(1.0))], options, ALICE).job_id


@pytest.mark.parametrize("error, kind, user_error, text", [
    (NoNotesError("I couldn't hear any notes.", hint="Is it music?"), "NoNotesError", True,
     "I couldn't hear any notes. Is it music?"),
    (AudioTooLongError("x.ogg is 12:00 long.", hint="Trim it."), "AudioTooLongError", True, "x.ogg is 12:00 long. Trim it."),
    (TransientError("download hiccup"), "TransientError", False, "A service I depend on hiccuped"),
    (EngraveError("LilyPond rejected the score"), "EngraveError", False, "something went wrong on my side"),
    (ZeroDivisionError("oops"), ErrorKind.INTERNAL.value, False, "something went wrong on my side"),
])
def test_every_error_kind_round_trips_through_redis(client, settings, error, kind, user_error, text):
    job_id = _submit(client)
    run_burst(settings, FakePipeline(0.05, error=error))
    status = client.status(job_id)
    assert status.state is JobState.FAILED and status.state == "failed"
    stored = status.job_error
    assert (stored.kind, stored.user_error) == (kind, user_error)
    assert stored.is_bug == (not user_error and kind != "TransientError")
    assert JobError.from_dict(stored.to_dict()) == stored
    shown = outcome_text(status.state, status.error, job_id=job_id)
    assert text in shown
    if not user_error:
        assert job_id in shown, "hiccups and bugs quote the reference"
    # both bots word it with this one function: Telegram's message and Discord's reply are the same text
    assert shown == outcome_text(JobState.FAILED.value, dict(status.error), job_id=job_id)


def test_every_state_reads_as_the_enum(client, settings):
    queued = _submit(client)
    assert client.status(queued).state is JobState.QUEUED
    cancelled = _submit(client)
    client.cancel(cancelled, ALICE)
    run_burst(settings, FakePipeline(0.05))
    assert client.status(queued).state is JobState.FINISHED and client.status(queued).error is None
    status = client.status(cancelled)
    assert status.state is JobState.CANCELLED and status.job_error.cancelled
    assert outcome_text(status.state, status.error) == "Cancelled." == progress_text("cancelled")
    assert {s for s in JobState if s.final} == {JobState.FINISHED, JobState.FAILED, JobState.CANCELLED}


def test_result_file_names_and_orders_have_one_owner():
    names = ["result.json", "stems/bass.opus", "notes.mid", "preview-10.png", "score.pdf", "preview.png",
             "preview-2.png", "score.ly", "score.musicxml", "score.mid", "performance.json"]
    assert delivery_order(names) == ["preview.png", "preview-2.png", "preview-10.png", "score.pdf", "score.musicxml",
                                     "score.mid", "notes.mid", "stems/bass.opus"]
    assert listing_order(names)[:5] == ["score.pdf", "preview.png", "preview-2.png", "preview-10.png", "score.musicxml"]
    assert [preview_page(preview_file_name(n)) for n in (1, 2, 12)] == [1, 2, 12]
    assert preview_page("preview-1.png") is None and preview_page("preview-02.png") is None


def test_an_auto_job_that_separates_moves_to_the_separation_queue(client, settings, redis_conn):
    job_id = _submit(client)  # auto, a short clip: planned for the short queue
    pipeline = FakePipeline(0.05, auto_separates=True)
    run_burst(settings, pipeline)  # this worker takes every queue, separation included
    status = client.status(job_id)
    assert status.state is JobState.FINISHED
    assert len(pipeline.calls) == 2, "stopped before separating on the short queue, then ran on the separation one"
    from rq.job import Job

    assert Job.fetch(job_id, connection=redis_conn).origin == "stemscribe:separation"


def test_an_auto_job_stays_where_no_worker_takes_separation(client, settings, redis_conn):
    job_id = _submit(client)
    pipeline = FakePipeline(0.05, auto_separates=True)
    run_burst(settings, pipeline, queues=["short", "default"])
    assert client.status(job_id).state is JobState.FINISHED
    assert len(pipeline.calls) == 1


def test_stems_jobs_are_planned_onto_the_separation_queue(client, settings, redis_conn):
    from rq.job import Job

    job_id = _submit(client, Options(mode=Mode.STEMS))
    assert Job.fetch(job_id, connection=redis_conn).origin == "stemscribe:separation"


def test_job_ids_never_read_as_command_line_options():
    from stemscribe.worker.client import new_job_id

    ids = [new_job_id() for _ in range(2000)]  # about 1 in 64 raw tokens starts with '-'
    assert all(len(i) == 24 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
