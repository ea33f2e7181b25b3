"""The Telegram bot against a fake Bot API server and a real Redis, without a worker.

Covers what users see for commands, /settings, group etiquette, every refusal
that happens before a job runs (wrong file, too large, too long, bad option,
rate limit, queue full), queued-job /status and /cancel, flood control, and the
apology for an unexpected error. Jobs stay queued here because no worker runs;
tests/test_telegram_e2e.py runs real jobs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from rq.job import Job

from helpers.telegram_fake import (
    BOT_USERNAME,
    DEVSET_FLUTE,
    TOKEN,
    BotHarness,
    callback_update,
    cut_clip,
    make_user,
    message_update,
)
from stemscribe.bots.telegram.app import build_application
from stemscribe.settings import load_settings
from stemscribe.worker.client import JobClient, Requester

DEVSET = Path(__file__).resolve().parents[1].parent / "shared" / "devset"
ALICE, BOB = make_user(111, "Alice"), make_user(222, "Bob")
GROUP = -1001


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    """Three seconds of solo flute as an Ogg/Opus voice note."""
    return cut_clip(str(DEVSET / DEVSET_FLUTE), str(tmp_path_factory.mktemp("tg") / "clip.ogg"), seconds=3)


@pytest.fixture
def start_bot(redis_url):
    """Factory: start the real bot (with settings overrides) against a fresh fake server."""
    harnesses = []

    def start(**overrides) -> BotHarness:
        def build(base_url: str, base_file_url: str):
            settings = load_settings(env={}, redis_url=redis_url, telegram_token=TOKEN, telegram_base_url=base_url,
                                     telegram_base_file_url=base_file_url, **overrides)
            return build_application(settings, client=JobClient(settings))

        harness = BotHarness(build).__enter__()
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        harness.__exit__(None, None, None)


def voice(api, data: bytes, *, duration: int = 3, declared_size: int | None = None) -> dict:
    file_id, size = api.add_file(data, declared_size=declared_size)
    return {"file_id": file_id, "file_unique_id": file_id + "u", "duration": duration, "mime_type": "audio/ogg",
            "file_size": size}


def sent_texts(api, chat_id: int) -> list[str]:
    return [c.params["text"] for c in api.calls_of("sendMessage", chat_id=chat_id) if c.status == 200]


def last_text_containing(fragment: str, chat_id: int):
    return lambda api: next((t for t in reversed(api.texts_to(chat_id)) if fragment in t), None)


def test_start_help_and_command_menu(start_bot):
    bot = start_bot()
    api = bot.api
    commands = api.wait_for(lambda a: a.calls_of("setMyCommands"))[0].params["commands"]
    assert {c["command"] for c in commands} == {"start", "help", "transcribe", "settings", "status", "cancel", "fix"}
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], text="/start"))
    start = api.wait_for(last_text_containing("Send me a recording", ALICE["id"]))
    assert "/settings" in start and "mode:piano" in start
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], text="/help"))
    help_text = api.wait_for(last_text_containing("Examples", ALICE["id"]))
    assert "stems:yes" in help_text and "/transcribe" in help_text
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], text="what do I do?"))
    api.wait_for(last_text_containing("Send me a recording (voice note", ALICE["id"]))


def test_refusals_before_download(start_bot):
    bot = start_bot(max_duration_s=60.0)
    api = bot.api
    # A PDF sent as a document is not a recording.
    pdf_id, pdf_size = api.add_file(b"%PDF-1.4 not audio")
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], document={
        "file_id": pdf_id, "file_unique_id": "u1", "file_name": "chords.pdf", "mime_type": "application/pdf",
        "file_size": pdf_size}))
    text = api.wait_for(last_text_containing("chords.pdf", ALICE["id"]))
    assert text == ("chords.pdf is not a recording I can read. Send a voice note, an audio file "
                    "(MP3, WAV, FLAC, OGG, M4A) or a video with sound.")
    # Telegram reports 25 MB: over the 20 MB bot download limit, refused without downloading.
    big = voice(api, b"x", declared_size=25 * 1024 * 1024)
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], voice=big))
    text = api.wait_for(last_text_containing("download files up to", ALICE["id"]))
    assert "Telegram lets bots download files up to 20 MB, and voice-note.ogg is 25 MB." in text
    # An hour-long voice note is over max_duration_s, judged from Telegram's metadata.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], voice=voice(api, b"x", duration=3600)))
    text = api.wait_for(last_text_containing("long", ALICE["id"]))
    assert text.startswith("voice-note.ogg is 1:00:00 long; I accept up to 1:00.")
    # Stickers have no sound.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], sticker={
        "file_id": "s1", "file_unique_id": "s1u", "type": "regular", "width": 512, "height": 512,
        "is_animated": False, "is_video": False}))
    api.wait_for(last_text_containing("Pictures, stickers and GIFs have no sound", ALICE["id"]))
    assert not api.calls_of("getFile"), "nothing may be downloaded for a refused file"
    assert not api.calls_of("editMessageText"), "refusals are plain answers, no progress message"


def test_local_bot_api_server_lifts_the_download_limit(start_bot):
    bot = start_bot(telegram_local_mode=True, max_input_bytes=30 * 1024 * 1024)
    api = bot.api
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"],
                                   voice=voice(api, b"x", declared_size=25 * 1024 * 1024)))
    ack = api.wait_for(last_text_containing("Got your voice note", ALICE["id"]))
    assert ack == "Got your voice note (0:03). Fetching it…"
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"],
                                   voice=voice(api, b"x", declared_size=40 * 1024 * 1024)))
    text = api.wait_for(last_text_containing("this server takes files up to", ALICE["id"]))
    assert text.startswith("voice-note.ogg is 40 MB; this server takes files up to 30 MB.")


def test_local_bot_api_server_files_are_read_from_its_disk(start_bot, clip, tmp_path):
    bot = start_bot(telegram_local_mode=True, max_input_bytes=30 * 1024 * 1024)
    api = bot.api
    api.local_dir = tmp_path
    # Telegram reports 25 MB (over the public 20 MB cap); the bytes come from the server's disk.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"],
                                   voice=voice(api, clip, declared_size=25 * 1024 * 1024)))
    api.wait_for(last_text_containing("Queued", ALICE["id"]))
    assert not api.downloads, "nothing is downloaded over HTTP in local mode"


def test_bad_option_words(start_bot, clip):
    bot = start_bot()
    api = bot.api
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], caption="mode:pianno", voice=voice(api, clip)))
    refusal = api.wait_for(last_text_containing("mode", ALICE["id"]))
    assert refusal == "'pianno' is not a valid mode. Did you mean piano?"
    # One key:value word makes the whole caption options, parsed strictly.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], caption="my song mode:piano",
                                   voice=voice(api, clip)))
    text = api.wait_for(last_text_containing("understand", ALICE["id"]))
    assert text.startswith("I don't understand 'my'. Options look like key:value")
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], caption="tempo:1000", voice=voice(api, clip)))
    api.wait_for(last_text_containing("A tempo of 1000 is out of range.", ALICE["id"]))
    # A caption that would be a title but is too long says why it was read as a title.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], caption="la " * 50, voice=voice(api, clip)))
    text = api.wait_for(last_text_containing("caption as the score", ALICE["id"]))
    assert text == ("I took your caption as the score's title, but the title is too long (149 characters). "
                    "Keep it under 120.")
    assert not api.calls_of("getFile")


def test_private_caption_without_option_words_is_the_title(start_bot, clip, redis_url):
    bot = start_bot()
    api = bot.api
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], caption="my song for tonight: don't laugh",
                                   voice=voice(api, clip)))
    ack = api.wait_for(last_text_containing("Got your", ALICE["id"]))
    assert ack == ('Got your voice note (0:03). I\'ll title the score "my song for tonight: don\'t laugh" '
                   "(options go as key:value words, e.g. mode:piano). Fetching it…")
    api.wait_for(last_text_containing("Queued", ALICE["id"]))
    client = JobClient(load_settings(env={}, redis_url=redis_url))
    [job] = client.jobs_for(Requester("telegram", str(ALICE["id"]), str(ALICE["id"])))
    request = Job.fetch(job.job_id, connection=client.redis).args[0]
    assert request["options"]["title"] == "my song for tonight: don't laugh"
    assert job.requester.reply["base_name"] == "my-song-for-tonight-don-t-laugh"
    # In a group the caption must address the bot, and what follows is options, parsed strictly.
    api.push_update(message_update(user=ALICE, chat_id=GROUP, caption=f"@{BOT_USERNAME} my song",
                                   voice=voice(api, clip)))
    assert api.wait_for(last_text_containing("understand", GROUP)).startswith("I don't understand 'my'.")


def test_group_etiquette(start_bot, clip):
    bot = start_bot()
    api = bot.api
    audio = voice(api, clip)
    api.push_update(message_update(user=ALICE, chat_id=GROUP, text="nice gig yesterday"))
    api.push_update(message_update(user=ALICE, chat_id=GROUP, voice=audio))
    api.push_update(message_update(user=ALICE, chat_id=GROUP, caption="listen to this", voice=audio))
    # A marker: the bot answers this one, so everything before it has been processed.
    api.push_update(message_update(user=ALICE, chat_id=GROUP, text="/transcribe"))
    usage = api.wait_for(last_text_containing("Reply to a voice note", GROUP))
    assert sent_texts(api, GROUP) == [usage], "chatter and unaddressed recordings must be ignored"
    # /transcribe replying to a message without audio.
    chatter = message_update(user=BOB, chat_id=GROUP, text="hello")["message"]
    api.push_update(message_update(user=ALICE, chat_id=GROUP, text="/transcribe", reply_to=chatter))
    api.wait_for(last_text_containing("That message has no recording", GROUP))
    # Addressed by mention in a caption: options after the mention are parsed (and here refused).
    api.push_update(message_update(user=ALICE, chat_id=GROUP, caption=f"@{BOT_USERNAME} level:hard", voice=audio))
    assert api.wait_for(last_text_containing("level", GROUP)) == "'hard' is not a valid level. Use level:easy|full."
    # Addressed by /transcribe@bot replying to a recording: the command's words are the options.
    recording = message_update(user=BOB, chat_id=GROUP, voice=audio)["message"]
    api.push_update(message_update(user=ALICE, chat_id=GROUP, text=f"/transcribe@{BOT_USERNAME} key:H",
                                   reply_to=recording))
    api.wait_for(last_text_containing("'H' is not a key.", GROUP))


def test_fairness_caps_status_and_cancel(start_bot, clip, redis_url):
    bot = start_bot(rate_limit_jobs=2, max_jobs_per_user=5, max_jobs_per_chat=5, max_queue_length=2)
    api = bot.api
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], voice=voice(api, clip)))
    queued = api.wait_for(last_text_containing("Queued", ALICE["id"]))
    assert queued == "Queued: starting shortly."
    ack = next(c for c in api.calls_of("sendMessage", chat_id=ALICE["id"]) if "Got your voice note" in c.params["text"])
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], voice=voice(api, clip)))
    api.wait_for(last_text_containing("number 2 in line", ALICE["id"]))
    # Third upload within the window: rate limited. The acknowledgement becomes the refusal.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], voice=voice(api, clip)))
    refusal = api.wait_for(last_text_containing("recordings in the last", ALICE["id"]))
    assert refusal.startswith("You have sent 2 recordings in the last")
    # Someone else now finds the queue full.
    api.push_update(message_update(user=BOB, chat_id=BOB["id"], voice=voice(api, clip)))
    assert api.wait_for(last_text_containing("I'm busy", BOB["id"])).startswith(
        "I'm busy: 2 recordings are waiting, so you would be number 3 in line.")
    # /status lists Alice's two queued jobs and nothing of Bob's.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], text="/status"))
    status = api.wait_for(last_text_containing("Your jobs", ALICE["id"]))
    assert status.count("Queued") == 2 and "number 2 in line" in status
    api.push_update(message_update(user=BOB, chat_id=BOB["id"], text="/status"))
    api.wait_for(last_text_containing("You have no jobs running", BOB["id"]))
    # Bob cannot cancel Alice's job by id; Alice cancels all of hers and both progress messages say so.
    job_id = status.splitlines()[1].split(":")[0]
    api.push_update(message_update(user=BOB, chat_id=BOB["id"], text=f"/cancel {job_id}"))
    api.wait_for(last_text_containing("Nothing to cancel", BOB["id"]))
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], text="/cancel"))
    assert api.wait_for(last_text_containing("Cancelling", ALICE["id"])).startswith("Cancelling 2 jobs: ")
    api.wait_for(lambda a: sum(1 for t in a.texts_to(ALICE["id"]) if t == "Cancelled.") == 2)
    first_progress = [c for c in api.calls_of("editMessageText", chat_id=ALICE["id"])
                      if int(c.params["message_id"]) == ack.result["message_id"]]
    assert [c.params["text"] for c in first_progress] == ["Queued: starting shortly.", "Cancelled."]


def test_settings_keyboard_saves_defaults(start_bot, clip, redis_url):
    bot = start_bot(max_duration_s=600.0, max_duration_stems_s=2.0)
    api = bot.api
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], text="/settings"))
    shown = api.wait_for(lambda a: [c for c in a.calls_of("sendMessage", chat_id=ALICE["id"])
                                    if "reply_markup" in c.params])[0]
    rows = shown.params["reply_markup"]["inline_keyboard"]
    assert [b["text"] for b in rows[0]] == ["✅ auto", "solo", "piano", "stems"]
    settings_message = {"message_id": 77, "date": 0, "chat": {"id": ALICE["id"], "type": "private"},
                        "text": shown.params["text"]}
    # Bob pressing Alice's keyboard changes nothing.
    api.push_update(callback_update(user=BOB, message=settings_message, data=rows[0][3]["callback_data"]))
    refused = api.wait_for(lambda a: a.calls_of("answerCallbackQuery"))[0]
    assert "someone else's settings" in refused.params["text"]
    api.push_update(callback_update(user=ALICE, message=settings_message, data=rows[0][3]["callback_data"]))
    saved = api.wait_for(lambda a: [c for c in a.calls_of("answerCallbackQuery") if "Saved" in c.params["text"]])
    assert saved[0].params["text"] == "Saved: mode:stems"
    redraw = api.wait_for(lambda a: a.calls_of("editMessageText", chat_id=ALICE["id"]))[-1]
    assert [b["text"] for b in redraw.params["reply_markup"]["inline_keyboard"][0]] == ["auto", "solo", "piano",
                                                                                        "✅ stems"]
    settings = load_settings(env={}, redis_url=redis_url)
    assert JobClient(settings).load_defaults("telegram:user:111") == {"mode": "stems"}
    # The saved mode:stems applies to a caption-less voice note: the stems length limit (2 s) refuses 3 s.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], voice=voice(api, clip, duration=3)))
    assert "when separating stems" in api.wait_for(last_text_containing("long", ALICE["id"]))
    # A caption still overrides the default, and Bob's defaults are untouched.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], caption="mode:solo", voice=voice(api, clip)))
    api.wait_for(last_text_containing("Queued", ALICE["id"]))
    reset = rows[-1][0]["callback_data"]
    api.push_update(callback_update(user=ALICE, message=settings_message, data=reset))
    api.wait_for(lambda a: [c for c in a.calls_of("answerCallbackQuery") if "Back to the defaults" in c.params["text"]])
    assert JobClient(settings).load_defaults("telegram:user:111") == {}
    assert JobClient(settings).load_defaults("telegram:user:222") == {}


def test_flood_control_retry_after(start_bot):
    bot = start_bot()
    api = bot.api
    api.fail_next("sendMessage", retry_after_s=1)
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], text="/start"))
    api.wait_for(last_text_containing("Send me a recording", ALICE["id"]))
    refused, delivered = api.calls_of("sendMessage", chat_id=ALICE["id"])
    assert (refused.status, delivered.status) == (429, 200)
    assert refused.params["text"] == delivered.params["text"], "the same message is sent again"
    assert delivered.at - refused.at >= 1.0, "the bot waited as long as Telegram asked"


def test_unexpected_error_gets_an_apology_and_a_logged_traceback(start_bot, caplog):
    bot = start_bot()
    api = bot.api
    # Telegram metadata names a file that getFile does not know: a BadRequest nobody expects.
    ghost = {"file_id": "no-such-file", "file_unique_id": "g", "duration": 3, "mime_type": "audio/ogg",
             "file_size": 1000}
    with caplog.at_level(logging.ERROR, logger="stemscribe.bots.telegram.app"):
        update_id = api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], voice=ghost))
        apology = api.wait_for(last_text_containing("Sorry", ALICE["id"]))
    assert apology == (f"Sorry, something went wrong on my side while writing your score (reference: "
                       f"update-{update_id}). It has been logged.")
    # The acknowledgement itself became the apology: no stale "Fetching it…" is left behind.
    assert len(api.calls_of("sendMessage", chat_id=ALICE["id"])) == 1
    record = next(r for r in caplog.records if f"update-{update_id}" in r.getMessage())
    assert record.exc_info and "invalid file_id" in str(record.exc_info[1].__cause__).lower()
