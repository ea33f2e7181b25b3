"""Job queue against a real redis-server: submit, result, limits, access, cancel, retries, TTL.

Jobs run in-process with a burst StemscribeWorker around a FakePipeline (same
signature as core.pipeline.run), so each test takes about a second.
"""

from __future__ import annotations

import time

import pytest
from helpers.worker_fakes import FakePipeline, run_burst, wav_bytes, worker_settings

from stemscribe.core.errors import (AudioTooLargeError, JobNotFoundError, NoNotesError, OptionsError,
                                    QueueFullError, RateLimitedError, TooManyJobsError, TransientError,
                                    UnsupportedFormatError)
from stemscribe.core.options import Mode, Options
from stemscribe.worker.client import InputFile, JobClient, Requester

ALICE = Requester("telegram", "1001", "chat-1", {"message_id": 7})
BOB = Requester("telegram", "2002", "chat-1")


def clip(name="tune.wav", seconds=1.0) -> list[InputFile]:
    return [InputFile(name, wav_bytes(seconds))]


@pytest.fixture
def settings(redis_url):
    return worker_settings(redis_url)


@pytest.fixture
def client(settings):
    return JobClient(settings)


def test_submit_runs_and_returns_artifacts(client, settings, redis_conn):
    sub = client.submit(clip("My Tune.wav"), Options(title="Tune"), ALICE)
    assert len(sub.job_id) >= 24 and sub.position == 1
    # the job's arguments reference stored audio; they never carry the audio itself
    job_hash = redis_conn.hgetall(f"rq:job:{sub.job_id}")
    assert len(job_hash[b"data"]) < 2000
    queued = client.status(sub.job_id)
    assert (queued.state, queued.stage, queued.position, queued.requester) == ("queued", "queued", 1, ALICE)

    pipeline = FakePipeline(0.3)
    run_burst(settings, pipeline)

    assert pipeline.calls[0]["inputs"][0].name == "My Tune.wav"  # original name reaches core (default title)
    assert pipeline.calls[0]["options"].title == "Tune"
    done = client.status(sub.job_id)
    assert (done.state, done.stage, done.percent, done.error) == ("finished", "done", 100.0, None)
    assert {"fetch_inputs", "decode", "transcribe", "engrave", "store_artifacts", "total"} <= set(done.timings)
    assert done.started_at >= done.enqueued_at and done.ended_at >= done.started_at
    out = client.result(sub.job_id, requester=ALICE)
    assert out.summary["inputs"] == ["My Tune.wav"]
    assert [a.name for a in out.artifacts] == ["score.pdf", "preview.png", "score.musicxml", "score.mid", "notes.mid",
                                              "score.ly", "result.json"]
    assert out.artifacts[0].kind == "pdf" and out.artifacts[0].size_bytes > 0
    assert client.fetch_artifact(sub.job_id, "score.pdf") == b"fake score.pdf for My Tune.wav"
    # the input audio is dropped once the job ended
    with pytest.raises(JobNotFoundError):
        client.fetch_artifact(sub.job_id, "input/0-My_Tune.wav")
    assert all(not k.startswith(b"input/") for k in redis_conn.hkeys(f"stemscribe:artifacts:{sub.job_id}"))
    assert [s.job_id for s in client.jobs_for(ALICE)] == [sub.job_id]
    assert client.jobs_for(BOB) == []


def test_stems_artifacts_and_priority_order(client, settings):
    long_job = client.submit(clip("long.wav", 61.0), Options(mode=Mode.SOLO), ALICE)
    stems_job = client.submit(clip("band.wav", 2.0), Options(stems=True), BOB)
    short_job = client.submit(clip("short.wav", 2.0), Options(), Requester("discord", "3", "g"))
    # short clips jump the line; separation waits behind everything on a general worker
    assert [client.status(j.job_id).position for j in (short_job, long_job, stems_job)] == [1, 2, 3]
    pipeline = FakePipeline(0.05, stems=True)
    run_burst(settings, pipeline)
    assert [c["inputs"][0].name for c in pipeline.calls] == ["short.wav", "long.wav", "band.wav"]
    assert "stems/bass.opus" in [a.name for a in client.result(stems_job.job_id).artifacts]
    assert client.fetch_artifact(stems_job.job_id, "stems/bass.opus") == b"fake stem"


def test_every_page_preview_is_stored_and_listed_in_page_order(client, settings):
    sub = client.submit(clip(), Options(), ALICE)
    run_burst(settings, FakePipeline(0.05, pages=12))  # previews stop at page 10, as core's do
    out = client.result(sub.job_id)
    names = [a.name for a in out.artifacts]
    pages = [f"preview-{n}.png" for n in range(2, 11)]  # preview-10.png after preview-9.png, not before -2
    assert names == ["score.pdf", "preview.png", *pages, "score.musicxml", "score.mid", "notes.mid", "score.ly",
                     "result.json"]
    assert sorted(out.summary["files"]) == sorted(names), "every file result.json lists is stored"
    assert {a.kind for a in out.artifacts if a.name.startswith("preview")} == {"preview"}
    assert client.fetch_artifact(sub.job_id, "preview-10.png") == b"fake preview-10.png for tune.wav"


def test_worker_with_only_the_separation_queue(client, settings):
    solo = client.submit(clip(), Options(), ALICE)
    stems = client.submit(clip(), Options(stems=True), BOB)
    run_burst(settings, FakePipeline(0.05), queues=["separation"])
    assert client.status(stems.job_id).state == "finished"
    assert client.status(solo.job_id).state == "queued"


def test_other_requester_cannot_read_or_cancel(client, settings):
    sub = client.submit(clip(), Options(), ALICE)
    mallory = Requester("telegram", "666", "chat-1")
    assert client.cancel(sub.job_id, mallory) is False
    with pytest.raises(JobNotFoundError):
        client.status(sub.job_id, requester=mallory)
    run_burst(settings, FakePipeline(0.05))
    for call in (lambda: client.result(sub.job_id, requester=mallory),
                 lambda: client.fetch_artifact(sub.job_id, "score.pdf", requester=mallory)):
        with pytest.raises(JobNotFoundError):
            call()
    assert client.cancel(sub.job_id, mallory) is False
    assert client.fetch_artifact(sub.job_id, "score.pdf", requester=ALICE)
    # ids are unguessable and a made-up one is simply unknown
    with pytest.raises(JobNotFoundError):
        client.status("A" * 24)
    with pytest.raises(JobNotFoundError):
        client.fetch_artifact("../../etc", "passwd")


def test_cancel_queued_job(client, settings, redis_conn):
    sub = client.submit(clip(), Options(), ALICE)
    keep = client.submit(clip(), Options(), BOB)
    assert client.cancel(sub.job_id, ALICE) is True
    assert client.status(sub.job_id).state == "cancelled"
    assert client.cancel(sub.job_id, ALICE) is False  # already ended
    assert redis_conn.exists(f"stemscribe:artifacts:{sub.job_id}") == 0  # its audio is gone at once
    assert client.status(keep.job_id).position == 1
    pipeline = FakePipeline(0.05)
    run_burst(settings, pipeline)
    assert len(pipeline.calls) == 1
    assert client.status(keep.job_id).state == "finished"
    assert client.status(sub.job_id).state == "cancelled"


def test_user_error_is_reported_and_not_retried(client, settings):
    sub = client.submit(clip(), Options(), ALICE)
    pipeline = FakePipeline(0.2, error=NoNotesError("I could not hear any notes.", hint="Try a clearer recording."))
    run_burst(settings, pipeline)
    status = client.status(sub.job_id)
    assert len(pipeline.calls) == 1
    assert status.state == "failed"
    assert status.error == {"type": "NoNotesError", "message": "I could not hear any notes.",
                            "hint": "Try a clearer recording.", "user_error": True, "reference": None}
    with pytest.raises(RuntimeError):
        client.result(sub.job_id)


def test_transient_error_is_retried_once(client, settings):
    sub = client.submit(clip(), Options(), ALICE)
    pipeline = FakePipeline(0.05, error=TransientError("download hiccup"))
    run_burst(settings, pipeline)
    assert len(pipeline.calls) == 2  # job_retries = 1
    status = client.status(sub.job_id)
    assert status.state == "failed" and status.error["type"] == "TransientError"


def test_bug_is_reported_with_reference(client, settings):
    sub = client.submit(clip(), Options(), ALICE)
    run_burst(settings, FakePipeline(0.05, error=ZeroDivisionError("oops")))
    error = client.status(sub.job_id).error
    assert error["type"] == "InternalError" and error["reference"] == sub.job_id and not error["user_error"]
    assert "oops" not in str(error)  # internals never reach the user
    stats = client.queue_stats()
    assert stats["recent_failures"][0]["job_id"] == sub.job_id
    assert stats["queues"]["stemscribe:short"]["failed"] == 1


def test_per_user_and_per_chat_caps(redis_url):
    client = JobClient(worker_settings(redis_url, max_jobs_per_user=2, max_jobs_per_chat=3))
    client.submit(clip(), Options(), ALICE)
    client.submit(clip(), Options(), ALICE)
    with pytest.raises(TooManyJobsError, match="You already have 2 recordings queued or in progress"):
        client.submit(clip(), Options(), ALICE)
    client.submit(clip(), Options(), BOB)  # same chat, other user
    with pytest.raises(TooManyJobsError, match="This chat already has 3 recordings"):
        client.submit(clip(), Options(), BOB)
    # another chat is not affected by chat-1's cap
    client.submit(clip(), Options(), Requester("telegram", "2002", "chat-2"))


def test_cancel_gives_the_slot_back(redis_url):
    client = JobClient(worker_settings(redis_url, max_jobs_per_user=1))
    first = client.submit(clip(), Options(), ALICE)
    with pytest.raises(TooManyJobsError):
        client.submit(clip(), Options(), ALICE)
    assert client.cancel(first.job_id, ALICE)
    client.submit(clip(), Options(), ALICE)


def test_slots_come_back_when_jobs_end(redis_url):
    settings = worker_settings(redis_url, max_jobs_per_user=1)
    client = JobClient(settings)
    client.submit(clip(), Options(), ALICE)
    run_burst(settings, FakePipeline(0.05))
    client.submit(clip(), Options(), ALICE)  # the finished job no longer counts


def test_rate_limit_window(redis_url):
    client = JobClient(worker_settings(redis_url, rate_limit_jobs=2, rate_limit_window_s=3600))
    for _ in range(2):
        client.cancel(client.submit(clip(), Options(), ALICE).job_id, ALICE)
    with pytest.raises(RateLimitedError, match=r"You have sent 2 recordings in the last 1 hour") as info:
        client.submit(clip(), Options(), ALICE)
    assert info.value.hint == "You can send the next one in 1 hour."
    client.submit(clip(), Options(), BOB)  # per user


def test_queue_full_answer(redis_url):
    client = JobClient(worker_settings(redis_url, max_queue_length=2))
    first = client.submit(clip(), Options(), ALICE)
    second = client.submit(clip(), Options(), BOB)
    assert (first.position, second.position) == (1, 2)
    with pytest.raises(QueueFullError, match="I'm busy: 2 recordings are waiting, so you would be number 3 in line"):
        client.submit(clip(), Options(), Requester("discord", "9", "x"))
    # a refused upload neither took a slot nor used the rate window
    assert client.redis.zcard("stemscribe:rate:discord:9") == 0


def test_file_checks_before_queueing(redis_url, redis_conn):
    client = JobClient(worker_settings(redis_url, max_input_bytes=50_000))
    with pytest.raises(AudioTooLargeError, match=r"this server takes files up to \d+ KB"):
        client.submit(clip(seconds=3.0), Options(), ALICE)
    with pytest.raises(UnsupportedFormatError):
        client.submit([InputFile("notes.pdf", b"%PDF-1.4 not audio at all" * 10)], Options(), ALICE)
    with pytest.raises(OptionsError, match="mode:solo takes one recording"):
        client.submit(clip() + clip(), Options(mode=Mode.SOLO), ALICE)
    assert redis_conn.keys("rq:job:*") == []


def test_artifacts_expire_after_ttl(redis_url, redis_conn):
    settings = worker_settings(redis_url, artifact_ttl_s=2)
    client = JobClient(settings)
    sub = client.submit(clip(), Options(), ALICE)
    run_burst(settings, FakePipeline(0.05))
    assert client.fetch_artifact(sub.job_id, "score.pdf")
    assert 0 < redis_conn.ttl(f"stemscribe:artifacts:{sub.job_id}") <= 2
    time.sleep(2.2)
    with pytest.raises(JobNotFoundError, match="may have expired"):
        client.fetch_artifact(sub.job_id, "score.pdf")
    with pytest.raises(JobNotFoundError, match="expired"):
        client.result(sub.job_id)


def test_folder_store_end_to_end(redis_url, tmp_path):
    settings = worker_settings(redis_url, artifact_store="folder", artifact_dir=str(tmp_path))
    client = JobClient(settings)
    sub = client.submit(clip(), Options(), ALICE)
    assert (tmp_path / sub.job_id / "input").is_dir()
    run_burst(settings, FakePipeline(0.05))
    assert client.fetch_artifact(sub.job_id, "score.pdf").startswith(b"fake score.pdf")
    assert not (tmp_path / sub.job_id / "input" / "0-tune.wav").exists()


def test_defaults_per_scope(client):
    assert client.load_defaults("telegram:user:1001") == {}
    client.save_defaults("telegram:user:1001", {"mode": "piano", "stems": True})
    client.save_defaults("discord:guild:5", {"format": "flac"})
    client.save_defaults("telegram:user:1001", {"stems": None, "title": "Etude"})
    assert client.load_defaults("telegram:user:1001") == {"mode": "piano", "title": "Etude"}
    assert client.load_defaults("discord:guild:5") == {"format": "flac"}
    with pytest.raises(OptionsError):
        client.save_defaults("discord:guild:5", {"mood": "happy"})
    assert client.load_defaults("discord:guild:5") == {"format": "flac"}


def test_redis_down_is_a_transient_error(redis_url):
    from helpers.redis_server import free_port

    client = JobClient(worker_settings(f"redis://127.0.0.1:{free_port()}/0"))
    started = time.monotonic()
    with pytest.raises(TransientError, match="not reachable"):
        client.status("A" * 24)
    with pytest.raises(TransientError):
        client.submit(clip(), Options(), ALICE)
    assert time.monotonic() - started < 30


def test_timeout_is_reported_and_not_retried(redis_url, monkeypatch):
    from stemscribe.core import defaults

    # no fixed part, nothing per second of audio: the timeout is LilyPond's 1 s alone
    monkeypatch.setattr(defaults, "JOB_TIMEOUT_BASE_S", 0.0)
    monkeypatch.setattr(defaults, "JOB_TIMEOUT_PER_AUDIO_S", 0.0)
    settings = worker_settings(redis_url, lilypond_timeout_s=1.0)
    client = JobClient(settings)
    sub = client.submit(clip(), Options(mode=Mode.SOLO), ALICE)
    pipeline = FakePipeline(3.0)
    run_burst(settings, pipeline)
    status = client.status(sub.job_id)
    assert len(pipeline.calls) == 1
    assert status.state == "failed" and status.error["type"] == "JobTimeoutError"
    assert status.error["message"] == "This recording took longer than the 1 second I allow for it."
