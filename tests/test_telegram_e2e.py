"""End to end: the real Telegram bot, a real Redis and a real worker process transcribing short clips.

Two users at once (one in a private chat, one in a group) each get their own
acknowledgement, progress edits, preview photo and score files, while Telegram's
flood control interrupts the progress edits. A silent clip gets the worker's
explanation. Jobs cost seconds each, so this file keeps to these two runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


from stemscribe.bots.common import STAGE_LABELS

from helpers.telegram_fake import DEVSET_FLUTE, TOKEN, BotHarness, cut_clip, make_user, message_update
from helpers.worker_fakes import stop_process
from stemscribe.bots.common import summary_line
from stemscribe.bots.telegram.app import build_application
from stemscribe.settings import load_settings
from stemscribe.worker.client import JobClient, Requester

DEVSET = Path(__file__).resolve().parents[1].parent / "shared" / "devset"
ALICE, BOB = make_user(311, "Alice"), make_user(322, "Bob")
GROUP = -2002
JOB_TIMEOUT_S = 150.0

_WORKER = ("import sys\n"
           "from stemscribe.settings import load_settings\n"
           "from stemscribe.worker.main import run_worker\n"
           "sys.exit(run_worker(load_settings()))\n")


@pytest.fixture
def worker(redis_url, tmp_path):
    """A real `stemscribe worker` process on the test's Redis; its log is printed if a test fails."""
    env = {**os.environ, "STEMSCRIBE_REDIS_URL": redis_url, "STEMSCRIBE_PRELOAD_MODELS": "basic-pitch",
           "STEMSCRIBE_TORCH_THREADS": "1", "STEMSCRIBE_LOG_LEVEL": "INFO",
           "STEMSCRIBE_ARTIFACT_DIR": str(tmp_path / "artifacts")}
    env.pop("STEMSCRIBE_CONFIG", None)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", _WORKER], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process, timeout_s=30)
        print("---- worker log (tail) ----\n" + log_path.read_text(errors="replace")[-4000:])


@pytest.fixture
def bot(redis_url):
    def build(base_url: str, base_file_url: str):
        settings = load_settings(env={}, redis_url=redis_url, telegram_token=TOKEN, telegram_base_url=base_url,
                                 telegram_base_file_url=base_file_url)
        return build_application(settings, client=JobClient(settings))

    with BotHarness(build) as harness:
        yield harness


# How the progress message reads while a job is still going (bots.common.progress_text).
_IN_PROGRESS = ("Got your", "Queued", "Done.", "Working", *STAGE_LABELS.values())


def final_text(chat_id: int):
    """Predicate: the progress message's text once the job is over ("Done: ..." or the failure)."""
    def check(api):
        edits = [c.params["text"] for c in api.calls_of("editMessageText", chat_id=chat_id) if c.status == 200]
        if edits and not edits[-1].startswith(_IN_PROGRESS):
            return edits[-1]
        return None
    return check


def uploads(api, chat_id: int) -> dict[str, bytes]:
    """File name -> bytes of every photo and document the chat received."""
    out = {}
    for call in api.calls_of("sendPhoto", "sendDocument", chat_id=chat_id):
        name, data = call.upload("photo" if call.method == "sendPhoto" else "document")
        out[name] = data
    return out


def test_two_users_dm_and_group_each_get_their_own_score(worker, bot, tmp_path, redis_url):
    api = bot.api
    flute = str(DEVSET / DEVSET_FLUTE)
    clip_a = cut_clip(flute, str(tmp_path / "a.ogg"), seconds=4)
    clip_b = cut_clip(flute, str(tmp_path / "b.ogg"), seconds=4, start_s=8)
    file_a, size_a = api.add_file(clip_a)
    file_b, size_b = api.add_file(clip_b)
    # Alice, privately: a voice note with options in the caption.
    dm = message_update(user=ALICE, chat_id=ALICE["id"], caption='title:"Banks of the Bann" mode:solo',
                        voice={"file_id": file_a, "file_unique_id": "ua", "duration": 4, "mime_type": "audio/ogg",
                               "file_size": size_a})
    # Bob, in a group: an audio file, then /transcribe with options as a reply to it.
    recording = message_update(user=BOB, chat_id=GROUP, audio={
        "file_id": file_b, "file_unique_id": "ub", "duration": 4, "mime_type": "audio/ogg", "file_size": size_b,
        "file_name": "reel.ogg"})["message"]
    api.push_update(dm)
    api.push_update(message_update(user=BOB, chat_id=GROUP, text="/transcribe instrument:flute",
                                   reply_to=recording))
    # Flood control hits the first progress edit after both jobs are queued.
    api.wait_for(lambda a: all(any(t.startswith("Queued") for t in a.texts_to(c)) for c in (ALICE["id"], GROUP)))
    api.fail_next("editMessageText", retry_after_s=2)

    done_a = api.wait_for(final_text(ALICE["id"]), timeout_s=JOB_TIMEOUT_S)
    done_b = api.wait_for(final_text(GROUP), timeout_s=JOB_TIMEOUT_S)
    assert done_a.startswith("Done: Solo"), done_a
    assert done_b.startswith("Done: "), done_b

    for chat_id, source_id, ack_text, base in (
            (ALICE["id"], dm["message"]["message_id"], "Got your voice note (0:04). Fetching it…", "Banks-of-the-Bann"),
            (GROUP, recording["message_id"], "Got your audio file (0:04). Fetching it…", "Reel")):
        # One acknowledgement, then only edits of that same message.
        acks = [c for c in api.calls_of("sendMessage", chat_id=chat_id) if c.status == 200]
        assert [c.params["text"] for c in acks] == [ack_text]
        edits = [c for c in api.calls_of("editMessageText", chat_id=chat_id) if c.status == 200]
        assert {int(c.params["message_id"]) for c in edits} == {acks[0].result["message_id"]}
        assert edits[0].params["text"].startswith("Queued")
        # Results: preview photo with the summary, then the score files, named after the score's title (core decides it).
        files = uploads(api, chat_id)
        assert set(files) == {f"{base}-preview.png", f"{base}.pdf", f"{base}.musicxml", f"{base}.mid",
                              f"{base}-performance.mid"}
        assert files[f"{base}-preview.png"].startswith(b"\x89PNG") and len(files[f"{base}-preview.png"]) > 2000
        assert files[f"{base}.pdf"].startswith(b"%PDF") and len(files[f"{base}.pdf"]) > 2000
        assert b"score-partwise" in files[f"{base}.musicxml"]
        assert files[f"{base}.mid"].startswith(b"MThd") and files[f"{base}-performance.mid"].startswith(b"MThd")
        photo = api.calls_of("sendPhoto", chat_id=chat_id)[0]
        assert photo.params["caption"] and photo.params["caption"] in edits[-1].params["text"]
        # Every result answers the user's own recording.
        for call in api.calls_of("sendPhoto", "sendDocument", chat_id=chat_id):
            assert call.params["reply_parameters"]["message_id"] == source_id
    # Nothing went to a third chat, and progress was shown as the job ran.
    assert {c.chat_id for c in api.calls if c.method.startswith(("send", "edit"))} == {ALICE["id"], GROUP}
    shown = api.texts_to(ALICE["id"]) + api.texts_to(GROUP)
    assert any("%" in t for t in shown), shown
    # The refused edit was not hammered: the next edit of that chat came after the wait Telegram asked for.
    refused = next(c for c in api.calls_of("editMessageText") if c.status == 429)
    later = next(c for c in api.calls_of("editMessageText", chat_id=refused.chat_id)
                 if c.status == 200 and c.at > refused.at)
    assert later.at - refused.at >= 2.0
    # The caption is the shared summary line of Alice's job result.
    client = JobClient(load_settings(env={}, redis_url=redis_url))
    (job,) = client.jobs_for(Requester("telegram", str(ALICE["id"]), str(ALICE["id"])))
    caption = api.calls_of("sendPhoto", chat_id=ALICE["id"])[0].params["caption"]
    assert caption == summary_line(client.result(job.job_id).summary)


def test_silent_clip_is_explained(worker, bot, tmp_path):
    api = bot.api
    silence = cut_clip("", str(tmp_path / "silence.ogg"), seconds=3, silent=True)
    file_id, size = api.add_file(silence)
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], voice={
        "file_id": file_id, "file_unique_id": "us", "duration": 3, "mime_type": "audio/ogg", "file_size": size}))
    text = api.wait_for(final_text(ALICE["id"]), timeout_s=JOB_TIMEOUT_S)
    assert "silent" in text.lower() and "Sorry" not in text
    assert not api.calls_of("sendPhoto", "sendDocument")
