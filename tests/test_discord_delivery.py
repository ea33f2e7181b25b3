"""Upload planning for Discord: order, page previews, the 10-file cap, the byte limit, what cannot be
attached; and a three-page job's previews arriving as attachments through the real client."""

from __future__ import annotations

from stemscribe.core.plan import format_size

import asyncio

from helpers.discord_fake import FakeDiscord
from helpers.discord_harness import bot_settings, restore_discord_endpoints, running_bot
from helpers.worker_fakes import wav_bytes

from stemscribe.bots.discord.delivery import (
    plan_uploads,
    too_large_note,
    upload_name,
)
from stemscribe.worker.client import JobClient

SCORE_FILES = [  # (artifact, size in bytes) as a job lists them, deliberately out of order
    ("score.mid", 30),
    ("result.json", 5),        # never sent
    ("score.pdf", 150),
    ("notes.mid", 30),
    ("score.ly", 20),          # never sent
    ("preview.png", 60),
    ("score.musicxml", 50),
]


def _names(plan) -> list[list[str]]:
    return [[p.artifact for p in group] for group in plan.messages]


def test_files_go_in_the_usual_order_in_one_message_when_they_fit():
    plan = plan_uploads(SCORE_FILES, limit_bytes=10_000, title="Song")
    assert _names(plan) == [["preview.png", "score.pdf", "score.musicxml", "score.mid", "notes.mid"]]
    assert plan.too_large == [] and too_large_note(plan) == ""
    assert plan.preview is not None and plan.preview.filename == "song-preview.png"


def test_byte_limit_splits_messages_and_names_what_fits_nowhere():
    plan = plan_uploads(SCORE_FILES, limit_bytes=100, title="Song")
    # preview 60 | musicxml 50 + score.mid 30 = 80 | notes.mid 30 (80 + 30 > 100); the 150-byte PDF fits nowhere
    assert _names(plan) == [["preview.png"], ["score.musicxml", "score.mid"], ["notes.mid"]]
    assert [p.artifact for p in plan.too_large] == ["score.pdf"]
    assert too_large_note(plan).startswith("Could not attach Score (PDF) (150 bytes): uploads here are limited "
                                           "to 100 bytes.")


def test_ten_files_per_message_with_stems_after_the_score():
    stems = [(f"stems/{name}.opus", 1000) for name in ("vocals", "bass", "drums", "guitar", "piano", "other",
                                                        "strings", "winds", "brass", "synth", "choir", "organ")]
    plan = plan_uploads(SCORE_FILES + stems, limit_bytes=10**9, title="Song")
    assert [len(group) for group in plan.messages] == [10, 7]
    flat = [p.artifact for group in plan.messages for p in group]
    assert flat[:5] == ["preview.png", "score.pdf", "score.musicxml", "score.mid", "notes.mid"]
    assert flat[5:] == sorted(name for name, _ in stems)
    assert plan.messages[1][-1].filename == "song-winds.opus"


def test_every_page_preview_goes_first_in_page_order():
    pages = [(f"preview-{n}.png", 60) for n in (10, 2, 3, 4, 5, 6, 7, 8, 9)]  # as a store might list them
    plan = plan_uploads(SCORE_FILES + pages, limit_bytes=10_000, title="Song")
    previews = ["preview.png"] + [f"preview-{n}.png" for n in range(2, 11)]
    assert _names(plan) == [previews, ["score.pdf", "score.musicxml", "score.mid", "notes.mid"]]
    assert plan.preview.filename == "song-preview.png", "the embed shows page 1"
    assert [p.filename for p in plan.messages[0][1:3]] == ["song-preview-2.png", "song-preview-3.png"]


def test_preview_too_large_for_the_embed():
    plan = plan_uploads([("preview.png", 500), ("score.pdf", 50)], limit_bytes=100, title="x")
    assert plan.preview is None and _names(plan) == [["score.pdf"]]


def test_upload_names_are_safe_and_readable():
    assert upload_name("score.pdf", 'Autumn Leaves / "live" ♪') == "autumn-leaves-live.pdf"
    assert upload_name("notes.mid", "Reel") == "reel-performance.mid"
    assert upload_name("stems/bass.flac", "") == "score-bass.flac"
    assert format_size(10 * 1024 * 1024) == "10 MB" and format_size(2048) == "2 KB"


def test_a_three_page_job_posts_every_preview_as_an_attachment_in_order(redis_url, start_worker):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url)
            start_worker(0.3, pages=3)
            async with running_bot(fake, settings, JobClient(settings)):
                attachment = fake.attachment("tone.wav", wav_bytes(2.0), "audio/wav")
                payload = fake.slash("transcribe", fake.user_payload("ann"),
                                     [{"name": "file", "type": 11, "value": attachment["id"]},
                                      {"name": "title", "type": 3, "value": "Tonight"}], attachments=[attachment])
                await fake.dispatch("INTERACTION_CREATE", payload)
                final = await fake.wait_for(lambda c: c.method == "PATCH" and payload["token"] in c.path
                                            and c.files)
        assert final.filenames == ["tonight-preview.png", "tonight-preview-2.png", "tonight-preview-3.png",
                                   "tonight.pdf", "tonight.musicxml", "tonight.mid", "tonight-performance.mid"]
        assert [f.data for f in final.files[:3]] == [f"fake {name} for tone.wav".encode()
                                                     for name in ("preview.png", "preview-2.png", "preview-3.png")]
        embed = final.json["embeds"][0]
        assert embed["image"]["url"] == "attachment://tonight-preview.png"
        assert embed["description"].endswith("6 bars · 3 pages")
        files_field = next(f["value"] for f in embed["fields"] if f["name"] == "Files")
        assert "Preview (page 2): tonight-preview-2.png\nPreview (page 3): tonight-preview-3.png" in files_field
        assert final.json["content"] == "Your score is ready."
    with restore_discord_endpoints():
        asyncio.run(scenario())
