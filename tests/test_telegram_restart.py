"""Nothing a user sent is lost when the Telegram bot restarts.

A real worker process (tests/helpers/worker_proc.py: the real `stemscribe worker`
around a fake pipeline that takes a few seconds) runs the jobs on a real Redis.

1. The bot is stopped cleanly (a deploy) while the job runs; the job finishes
   with no bot running; two new instances start together: the same progress
   message is edited to "Done", and the results arrive exactly once.
2. The bot process is SIGKILLed (a crash) while its job is queued: its hold on
   the job lapses after delivery_lease_s, and an instance that is already
   running picks the job up on its next sweep and delivers it.
3. The bot process is SIGKILLed half-way through posting the results (the
   preview is in the chat, the next upload never comes back): the instance that
   resumes the job posts only the rest, so every file arrives exactly once.
   The same with a three-page score: page 1 and the album of pages 2-3 are in
   the chat when the bot dies, and the resumed delivery posts no page again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.telegram_fake import TOKEN, UPLOAD_METHODS, BotHarness, make_user, message_update
from helpers.worker_fakes import wait_for, wav_bytes
from stemscribe.bots.telegram.app import build_application
from stemscribe.settings import load_settings
from stemscribe.worker.client import JobClient

ALICE = make_user(711, "Alice")
RESULT_DOCUMENTS = ["Tonight.pdf", "Tonight.musicxml", "Tonight.mid", "Tonight-performance.mid"]


def _builder(redis_url: str, **overrides):
    def build(base_url: str, base_file_url: str):
        settings = load_settings(env={}, redis_url=redis_url, telegram_token=TOKEN, telegram_base_url=base_url,
                                 telegram_base_file_url=base_file_url, **overrides)
        return build_application(settings, client=JobClient(settings))
    return build


@pytest.fixture
def client(redis_url) -> JobClient:
    return JobClient(load_settings(env={}, redis_url=redis_url))




def _send_recording(api) -> dict:
    file_id, size = api.add_file(wav_bytes(2.0))
    update = message_update(user=ALICE, chat_id=ALICE["id"], caption="title:Tonight", audio={
        "file_id": file_id, "file_unique_id": file_id + "u", "duration": 2, "mime_type": "audio/wav",
        "file_size": size, "file_name": "tone.wav"})
    api.push_update(update)
    return update["message"]


def _ack_id(api) -> int:
    ack = api.wait_for(lambda a: [c for c in a.calls_of("sendMessage", chat_id=ALICE["id"])
                                  if c.status == 200 and c.params["text"].startswith("Got your")])[0]
    return ack.result["message_id"]


def _done_text(api, message_id: int, *, timeout_s: float = 40.0) -> str:
    def done(a):
        edits = [c.params["text"] for c in a.calls_of("editMessageText", chat_id=ALICE["id"])
                 if c.status == 200 and int(c.params["message_id"]) == message_id]
        return next((t for t in edits if t.startswith("Done:")), None)
    return api.wait_for(done, timeout_s=timeout_s)


def _bot_process(api, redis_url: str) -> subprocess.Popen:
    """`stemscribe telegram --polling` as its own process (so it can be SIGKILLed), with a 3 s delivery lease."""
    env = {**os.environ, "STEMSCRIBE_TELEGRAM_TOKEN": TOKEN, "STEMSCRIBE_TELEGRAM_BASE_URL": api.base_url,
           "STEMSCRIBE_TELEGRAM_BASE_FILE_URL": api.base_file_url, "STEMSCRIBE_REDIS_URL": redis_url,
           "STEMSCRIBE_DELIVERY_LEASE_S": "3"}
    env.pop("STEMSCRIBE_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "stemscribe", "telegram", "--polling"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _assert_results_once(api, source: dict) -> None:
    photos = api.calls_of("sendPhoto", chat_id=ALICE["id"])
    documents = [c.upload("document")[0] for c in api.calls_of("sendDocument", chat_id=ALICE["id"])]
    assert [c.upload("photo")[0] for c in photos] == ["Tonight-preview.png"]
    assert sorted(documents) == sorted(RESULT_DOCUMENTS), documents
    assert photos[0].upload("photo")[1] == b"fake preview.png for tone.wav"
    for call in api.calls_of("sendPhoto", "sendDocument"):
        assert call.params["reply_parameters"]["message_id"] == source["message_id"]


def test_clean_restart_mid_job_then_two_instances_deliver_once(redis_url, client, start_worker):
    start_worker(4.0)
    build = _builder(redis_url, delivery_sweep_s=0.3)
    with BotHarness(build) as harness:
        api = harness.api
        source = _send_recording(api)
        ack_id = _ack_id(api)
        # Mid-job: the worker reports progress and the bot shows it.
        api.wait_for(lambda a: any("%" in t for t in a.texts_to(ALICE["id"])), timeout_s=30)
        [job] = client.undelivered("telegram")
        first_owner = harness.app.bot_data["services"].deliveries.owner
        assert client.deliveries.holder(job.job_id) == first_owner
        assert job.requester.reply["message_id"] == ack_id

        harness.stop_bot(harness.app)
        assert client.deliveries.holder(job.job_id) is None, "a clean stop hands the job over at once"
        wait_for(lambda: client.status(job.job_id).state == "finished", timeout_s=30, what="the job to finish")
        assert not api.calls_of("sendPhoto", "sendDocument"), "nobody delivered while no bot ran"
        assert [j.job_id for j in client.undelivered("telegram")] == [job.job_id]
        stopped_at = len(api.calls)

        second = harness.start_bot(build)
        third = harness.start_bot(build, polling=False)
        done = _done_text(api, ack_id)
        assert done.startswith("Done: Solo"), done
        wait_for(lambda: not client.undelivered("telegram"), what="the job to be marked delivered")
        # Both instances keep sweeping every 0.3 s: give a duplicate every chance to appear.
        time.sleep(1.5)
        _assert_results_once(api, source)
        # The restarted bots edited the acknowledgement the first one sent, and no other message.
        later_edits = [c for c in api.calls[stopped_at:] if c.method == "editMessageText"]
        assert later_edits and {int(c.params["message_id"]) for c in later_edits} == {ack_id}
        assert not [c for c in api.calls[stopped_at:] if c.method == "sendMessage"]
        followers = [app.bot_data["services"].tracker for app in (second, third)]
        assert client.deliveries.holder(job.job_id) is None
        assert all(not tracker.job_ids for tracker in followers)


def test_killed_bot_job_is_delivered_by_a_running_instance_after_its_lease_lapses(redis_url, client,
                                                                                   start_worker):
    with BotHarness(None) as harness:
        api = harness.api
        process = _bot_process(api, redis_url)
        try:
            source = _send_recording(api)
            ack_id = _ack_id(api)
            api.wait_for(lambda a: "Queued: starting shortly." in a.texts_to(ALICE["id"]), timeout_s=30)
            [job] = client.undelivered("telegram")
            dead_owner = client.deliveries.holder(job.job_id)
            assert dead_owner and dead_owner.startswith("telegram:")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        # An instance already running (started before the lease lapses) takes the job on a later sweep.
        survivor = harness.start_bot(_builder(redis_url, delivery_sweep_s=0.3, delivery_lease_s=3.0),
                                     polling=False)
        start_worker(0.5)
        done = _done_text(api, ack_id)
        assert done.startswith("Done: Solo"), done
        wait_for(lambda: not client.undelivered("telegram"), what="the job to be marked delivered")
        _assert_results_once(api, source)
        assert client.deliveries.holder(job.job_id) is None
        assert survivor.bot_data["services"].deliveries.owner != dead_owner


def _kill_mid_upload_then_resume(harness: BotHarness, redis_url: str, client, *, uploads_through: int,
                                 posted_steps: set[str]) -> tuple[dict, str, str]:
    """Run the bot as a process until upload number uploads_through + 1 hangs, SIGKILL it, check the
    steps it recorded, then let a new bot resume the job until it is delivered.

    Returns:
        (the user's recording message, the done text, the job id).
    """
    api = harness.api
    api.hang_uploads_after(uploads_through)
    process = _bot_process(api, redis_url)
    try:
        source = _send_recording(api)
        ack_id = _ack_id(api)
        api.wait_for(lambda a: [c for c in a.calls_of("sendDocument") if c.status == 0], timeout_s=40)
        [job] = client.undelivered("telegram")
        assert client.delivery_steps(job.job_id, "telegram") == posted_steps
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    api.release_uploads()
    harness.start_bot(_builder(redis_url, delivery_sweep_s=0.3, delivery_lease_s=3.0), polling=False)
    done = _done_text(api, ack_id)
    wait_for(lambda: not client.undelivered("telegram"), what="the job to be marked delivered")
    time.sleep(1.0)  # the survivor keeps sweeping: room for a duplicate
    return source, done, job.job_id


def test_bot_killed_half_way_through_posting_results_posts_only_the_rest_after_resuming(redis_url, client,
                                                                                        start_worker):
    with BotHarness(None) as harness:
        api = harness.api
        start_worker(0.5)
        # The preview photo goes through; the first document never comes back.
        source, done, job_id = _kill_mid_upload_then_resume(harness, redis_url, client, uploads_through=1,
                                                            posted_steps={'["preview.png"]'})
        assert done.startswith("Done: Solo"), done
        posted = [c for c in api.calls_of("sendPhoto", "sendDocument", chat_id=ALICE["id"]) if c.status == 200]
        names = [c.upload("photo" if c.method == "sendPhoto" else "document")[0] for c in posted]
        assert sorted(names) == sorted(["Tonight-preview.png", *RESULT_DOCUMENTS]), "each file exactly once"
        assert [c.method for c in posted][0] == "sendPhoto", "the preview came first, from the killed bot"
        for call in posted:
            assert call.params["reply_parameters"]["message_id"] == source["message_id"]
        assert client.delivery_steps(job_id, "telegram") == set(), "delivered: the steps are dropped"


def test_bot_killed_after_the_page_album_posts_no_page_again_after_resuming(redis_url, client, start_worker):
    with BotHarness(None) as harness:
        api = harness.api
        start_worker(0.5, pages=3)
        # Page 1 and the album of pages 2-3 go through; the PDF never comes back.
        _, done, _ = _kill_mid_upload_then_resume(
            harness, redis_url, client, uploads_through=2,
            posted_steps={'["preview.png"]', '["preview-2.png", "preview-3.png"]'})
        assert done.startswith("Done: Solo") and "3 pages" in done, done
        posted = [c for c in api.calls_of(*UPLOAD_METHODS, chat_id=ALICE["id"]) if c.status == 200]
        assert [c.method for c in posted] == ["sendPhoto", "sendMediaGroup"] + ["sendDocument"] * 4
        photo, album, *documents = posted
        assert photo.upload("photo")[0] == "Tonight-preview.png" and "3 pages" in photo.params["caption"]
        assert [album.upload(m["media"])[0] for m in album.params["media"]] == ["Tonight-preview-2.png",
                                                                              "Tonight-preview-3.png"]
        assert sorted(c.upload("document")[0] for c in documents) == sorted(RESULT_DOCUMENTS)
