"""Nothing a user sent is lost when the Discord bot restarts.

The real discord.py client against the fake Discord, a real Redis and a real
worker process (the real `stemscribe worker` around a fake pipeline):

1. The bot closes (a deploy) while the job runs; the job finishes with no bot
   running; two new instances start: the interaction token still lives, so the
   result lands in the original response, exactly once.
2. The job was queued when the bot closed and its token has died by the time a
   new instance runs: the result goes to the channel with a mention.
3. The bot process (the real `stemscribe discord`) is SIGKILLed half-way
   through posting a result split over three messages: the instance that
   resumes the job posts only the missing parts, so every file arrives once.
   The same with a three-page score whose first message carries pages 1-2:
   the resumed delivery posts page 3 and the rest, and no page twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys

import pytest
from helpers.discord_fake import FakeDiscord
from helpers.discord_harness import FAST_TIMINGS, bot_settings, restore_discord_endpoints, running_bot
from helpers.worker_fakes import wait_for, wav_bytes

from stemscribe.worker.client import JobClient

NAMES = ["tonight-preview.png", "tonight.pdf", "tonight.musicxml", "tonight.mid", "tonight-performance.mid"]


@pytest.fixture(autouse=True)
def _endpoints():
    with restore_discord_endpoints():
        yield




async def _transcribe(fake: FakeDiscord, user: dict) -> dict:
    attachment = fake.attachment("tone.wav", wav_bytes(2.0), "audio/wav")
    payload = fake.slash("transcribe", user, [{"name": "file", "type": 11, "value": attachment["id"]},
                                              {"name": "title", "type": 3, "value": "Tonight"}],
                         attachments=[attachment])
    await fake.dispatch("INTERACTION_CREATE", payload)
    return payload


async def _until(predicate, what: str, timeout_s: float = 30.0):
    return await asyncio.to_thread(wait_for, predicate, timeout_s=timeout_s, what=what)


def _content(call) -> str:
    return (call.json or {}).get("content") or ""


def test_clean_restart_mid_job_then_two_instances_deliver_once(redis_url, start_worker):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url, delivery_sweep_s=0.3)
            client = JobClient(settings)
            user = fake.user_payload("ann")
            start_worker(4.0)
            async with running_bot(fake, settings, JobClient(settings)) as first:
                payload = await _transcribe(fake, user)
                await fake.wait_for(lambda c: c.method == "PATCH" and payload["token"] in c.path
                                    and "%" in _content(c))
                [job] = client.undelivered("discord")
                assert client.deliveries.holder(job.job_id) == first.deliveries.owner
            assert client.deliveries.holder(job.job_id) is None, "a clean close hands the job over at once"
            await _until(lambda: client.status(job.job_id).state == "finished", "the job to finish")
            assert not [c for c in fake.calls if c.files], "nobody delivered while no bot ran"
            stopped_at = len(fake.calls)

            async with contextlib.AsyncExitStack() as stack:
                # Both connect at the same moment, so their first sweeps race for the job.
                await asyncio.gather(*(stack.enter_async_context(running_bot(fake, settings, JobClient(settings)))
                                       for _ in range(2)))
                final = await fake.wait_for(lambda c: c.method == "PATCH" and payload["token"] in c.path
                                            and c.files)
                await _until(lambda: not client.undelivered("discord"), "the job to be marked delivered")
                await asyncio.sleep(1.5)  # both keep sweeping every 0.3 s: room for a duplicate
            later = fake.calls[stopped_at:]
            assert [c for c in later if c.files] == [final], "the result is posted exactly once"
            assert final.path == f"/webhooks/{fake.application_id}/{payload['token']}/messages/@original"
            assert final.filenames == NAMES
            assert final.json["content"] == "Your score is ready."
            assert final.json["embeds"][0]["title"] == "Tonight"
            assert not fake.find("POST", f"/channels/{fake.channel_id}/messages"), "the token still lived"
    asyncio.run(scenario())


def test_result_goes_to_the_channel_when_the_token_died_during_the_restart(redis_url, start_worker):
    async def scenario():
        async with FakeDiscord() as fake:
            fake.token_lifetime_s = 2.0
            settings = bot_settings(fake, redis_url, delivery_sweep_s=0.3)
            client = JobClient(settings)
            user = fake.user_payload("ann")
            async with running_bot(fake, settings, JobClient(settings)):
                payload = await _transcribe(fake, user)
                await fake.wait_for(lambda c: payload["token"] in c.path and _content(c).startswith("Queued"))
            [job] = client.undelivered("discord")
            assert client.status(job.job_id).state == "queued"
            await asyncio.sleep(2.0)  # the token dies while no bot runs
            start_worker(0.3)
            timings = dataclasses.replace(FAST_TIMINGS, token_lifetime_s=2.0, token_margin_s=0.5)
            async with running_bot(fake, settings, JobClient(settings), timings=timings):
                channel = f"/channels/{fake.channel_id}/messages"
                post = await fake.wait_for(lambda c: c.method == "POST" and c.path == channel and c.files)
                await _until(lambda: not client.undelivered("discord"), "the job to be marked delivered")
            assert post.json["content"] == f"<@{user['id']}> Your score is ready."
            assert [str(u) for u in post.json["allowed_mentions"]["users"]] == [user["id"]]
            assert post.filenames == NAMES
            assert len(fake.find("POST", channel)) == 1
            assert not [c for c in fake.interaction_calls(payload) if c.status >= 400], "no call with a dead token"
    asyncio.run(scenario())


async def _killed_bot_run(fake: FakeDiscord, redis_url: str, user: dict, *, limit: int) -> tuple[dict, str]:
    """Run `stemscribe discord` as a process until the second upload hangs, SIGKILL it; (payload, job id)."""
    client = JobClient(bot_settings(fake, redis_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEMSCRIBE_")}
    env.update(STEMSCRIBE_DISCORD_TOKEN=fake.token, STEMSCRIBE_DISCORD_API_BASE=fake.api_base,
               STEMSCRIBE_DISCORD_GATEWAY_URL=fake.gateway_url, STEMSCRIBE_REDIS_URL=redis_url,
               STEMSCRIBE_DELIVERY_LEASE_S="3")
    fake.hang_uploads_after(1)  # the first message goes through; the second never comes back
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "stemscribe", "discord", env=env,
                                                   stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    try:
        await fake.wait_ready(timeout=30)
        attachment = fake.attachment("tone.wav", wav_bytes(2.0), "audio/wav")
        payload = fake.slash("transcribe", user, [{"name": "file", "type": 11, "value": attachment["id"]},
                                                  {"name": "title", "type": 3, "value": "Tonight"}],
                             attachments=[attachment], attachment_size_limit=limit)
        await fake.dispatch("INTERACTION_CREATE", payload)
        await fake.wait_for(lambda c: c.files and c.status == 0)
        [job] = client.undelivered("discord")
        return payload, job.job_id
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()


async def _resume_until_delivered(fake: FakeDiscord, settings, client: JobClient) -> None:
    """Let the hung uploads go, run a new bot until the job is marked delivered, and a little longer."""
    fake.release_uploads()
    async with running_bot(fake, settings, JobClient(settings)):
        await _until(lambda: not client.undelivered("discord"), "the job to be marked delivered")
        await asyncio.sleep(1.0)  # it keeps sweeping every 0.3 s: room for a duplicate


def test_bot_killed_half_way_through_posting_results_posts_only_the_rest_after_resuming(redis_url, start_worker):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url, delivery_sweep_s=0.3, delivery_lease_s=3.0)
            client = JobClient(settings)
            start_worker(0.5)
            # 60 bytes a message: preview + PDF | MusicXML + MIDI | performance MIDI (fake files of ~30 bytes)
            payload, job_id = await _killed_bot_run(fake, redis_url, fake.user_payload("ann"), limit=60)
            assert client.delivery_steps(job_id, "discord") == {'["preview.png", "score.pdf"]'}
            await _resume_until_delivered(fake, settings, client)
            posted = [c for c in fake.interaction_calls(payload) if c.files and c.status == 200]
            assert sorted(n for c in posted for n in c.filenames) == sorted(NAMES), "each file exactly once"
            first, *rest = posted
            assert first.path.endswith("/messages/@original") and first.filenames == NAMES[:2]
            assert first.json["content"] == "Your score is ready. (3 messages)"
            assert [(c.method, c.json["content"]) for c in rest] == [("POST", "Part 2 of 3."), ("POST", "Part 3 of 3.")]
            assert [c.filenames for c in rest] == [NAMES[2:4], NAMES[4:]]
            assert client.delivery_steps(job_id, "discord") == set(), "delivered: the steps are dropped"
    asyncio.run(scenario())


def test_bot_killed_after_posting_the_first_pages_posts_no_page_again(redis_url, start_worker):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url, delivery_sweep_s=0.3, delivery_lease_s=3.0)
            client = JobClient(settings)
            start_worker(0.5, pages=3)
            # 64 bytes a message (fake files of 27-32 bytes): pages 1-2 | page 3 + PDF | MusicXML + MIDI | MIDI
            payload, job_id = await _killed_bot_run(fake, redis_url, fake.user_payload("ann"), limit=64)
            assert client.delivery_steps(job_id, "discord") == {'["preview-2.png", "preview.png"]'}
            await _resume_until_delivered(fake, settings, client)
            posted = [c for c in fake.interaction_calls(payload) if c.files and c.status == 200]
            pages = ["tonight-preview.png", "tonight-preview-2.png", "tonight-preview-3.png"]
            assert [c.filenames for c in posted] == [pages[:2], [pages[2], "tonight.pdf"],
                                                    ["tonight.musicxml", "tonight.mid"], ["tonight-performance.mid"]]
            assert posted[0].json["content"] == "Your score is ready. (4 messages)"
            assert [c.json["content"] for c in posted[1:]] == ["Part 2 of 4.", "Part 3 of 4.", "Part 4 of 4."]
    asyncio.run(scenario())
