"""Result delivery to Telegram: page previews and stems as media groups, upload-limit notes, file names,
flood control, skipping what an earlier attempt posted.

The worker cannot separate stems without demucs weights, so these tests hand
deliver_results a finished job's files directly (a small in-memory shelf with
JobClient's fetch_artifact signature) and watch what the fake Bot API receives
from the real python-telegram-bot Bot.
"""

from __future__ import annotations

import pytest

from helpers.telegram_fake import TOKEN, UPLOAD_METHODS, BotHarness
from stemscribe.bots.common import summary_line
from stemscribe.bots.telegram.app import build_application
from stemscribe.bots.telegram.delivery import Ticket, deliver_results, file_base_name, output_file_name
from stemscribe.settings import load_settings
from stemscribe.worker.client import Artifact, JobOutput

CHAT = 4242
SUMMARY = {"mode": "stems", "mode_requested": "stems", "tempo_bpm": 96.2, "time_signature": "4/4",
           "key": "Eb major", "bars": 12}
#: A three-page score's result.json (as core writes it) and its files.
PAGES_SUMMARY = {"mode": "piano", "mode_requested": "piano", "tempo_bpm": 120, "time_signature": "4/4",
                 "key": "C major", "bars": 105, "pages": 3,
                 "files": ["score.pdf", "preview.png", "preview-2.png", "preview-3.png", "score.ly", "score.musicxml",
                           "score.mid", "notes.mid", "result.json"]}
PAGES_FILES = {"preview.png": b"\x89PNG page 1", "preview-2.png": b"\x89PNG page 2", "preview-3.png": b"\x89PNG page 3",
               "score.pdf": b"%PDF three pages", "score.musicxml": b"<score-partwise/>", "score.mid": b"MThd score",
               "notes.mid": b"MThd performance", "score.ly": b"never sent", "result.json": b"{}"}


class Shelf:
    """A finished job's files by name, served like JobClient.fetch_artifact."""

    def __init__(self, files: dict[str, bytes], summary: dict = SUMMARY) -> None:
        self.files = files
        self.summary = summary
        self.fetched: list[str] = []

    def fetch_artifact(self, job_id: str, name: str) -> bytes:
        self.fetched.append(name)
        return self.files[name]

    def undelivered(self, platform: str) -> list:
        """No job is waiting for delivery (the bot asks at startup)."""
        return []

    def output(self) -> JobOutput:
        return JobOutput(summary=self.summary,
                         artifacts=[Artifact(n, "file", len(d)) for n, d in self.files.items()])


class Steps:
    """Stands in for a loaded bots.deliveries.Progress: what earlier attempts posted, and each message recorded."""

    def __init__(self, earlier: set[str] = frozenset()) -> None:
        self.earlier_files = frozenset(earlier)
        self.recorded: list[list[str]] = []

    async def posted(self, artifacts) -> None:
        self.recorded.append(list(artifacts))


@pytest.fixture
def harness():
    def build(base_url: str, base_file_url: str):
        settings = load_settings(env={}, telegram_token=TOKEN, telegram_base_url=base_url,
                                 telegram_base_file_url=base_file_url)
        return build_application(settings, client=Shelf({}))

    with BotHarness(build) as running:
        yield running


def deliver(harness, shelf: Shelf, *, limit: int, progress: Steps | None = None) -> list[str]:
    ticket = Ticket("job-1", CHAT, progress_message_id=5, reply_to_message_id=4, base_name="My-Song")
    return harness.call(deliver_results(harness.app.bot, shelf, ticket, shelf.output(), upload_limit_bytes=limit,
                                        progress=progress))


def uploads(api) -> list:
    """Every upload call that reached the chat, in order."""
    return [c for c in api.calls_of(*UPLOAD_METHODS) if c.status == 200]


def test_stems_arrive_as_one_media_group_and_oversize_files_become_notes(harness):
    shelf = Shelf({"preview.png": b"\x89PNG" + b"p" * 500, "score.pdf": b"%PDF" + b"d" * 500,
                   "score.musicxml": b"<score-partwise/>", "score.mid": b"MThd" + b"m" * 50,
                   "stems/bass.opus": b"b" * 300, "stems/drums.opus": b"d" * 300, "stems/vocals.opus": b"v" * 300,
                   "stems/other.opus": b"o" * 5000})
    api = harness.api
    harness.api.fail_next("sendMediaGroup", retry_after_s=1)
    notes = deliver(harness, shelf, limit=4000)
    assert notes == ["My-Song-other.opus is 5 KB, over Telegram's 4 KB upload limit, so I could not send it. "
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


def test_later_pages_follow_the_first_as_one_album_before_the_score_files(harness):
    shelf = Shelf(dict(PAGES_FILES), summary=PAGES_SUMMARY)
    steps = Steps()
    assert deliver(harness, shelf, limit=10**6, progress=steps) == []
    posted = uploads(harness.api)
    assert [c.method for c in posted] == ["sendPhoto", "sendMediaGroup"] + ["sendDocument"] * 4
    photo, album, *documents = posted
    assert photo.upload("photo") == ("My-Song-preview.png", b"\x89PNG page 1")
    assert photo.params["caption"] == summary_line(PAGES_SUMMARY)
    assert photo.params["caption"].endswith("105 bars · 3 pages"), "the caption says more pages follow"
    media = album.params["media"]
    assert [m["type"] for m in media] == ["photo", "photo"]
    assert [album.upload(m["media"]) for m in media] == [("My-Song-preview-2.png", b"\x89PNG page 2"),
                                                         ("My-Song-preview-3.png", b"\x89PNG page 3")]
    assert [m["caption"] for m in media] == ["Page 2 of 3", "Page 3 of 3"]
    assert [c.upload("document")[0] for c in documents] == [
        "My-Song.pdf", "My-Song.musicxml", "My-Song.mid", "My-Song-performance.mid"]
    for call in posted:
        assert call.chat_id == CHAT and call.params["reply_parameters"]["message_id"] == 4
    # One step per message: the album's step carries both of its pages.
    assert steps.recorded == [["preview.png"], ["preview-2.png", "preview-3.png"], ["score.pdf"],
                              ["score.musicxml"], ["score.mid"], ["notes.mid"]]


def test_a_resumed_delivery_does_not_post_pages_again(harness):
    shelf = Shelf(dict(PAGES_FILES), summary=PAGES_SUMMARY)
    steps = Steps({"preview.png", "preview-2.png", "preview-3.png", "score.pdf"})
    deliver(harness, shelf, limit=10**6, progress=steps)
    assert [c.upload("document")[0] for c in uploads(harness.api)] == [
        "My-Song.musicxml", "My-Song.mid", "My-Song-performance.mid"]
    assert not harness.api.calls_of("sendPhoto", "sendMediaGroup")
    assert not {"preview.png", "preview-2.png", "preview-3.png"} & set(shelf.fetched)
    assert steps.recorded == [["score.musicxml"], ["score.mid"], ["notes.mid"]]


def test_pages_telegram_refuses_as_photos_go_as_documents(harness):
    harness.api.refuse_photos = True
    shelf = Shelf(dict(PAGES_FILES), summary=PAGES_SUMMARY)
    steps = Steps()
    deliver(harness, shelf, limit=10**6, progress=steps)
    first, album = [c for c in uploads(harness.api)][:2]
    assert (first.method, first.upload("document")[0]) == ("sendDocument", "My-Song-preview.png")
    assert [m["type"] for m in album.params["media"]] == ["document", "document"]
    assert [m["caption"] for m in album.params["media"]] == ["Page 2 of 3", "Page 3 of 3"]
    assert steps.recorded[:2] == [["preview.png"], ["preview-2.png", "preview-3.png"]]


def test_eleven_later_pages_go_as_an_album_of_ten_then_a_photo(harness):
    files = {"preview.png": b"p1", **{f"preview-{n}.png": f"p{n}".encode() for n in range(2, 13)},
             "score.pdf": b"%PDF"}
    shelf = Shelf(files, summary={"mode": "piano", "pages": 12})
    steps = Steps()
    deliver(harness, shelf, limit=10**6, progress=steps)
    posted = uploads(harness.api)
    assert [c.method for c in posted] == ["sendPhoto", "sendMediaGroup", "sendPhoto", "sendDocument"]
    album, last_page = posted[1], posted[2]
    assert [album.upload(m["media"])[0] for m in album.params["media"]] == [
        f"My-Song-preview-{n}.png" for n in range(2, 12)]
    assert (last_page.upload("photo"), last_page.params["caption"]) == (("My-Song-preview-12.png", b"p12"),
                                                                       "Page 12 of 12")
    assert steps.recorded[1] == [f"preview-{n}.png" for n in range(2, 12)] and steps.recorded[2] == ["preview-12.png"]


def test_summary_counts_pages_and_says_when_the_pdf_has_more_than_the_previews():
    assert summary_line({"mode": "solo", "bars": 8, "pages": 1}) == "Solo · 8 bars"
    assert summary_line(PAGES_SUMMARY) == "Piano reduction · 120 bpm · 4/4 · C major · 105 bars · 3 pages"
    capped = {"mode": "solo", "bars": 400, "pages": 14, "user_notes": ["Tempo guessed."],
              "files": ["score.pdf", "preview.png", *[f"preview-{n}.png" for n in range(2, 11)], "result.json"]}
    assert summary_line(capped) == ("Solo · 400 bars · 14 pages\n"
                                    "The previews show the first 10 pages; the PDF has all 14.\nTempo guessed.")
