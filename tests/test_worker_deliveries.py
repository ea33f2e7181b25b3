"""The job client's delivery book on a real Redis: booking at submit, claims, leases, posted steps, pruning.

No worker runs: jobs stay queued, which is all delivery bookkeeping needs. The
bots' restart behaviour on top of this is in test_telegram_restart.py and
test_discord_restart.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from helpers.worker_fakes import wav_bytes, worker_settings

from stemscribe.bots.common import has_option_words
from stemscribe.bots.deliveries import Deliveries
from stemscribe.core.options import Options
from stemscribe.worker.client import InputFile, JobClient, Requester
from stemscribe.worker.queues import delivery_lease_key, delivery_steps_key, undelivered_key


def _submit(client: JobClient, *, user: str = "7", platform: str = "telegram", owner: str | None = "bot-a") -> str:
    requester = Requester(platform, user, user, reply={"chat_id": user, "message_id": 99})
    return client.submit([InputFile("tone.wav", wav_bytes(1.0))], Options(), requester, delivered_by=owner).job_id


def test_submit_books_the_job_and_one_claim_wins(redis_url):
    client = JobClient(worker_settings(redis_url, delivery_lease_s=30.0))
    job_id = _submit(client)
    untracked = _submit(client, user="8", owner=None)  # `stemscribe submit`: nobody will deliver it in a chat
    [pending] = client.undelivered("telegram")
    assert pending.job_id == job_id and pending.requester.reply == {"chat_id": "7", "message_id": 99}
    assert untracked not in [s.job_id for s in client.undelivered("telegram")]
    assert client.undelivered("discord") == []
    # The submitting instance holds it: nobody else can claim it, not even itself a second time.
    assert client.deliveries.holder(job_id) == "bot-a"
    assert not client.claim_delivery(job_id, "telegram", "bot-b")
    assert not client.claim_delivery(job_id, "telegram", "bot-a")

    client.release_delivery(job_id, "bot-b")  # not bot-b's to release
    assert client.deliveries.holder(job_id) == "bot-a"
    client.release_delivery(job_id, "bot-a")
    # Eight instances claim at the same moment: exactly one wins.
    results: dict[str, bool] = {}
    barrier = threading.Barrier(8)

    def claim(owner: str) -> None:
        barrier.wait()
        results[owner] = client.claim_delivery(job_id, "telegram", owner)

    threads = [threading.Thread(target=claim, args=(f"bot-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [owner for owner, won in results.items() if won]
    assert len(winners) == 1 and client.deliveries.holder(job_id) == winners[0]

    # Only the holder may mark it delivered; after that nobody can claim it again.
    loser = next(owner for owner in results if owner != winners[0])
    assert not client.mark_delivered(job_id, "telegram", loser)
    assert client.mark_delivered(job_id, "telegram", winners[0])
    assert client.undelivered("telegram") == [] and client.deliveries.holder(job_id) is None
    assert not client.claim_delivery(job_id, "telegram", loser)
    assert not client.renew_delivery(job_id, "telegram", winners[0])


def test_a_lapsed_lease_can_be_claimed_and_renewal_notices_the_loss(redis_url):
    client = JobClient(worker_settings(redis_url, delivery_lease_s=0.3))
    job_id = _submit(client)
    assert client.renew_delivery(job_id, "telegram", "bot-a")
    assert not client.claim_delivery(job_id, "telegram", "bot-b")
    time.sleep(0.45)  # bot-a crashed: nobody renews
    assert client.deliveries.holder(job_id) is None
    # A renewal after a lapse nobody used takes the lease back.
    assert client.renew_delivery(job_id, "telegram", "bot-a")
    time.sleep(0.45)
    assert client.claim_delivery(job_id, "telegram", "bot-b")
    assert not client.renew_delivery(job_id, "telegram", "bot-a"), "bot-a must learn that bot-b took over"
    assert client.renew_delivery(job_id, "telegram", "bot-b")


def test_posted_steps_are_recorded_by_the_holder_only_and_kept_until_delivered(redis_url, redis_conn):
    client = JobClient(worker_settings(redis_url, delivery_lease_s=30.0, job_result_ttl_s=3600))
    job_id = _submit(client)
    steps_key = delivery_steps_key(client.settings.queue_prefix, "telegram", job_id)
    assert client.delivery_steps(job_id, "telegram") == set()
    redis_conn.pexpire(delivery_lease_key(client.settings.queue_prefix, job_id), 1000)
    assert client.record_delivery_step(job_id, "telegram", "bot-a", '["preview.png"]')
    assert redis_conn.pttl(delivery_lease_key(client.settings.queue_prefix, job_id)) > 20_000, "recording renews"
    assert client.record_delivery_step(job_id, "telegram", "bot-a", '["score.pdf"]')
    assert client.record_delivery_step(job_id, "telegram", "bot-a", '["score.pdf"]')  # a repeat changes nothing
    assert client.delivery_steps(job_id, "telegram") == {'["preview.png"]', '["score.pdf"]'}
    assert client.delivery_steps(job_id, "discord") == set(), "steps are per platform"
    # Kept as long as the job may wait for delivery, long after a dead instance's lease lapsed.
    assert 3600 < redis_conn.ttl(steps_key) <= 3660

    assert not client.record_delivery_step(job_id, "telegram", "bot-b", '["score.mid"]'), "bot-a holds it"
    client.release_delivery(job_id, "bot-a")  # a clean stop: the steps stay for whoever resumes
    assert client.claim_delivery(job_id, "telegram", "bot-b")
    assert not client.record_delivery_step(job_id, "telegram", "bot-a", '["score.mid"]'), "bot-b holds it now"
    assert client.delivery_steps(job_id, "telegram") == {'["preview.png"]', '["score.pdf"]'}
    assert client.record_delivery_step(job_id, "telegram", "bot-b", '["score.mid"]')
    assert len(client.delivery_steps(job_id, "telegram")) == 3

    assert client.mark_delivered(job_id, "telegram", "bot-b")
    assert not redis_conn.exists(steps_key) and client.delivery_steps(job_id, "telegram") == set()
    assert not client.record_delivery_step(job_id, "telegram", "bot-b", '["notes.mid"]'), "delivered: no more steps"
    assert not redis_conn.exists(steps_key)


def test_a_follower_that_lost_the_job_stops_at_its_next_recorded_message(redis_url, redis_conn):
    client = JobClient(worker_settings(redis_url, delivery_lease_s=30.0))
    deliveries = Deliveries(client, "telegram", lease_s=30.0, sweep_s=1.0)
    job_id = _submit(client, owner=deliveries.owner)
    posted: list[str] = []

    async def follow() -> None:
        progress = deliveries.progress(job_id)
        await progress.load()
        for name in ("preview.png", "score.pdf", "score.mid"):
            if name not in progress.earlier_files:
                posted.append(name)
                await progress.posted([name])
                if name == "preview.png":  # meanwhile this instance's lease lapsed and bot-b took over
                    redis_conn.set(delivery_lease_key(client.settings.queue_prefix, job_id), "bot-b")

    asyncio.run(deliveries.deliver_once(job_id, follow()))
    assert posted == ["preview.png", "score.pdf"], "nothing is posted after the refused record"
    assert client.delivery_steps(job_id, "telegram") == {'["preview.png"]'}
    assert [s.job_id for s in client.undelivered("telegram")] == [job_id], "bot-b delivers the rest"
    assert client.deliveries.holder(job_id) == "bot-b"


def test_old_and_vanished_jobs_are_pruned(redis_url, redis_conn):
    client = JobClient(worker_settings(redis_url, job_result_ttl_s=3600))
    old, gone, fresh = _submit(client, user="1"), _submit(client, user="2"), _submit(client, user="3")
    key = undelivered_key(client.settings.queue_prefix, "telegram")
    redis_conn.zadd(key, {old: time.time() - 3601})  # booked longer ago than results are kept
    assert client.record_delivery_step(gone, "telegram", "bot-a", '["preview.png"]')
    redis_conn.delete(f"rq:job:{gone}")  # the job itself expired
    assert [s.job_id for s in client.undelivered("telegram")] == [fresh]
    assert not redis_conn.exists(delivery_steps_key(client.settings.queue_prefix, "telegram", gone))
    assert [m.decode() for m in redis_conn.zrange(key, 0, -1)] == [fresh]
    assert 3600 < redis_conn.ttl(key) <= 3660, "an abandoned book expires by itself"


@pytest.mark.parametrize("caption, expected", [
    ("my song for tonight", False),            # plain words: a title
    ("Tonight: the late show", False),         # a colon after a word that is no option
    ("12:30 rehearsal", False),                # a time is not key:value
    ("don't stop me now", False),              # a lone apostrophe is fine
    ("mode:piano", True),
    ('my song title:"Autumn Leaves"', True),   # one key:value word makes it all options
    ("tempi:90", True),                        # a misspelt key is still meant as an option
    ("mode: piano", True),                     # an option word with its value after a space
    ("stems=yes", True),
])
def test_has_option_words(caption, expected):
    assert has_option_words(caption) is expected
