"""Result delivery to Telegram: stems as a media group, upload-limit notes, file names, flood control.

The worker cannot separate stems without demucs weights, so these tests hand
deliver_results a finished job's files directly (a small in-memory shelf with
JobClient's fetch_artifact signature) and watch what the fake Bot API receives
from the real python-telegram-bot Bot.
"""

from __future__ import annotations

import pytest

from helpers.telegram_fake import TOKEN, BotHarness
from stemscribe.bots.common import summary_line
from stemscribe.bots.telegram.app import build_application
from stemscribe.bots.telegram.delivery import Ticket, deliver_results, file_base_name, output_file_name
from stemscribe.settings import load_settings
from stemscribe.worker.client import Artifact, JobOutput

CHAT = 4242
SUMMARY = {"mode": "stems", "mode_requested": "stems", "tempo_bpm": 96.2, "time_signature": "4/4",
           "key": "Eb major", "bars": 12}


class Shelf:
    """A finished job's files by name, served like JobClient.fetch_artifact."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.fetched: list[str] = []

    def fetch_artifact(self, job_id: str, name: str) -> bytes:
        self.fetched.append(name)
        return self.files[name]

    def undelivered(self, platform: str) -> list:
        """No job is waiting for delivery (the bot asks at startup)."""
        return []

    def output(self) -> JobOutput:
        return JobOutput(summary=SUMMARY, artifacts=[Artifact(n, "file", len(d)) for n, d in self.files.items()])


@pytest.fixture
def harness():
    def build(base_url: str, base_file_url: str):
        settings = load_settings(env={}, telegram_token=TOKEN, telegram_base_url=base_url,
                                 telegram_base_file_url=base_file_url)
        return build_application(settings, client=Shelf({}))

    with BotHarness(build) as running:
        yield running


def deliver(harness, shelf: Shelf, *, limit: int) -> list[str]:
    ticket = Ticket("job-1", CHAT, progress_message_id=5, reply_to_message_id=4, base_name="My-Song")
    return harness.call(deliver_results(harness.app.bot, shelf, ticket, shelf.output(), upload_limit_bytes=limit))


def test_stems_arrive_as_one_media_group_and_oversize_files_become_notes(harness):
    shelf = Shelf({"preview.png": b"\x89PNG" + b"p" * 500, "score.pdf": b"%PDF" + b"d" * 500,
                   "score.musicxml": b"<score-partwise/>", "score.mid": b"MThd" + b"m" * 50,
                   "stems/bass.opus": b"b" * 300, "stems/drums.opus": b"d" * 300, "stems/vocals.opus": b"v" * 300,
                   "stems/other.opus": b"o" * 5000})
    api = harness.api
    harness.api.fail_next("sendMediaGroup", retry_after_s=1)
    notes = deliver(harness, shelf, limit=4000)
    assert notes == ["My-Song-other.opus is 4.9 KB, over Telegram's 3.9 KB upload limit, so I could not send it. "
                     "Ask for format:opus to get smaller stems."]
    assert "stems/other.opus" not in shelf.fetched, "a file that cannot be sent is not even fetched"
    photo = api.calls_of("sendPhoto")[0]
    assert photo.upload("photo") == ("My-Song-preview.png", shelf.files["preview.png"])
    assert photo.params["caption"] == summary_line(SUMMARY) == "Stems · 96 bpm · 4/4 · E♭ major · 12 bars"
    documents = [c.upload("document")[0] for c in api.calls_of("sendDocument")]
    assert documents == ["My-Song.pdf", "My-Song.musicxml", "My-Song.mid"]
    refused, group = api.calls_of("sendMediaGroup")
    assert (refused.status, group.status) == (429, 200) and group.at - refused.at >= 1.0
    assert [m["type"] for m in group.params["media"]] == ["audio"] * 3
    assert [group.upload(m["media"])[0] for m in group.params["media"]] == [
        "My-Song-bass.opus", "My-Song-drums.opus", "My-Song-vocals.opus"]
    assert [m["caption"] for m in group.params["media"]] == ["Stem: bass", "Stem: drums", "Stem: vocals"]
    for call in api.calls_of("sendPhoto", "sendDocument", "sendMediaGroup"):
        assert call.chat_id == CHAT and call.params["reply_parameters"]["message_id"] == 4


def test_a_single_stem_goes_as_audio_and_stems_only_jobs_send_no_score(harness):
    shelf = Shelf({"stems/vocals.flac": b"f" * 1000})
    ticket = Ticket("job-2", CHAT, progress_message_id=5, reply_to_message_id=None, base_name="Песня")
    notes = harness.call(deliver_results(harness.app.bot, shelf, ticket, shelf.output(), upload_limit_bytes=10**6))
    assert notes == []
    (audio,) = harness.api.calls_of("sendAudio")
    assert audio.upload("audio") == ("Песня-vocals.flac", shelf.files["stems/vocals.flac"])
    assert "reply_parameters" not in audio.params
    assert not harness.api.calls_of("sendPhoto", "sendDocument", "sendMediaGroup")


def test_file_names():
    assert file_base_name('Autumn Leaves (live!)', "voice.ogg") == "Autumn-Leaves-live"
    assert file_base_name(None, "my tune.final.mp3") == "my-tune-final"
    assert file_base_name("Ünïcödé only ★", "x.ogg") == "Ünïcödé-only"
    assert file_base_name("Песня_№1", "x.ogg") == "Песня-1"
    assert file_base_name("★★★", "★.ogg") == "score"
    assert output_file_name("Tune", "notes.mid") == "Tune-performance.mid"
    assert output_file_name("Tune", "stems/bass.opus") == "Tune-bass.opus"
