"""End to end: the real Discord client, a fake Discord, a real Redis and a real worker process.

One bot session runs two real jobs on a 4 s flute clip (jobs cost seconds each,
so this file keeps to these two):

1. /transcribe arrives over the gateway: the bot defers, edits the response with
   progress (rate-limited), and finally edits it with the result embed, the
   preview shown in the embed and every score file attached in one message.
2. The same request with an interaction token that dies after 3 s and an upload
   limit just above the largest small file: the response warns before the token
   dies, the result goes to the channel with a mention, split over several
   messages under the limit, and the files that fit nowhere are named.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys

import pytest

from helpers.discord_fake import Call, FakeDiscord
from helpers.discord_harness import FAST_TIMINGS, bot_settings, make_clip, restore_discord_endpoints, running_bot
from helpers.worker_fakes import stop_process

from stemscribe.worker.client import JobClient

#: Most seconds one job may take on a loaded 2-core machine before the test gives up.
JOB_TIMEOUT_S = 150.0
TITLE = "Banks of the Bann"
SLUG = "banks-of-the-bann"
RESULT_NAMES = [f"{SLUG}-preview.png", f"{SLUG}.pdf", f"{SLUG}.musicxml", f"{SLUG}.mid", f"{SLUG}-performance.mid"]


@pytest.fixture
def worker(redis_url, tmp_path):
    """A real `stemscribe worker` process on the test's Redis; its log tail is printed at the end."""
    env = {**os.environ, "STEMSCRIBE_REDIS_URL": redis_url, "STEMSCRIBE_PRELOAD_MODELS": "basic-pitch",
           "STEMSCRIBE_TORCH_THREADS": "1", "STEMSCRIBE_LOG_LEVEL": "INFO"}
    env.pop("STEMSCRIBE_CONFIG", None)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "stemscribe", "worker"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process, timeout_s=30)
        print("---- worker log (tail) ----\n" + log_path.read_text(errors="replace")[-3000:])


def _transcribe_payload(fake: FakeDiscord, user: dict, data: bytes, *, limit: int) -> dict:
    attachment = fake.attachment("banks.ogg", data, "audio/ogg")
    options = [{"name": "file", "type": 11, "value": attachment["id"]},
               {"name": "mode", "type": 3, "value": "solo"},
               {"name": "instrument", "type": 3, "value": "flute"},
               {"name": "title", "type": 3, "value": TITLE}]
    return fake.slash("transcribe", user, options, attachments=[attachment], attachment_size_limit=limit)


def _contents(calls: list[Call]) -> list[str]:
    return [(c.json or {}).get("content") or "" for c in calls]


def _check_file_bytes(uploads: dict[str, bytes]) -> None:
    assert uploads[f"{SLUG}-preview.png"].startswith(b"\x89PNG\r\n\x1a\n")
    assert uploads[f"{SLUG}.pdf"].startswith(b"%PDF")
    assert b"<score-partwise" in uploads[f"{SLUG}.musicxml"][:2000]
    assert uploads[f"{SLUG}.mid"].startswith(b"MThd") and uploads[f"{SLUG}-performance.mid"].startswith(b"MThd")


def test_transcribe_progress_result_and_late_split_delivery(worker, redis_url, tmp_path):
    clip = make_clip(tmp_path / "banks.ogg", start_s=1.0, duration_s=4.0).read_bytes()

    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url)
            async with running_bot(fake, settings, JobClient(settings)) as bot:
                user = fake.user_payload("ann")

                # ---- 1: a normal job, delivered in the interaction's own response
                first = _transcribe_payload(fake, user, clip, limit=10 * 1024 * 1024)
                await fake.dispatch("INTERACTION_CREATE", first)
                final = await fake.wait_for(lambda c: c.method == "PATCH" and first["token"] in c.path and c.files,
                                            timeout=JOB_TIMEOUT_S)
                calls = fake.interaction_calls(first)
                assert calls[0].path == f"/interactions/{first['id']}/{first['token']}/callback"
                assert calls[0].json["type"] == 5
                edits = [c for c in calls[1:] if c.method == "PATCH"]
                assert all(c.path == f"/webhooks/{fake.application_id}/{first['token']}/messages/@original"
                           for c in edits)
                progress = [c for c in edits if c is not final]
                texts = _contents(progress)
                assert texts[0].startswith("Queued") and "Job `" in texts[0]
                assert any("%" in t and "▓" in t for t in texts), f"no progress edit among {texts}"
                gaps = [b.at - a.at for a, b in zip(progress[1:], progress[2:])]
                assert all(gap >= FAST_TIMINGS.edit_interval_s * 0.9 for gap in gaps), gaps

                assert final.filenames == RESULT_NAMES
                embed = final.json["embeds"][0]
                assert embed["title"] == TITLE
                assert embed["image"]["url"] == f"attachment://{SLUG}-preview.png"
                assert "bpm" in embed["description"] and "Solo" in embed["description"]
                assert embed["footer"]["text"].startswith("job ")
                assert final.json["content"] == "Your score is ready."
                uploads = {f.filename: f.data for f in final.files}
                _check_file_bytes(uploads)
                assert not fake.find("POST", f"/webhooks/{fake.application_id}/{first['token']}"), "one message only"
                sizes = {name: len(data) for name, data in uploads.items()}

                # ---- 2: the token dies after 3 s and the upload limit is tiny
                small = [f"{SLUG}.musicxml", f"{SLUG}.mid", f"{SLUG}-performance.mid"]
                limit = max(sizes[n] for n in small) + 64
                fake.token_lifetime_s = 3.0
                bot.timings = dataclasses.replace(FAST_TIMINGS, token_lifetime_s=3.0, token_margin_s=1.0)
                before = len(fake.calls)
                second = _transcribe_payload(fake, user, clip, limit=limit)
                await fake.dispatch("INTERACTION_CREATE", second)
                channel = f"/channels/{fake.channel_id}/messages"
                last = await fake.wait_for(lambda c: c.method == "POST" and c.path == channel
                                           and "Could not attach" in ((c.json or {}).get("content") or ""),
                                           timeout=JOB_TIMEOUT_S)
                posts = [c for c in fake.calls[before:] if c.method == "POST" and c.path == channel]
                assert last is posts[-1] and len(posts) >= 2, "the files must be split over several messages"
                assert posts[0].json["content"].startswith(f"<@{user['id']}> Your score is ready.")
                assert [str(u) for u in posts[0].json["allowed_mentions"]["users"]] == [user["id"]]
                assert posts[0].json["embeds"][0]["title"] == TITLE
                for post in posts:
                    assert 1 <= len(post.files) <= 10
                    assert sum(len(f.data) for f in post.files) <= limit
                sent = [name for post in posts for name in post.filenames]
                assert len(sent) == len(set(sent)) and set(small) <= set(sent)
                missing = [n for n in RESULT_NAMES if n not in sent]
                assert f"{SLUG}.pdf" in missing, "a PDF never fits in a few kilobytes"
                note = last.json["content"]
                assert "Score (PDF)" in note and "uploads here are limited to" in note

                token_calls = fake.interaction_calls(second)
                assert any("This is taking a while" in t for t in _contents(token_calls))
                assert all(c.status < 400 for c in token_calls), "no request with a dead token"
                assert not [c for c in token_calls if c.files], "nothing is uploaded through the dead token"
    with restore_discord_endpoints():
        asyncio.run(scenario())
