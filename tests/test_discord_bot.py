"""The Discord bot against a fake Discord and a real Redis, without a worker.

Covers startup (intents, heartbeats, command sync), /help, autocomplete, the
server defaults, /status and /cancel, and the answer to every user-caused
failure; a job whose worker crashed gets an apology quoting the job id; late
results go to the channel with a mention, or by DM when the channel is closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time

import pytest
from rq.job import Job
from helpers.discord_fake import FakeDiscord
from helpers.discord_harness import (
    FAST_TIMINGS,
    PERM_MANAGE_GUILD,
    bot_settings,
    make_clip,
    restore_discord_endpoints,
    running_bot,
)

from stemscribe.bots.common import HELP_TEXT
from stemscribe.bots.discord.main import main, sync_commands
from stemscribe.worker.client import JobClient, Requester

MESSAGE_CONTENT_INTENT = 1 << 15
GUILDS_INTENT = 1 << 0
EPHEMERAL = 1 << 6


@pytest.fixture(autouse=True)
def _endpoints():
    with restore_discord_endpoints():
        yield


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 3 s and a 9 s flute clip (the long one exceeds the tests' 6 s cap)."""
    folder = tmp_path_factory.mktemp("clips")
    return {"short": make_clip(folder / "short.ogg", start_s=1.0, duration_s=3.0).read_bytes(),
            "long": make_clip(folder / "long.ogg", start_s=1.0, duration_s=9.0).read_bytes()}


def _requester(user: dict) -> Requester:
    """The JobClient's view of a Discord user (jobs_for looks at platform and user only)."""
    return Requester(platform="discord", user_id=user["id"], chat_id="")


def _option(name: str, value, kind: int = 3) -> dict:
    return {"name": name, "type": kind, "value": value}


async def _transcribe(fake: FakeDiscord, user: dict, filename: str, data: bytes, content_type: str | None,
                      options: list[dict] = (), **kwargs) -> dict:
    """Dispatch /transcribe with one attachment; returns the interaction payload."""
    attachment = fake.attachment(filename, data, content_type)
    payload = fake.slash("transcribe", user, [_option("file", attachment["id"], 11), *options],
                         attachments=[attachment], **kwargs)
    await fake.dispatch("INTERACTION_CREATE", payload)
    return payload


async def _final_text(fake: FakeDiscord, payload: dict, contains: str) -> str:
    """Wait for the edit of the original response that contains the text; returns its content."""
    call = await fake.wait_for(lambda c: c.method == "PATCH" and payload["token"] in c.path
                               and contains in ((c.json or {}).get("content") or ""), timeout=20)
    return call.json["content"]


async def _ephemeral_reply(fake: FakeDiscord, payload: dict) -> str:
    call = await fake.wait_for(lambda c: c.method == "POST" and f"/interactions/{payload['id']}/" in c.path)
    assert call.json["type"] == 4 and call.json["data"]["flags"] & EPHEMERAL
    return call.json["data"]["content"]


def _assert_deferred_first(fake: FakeDiscord, payload: dict) -> None:
    calls = fake.interaction_calls(payload)
    assert calls[0].method == "POST" and calls[0].path.endswith("/callback")
    assert calls[0].json["type"] == 5, "the command must be deferred (thinking) before any slow work"


def test_startup_sync_help_and_autocomplete(redis_url):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url)
            async with running_bot(fake, settings, JobClient(settings)):
                intents = fake.identify["intents"]
                assert intents & GUILDS_INTENT and not intents & MESSAGE_CONTENT_INTENT
                assert intents == GUILDS_INTENT, "only the guilds intent is needed"
                sync = fake.find("PUT", f"/applications/{fake.application_id}/guilds/{fake.guild_id}/commands")
                assert len(sync) == 1 and sync[0].status == 200
                commands = {(c["name"], c.get("type", 1)): c for c in sync[0].json}
                assert set(commands) == {("transcribe", 1), ("status", 1), ("cancel", 1), ("help", 1),
                                         ("defaults", 1), ("fix", 1), ("Transcribe", 3)}
                opts = {o["name"]: o for o in commands[("transcribe", 1)]["options"]}
                assert opts["file"]["type"] == 11 and opts["file"]["required"]
                assert [c["value"] for c in opts["mode"]["choices"]] == ["auto", "solo", "piano", "stems", "multitrack"]
                assert [c["value"] for c in opts["stems"]["choices"]] == ["yes", "no"]
                assert opts["instrument"]["autocomplete"] and opts["level"]["choices"]
                assert {s["name"] for s in commands[("defaults", 1)]["options"]} == {"show", "set", "clear"}

                user = fake.user_payload("ann")
                help_call = fake.slash("help", user)
                await fake.dispatch("INTERACTION_CREATE", help_call)
                text = await _ephemeral_reply(fake, help_call)
                assert "/transcribe" in text and HELP_TEXT.splitlines()[0] in text

                complete = fake.autocomplete("transcribe", user, [
                    {"name": "instrument", "type": 3, "value": "vio", "focused": True}])
                await fake.dispatch("INTERACTION_CREATE", complete)
                call = await fake.wait_for(lambda c: f"/interactions/{complete['id']}/" in c.path)
                assert call.json["type"] == 8
                values = [c["value"] for c in call.json["data"]["choices"]]
                assert "violin" in values and "viola" in values and "piano" not in values

                await asyncio.sleep(1.2)  # one heartbeat interval of the fake
                assert fake.heartbeats >= 2, "the client must heartbeat and get ACKs"
    asyncio.run(scenario())


def test_sync_command_global_and_guild(redis_url):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url)
            assert await sync_commands(settings) == 7
            assert await sync_commands(settings, guild_id=int(fake.guild_id)) == 7
            assert len(fake.find("PUT", f"/applications/{fake.application_id}/commands")) == 1
            assert len(fake.find("PUT", f"/applications/{fake.application_id}/guilds/{fake.guild_id}/commands")) == 1
            assert fake._ws is None, "sync uses REST only"
    asyncio.run(scenario())


def test_every_user_error_is_answered(redis_url, clips):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url, max_duration_s=6.0, max_input_bytes=200_000)
            jobs = JobClient(settings)
            async with running_bot(fake, settings, jobs) as bot:
                user = fake.user_payload("ann")
                cases = [
                    ("not audio", dict(filename="notes.txt", data=b"la la la", content_type="text/plain"),
                     "notes.txt is not an audio file"),
                    ("too big", dict(filename="big.wav", data=b"\0" * 300_000, content_type="audio/wav"),
                     "big.wav is 293 KB; this server takes files up to 195 KB"),
                    ("audio name, not audio", dict(filename="fake.mp3", data=b"this is not mp3" * 100,
                                                   content_type="audio/mpeg"), "fake.mp3 is not an audio file I can read"),
                    ("too long", dict(filename="long.ogg", data=clips["long"], content_type="audio/ogg"),
                     "long.ogg is 0:09 long; this server takes up to 0:06"),
                    ("bad instrument", dict(filename="a.ogg", data=clips["short"], content_type="audio/ogg",
                                            options=[_option("instrument", "kazoo")]),
                     "I don't know the instrument 'kazoo'"),
                    ("bad extra option", dict(filename="a.ogg", data=clips["short"], content_type="audio/ogg",
                                              options=[_option("more", "tempo:fast")]), "'fast' is not a tempo"),
                    ("option twice", dict(filename="a.ogg", data=clips["short"], content_type="audio/ogg",
                                          options=[_option("mode", "solo"), _option("more", "mode:piano")]),
                     "mode is given twice"),
                ]
                for _label, case, expected in cases:
                    payload = await _transcribe(fake, user, **case)
                    await _final_text(fake, payload, expected)
                    _assert_deferred_first(fake, payload)
                assert not jobs.jobs_for(_requester(user)), "nothing may be queued by a rejected request"

                # fairness caps come from the job client: queue full, rate limited, too many jobs
                for overrides, expected in (({"max_queue_length": 0}, "I'm busy"),
                                            ({"max_jobs_per_user": 0}, "You already have 0 recordings"),):
                    bot.jobs = JobClient(dataclasses.replace(settings, **overrides))
                    payload = await _transcribe(fake, user, "a.ogg", clips["short"], "audio/ogg")
                    await _final_text(fake, payload, expected)
                bot.jobs = JobClient(dataclasses.replace(settings, rate_limit_jobs=1))
                first = await _transcribe(fake, user, "a.ogg", clips["short"], "audio/ogg")
                await _final_text(fake, first, "Queued")
                second = await _transcribe(fake, user, "b.ogg", clips["short"], "audio/ogg")
                text = await _final_text(fake, second, "You have sent 1 recordings")
                assert "next one in" in text

                # the message menu on a message without audio
                attachment = fake.attachment("photo.png", b"\x89PNG....", "image/png")
                menu = fake.message_menu("Transcribe", user, [attachment])
                await fake.dispatch("INTERACTION_CREATE", menu)
                await _final_text(fake, menu, "That message has no audio attachments.")
    asyncio.run(scenario())


def test_defaults_need_manage_server_and_apply(redis_url, clips):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url)
            jobs = JobClient(settings)
            async with running_bot(fake, settings, jobs):
                member, admin = fake.user_payload("ann"), fake.user_payload("boss")
                denied = fake.slash("defaults", member, [_option("mode", "piano")], subcommand="set")
                await fake.dispatch("INTERACTION_CREATE", denied)
                assert await _ephemeral_reply(fake, denied) == "You need the Manage Server permission to do that."

                bad = fake.slash("defaults", admin, [_option("more", "level:hard")], subcommand="set",
                                 permissions=PERM_MANAGE_GUILD)
                await fake.dispatch("INTERACTION_CREATE", bad)
                assert "'hard' is not a valid level" in await _ephemeral_reply(fake, bad)

                ok = fake.slash("defaults", admin, [_option("mode", "piano"), _option("more", "chords:no")],
                                subcommand="set", permissions=PERM_MANAGE_GUILD)
                await fake.dispatch("INTERACTION_CREATE", ok)
                assert await _ephemeral_reply(fake, ok) == "Saved. Server defaults: mode:piano chords:no"
                assert jobs.load_defaults(f"discord:guild:{fake.guild_id}") == {"mode": "piano", "chords": "no"}

                show = fake.slash("defaults", member, subcommand="show")
                await fake.dispatch("INTERACTION_CREATE", show)
                assert await _ephemeral_reply(fake, show) == "Server defaults: mode:piano chords:no"

                # a member's /transcribe starts from the server defaults
                payload = await _transcribe(fake, member, "tune.ogg", clips["short"], "audio/ogg",
                                            [_option("title", "Banks")])
                await _final_text(fake, payload, "Queued")
                [job] = jobs.jobs_for(_requester(member))
                request = Job.fetch(job.job_id, connection=jobs.redis).args[0]
                assert request["options"]["mode"] == "piano" and request["options"]["chords"] is False
                assert request["options"]["title"] == "Banks"

                clear = fake.slash("defaults", admin, subcommand="clear", permissions=PERM_MANAGE_GUILD)
                await fake.dispatch("INTERACTION_CREATE", clear)
                assert await _ephemeral_reply(fake, clear) == "Server defaults cleared."
                assert jobs.load_defaults(f"discord:guild:{fake.guild_id}") == {}
    asyncio.run(scenario())


def test_status_and_cancel(redis_url, clips):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url)
            jobs = JobClient(settings)
            async with running_bot(fake, settings, jobs):
                user = fake.user_payload("ann")
                status = fake.slash("status", user)
                await fake.dispatch("INTERACTION_CREATE", status)
                assert await _ephemeral_reply(fake, status) == "You have no transcriptions queued or running."
                cancel = fake.slash("cancel", user)
                await fake.dispatch("INTERACTION_CREATE", cancel)
                assert await _ephemeral_reply(fake, cancel) == "You have nothing queued or running."

                payload = await _transcribe(fake, user, "tune.ogg", clips["short"], "audio/ogg")
                queued = await _final_text(fake, payload, "Queued")
                [job] = jobs.jobs_for(_requester(user))
                assert f"Job `{job.job_id}`" in queued

                status = fake.slash("status", user)
                await fake.dispatch("INTERACTION_CREATE", status)
                text = await _ephemeral_reply(fake, status)
                assert job.job_id in text and "Queued" in text

                other = fake.slash("cancel", fake.user_payload("mallory"), [_option("job", job.job_id)])
                await fake.dispatch("INTERACTION_CREATE", other)
                assert "it is not yours" in await _ephemeral_reply(fake, other)

                cancel = fake.slash("cancel", user)
                await fake.dispatch("INTERACTION_CREATE", cancel)
                assert await _ephemeral_reply(fake, cancel) == f"Cancelling job `{job.job_id}`."
                # the watcher sees the cancelled job and says so in the original response
                await _final_text(fake, payload, "Cancelled.")
    asyncio.run(scenario())


class _CrashedWorkerJobs(JobClient):
    """A real JobClient whose jobs read as failed by an unexpected exception in the worker."""

    def status(self, job_id, **kwargs):
        real = super().status(job_id, **kwargs)
        return dataclasses.replace(real, state="failed", error={
            "type": "ZeroDivisionError", "message": "division by zero", "hint": None, "user_error": False})


def test_worker_bug_is_an_apology_with_the_job_id(redis_url, clips):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url)
            jobs = _CrashedWorkerJobs(settings)
            async with running_bot(fake, settings, jobs):
                user = fake.user_payload("ann")
                payload = await _transcribe(fake, user, "tune.ogg", clips["short"], "audio/ogg")
                text = await _final_text(fake, payload, "Sorry")
                [job] = jobs.jobs_for(_requester(user))
                assert text == (f"Sorry, something went wrong on my side while writing your score "
                                f"(reference: {job.job_id}). It has been logged.")
                assert "division" not in text
    asyncio.run(scenario())


class _CrashesLater(_CrashedWorkerJobs):
    """Jobs look queued until fail_after (monotonic time), then read as crashed."""

    fail_after = float("inf")

    def status(self, job_id, **kwargs):
        if time.monotonic() < self.fail_after:
            return JobClient.status(self, job_id, **kwargs)
        return super().status(job_id, **kwargs)


def test_late_failure_goes_to_channel_then_dm(redis_url, clips):
    """After the token expired the answer goes to the channel; where the bot may not post, by DM."""
    async def scenario():
        async with FakeDiscord() as fake:
            fake.token_lifetime_s = 1.0
            settings = bot_settings(fake, redis_url)
            jobs = _CrashesLater(settings)
            timings = dataclasses.replace(FAST_TIMINGS, token_lifetime_s=1.0, token_margin_s=0.0)
            async with running_bot(fake, settings, jobs, timings=timings):
                user = fake.user_payload("ann")
                jobs.fail_after = time.monotonic() + 2.0
                payload = await _transcribe(fake, user, "tune.ogg", clips["short"], "audio/ogg")
                call = await fake.wait_for(lambda c: c.method == "POST"
                                           and c.path == f"/channels/{fake.channel_id}/messages")
                assert call.json["content"].startswith(f"<@{user['id']}> Sorry, something went wrong")
                assert [str(u) for u in call.json["allowed_mentions"]["users"]] == [user["id"]]
                assert not [c for c in fake.interaction_calls(payload) if c.status >= 400], \
                    "the bot must stop using the token before Discord refuses it"

                fake.forbidden_channels.add(fake.channel_id)
                jobs.fail_after = time.monotonic() + 2.0
                await _transcribe(fake, user, "tune.ogg", clips["short"], "audio/ogg")
                dm = await fake.wait_for(lambda c: c.method == "POST" and c.path == "/users/@me/channels")
                assert str(dm.json["recipient_id"]) == user["id"]
                dm_id = fake.dm_channels[user["id"]]
                sent = await fake.wait_for(lambda c: c.method == "POST" and c.path == f"/channels/{dm_id}/messages")
                assert sent.json["content"].startswith(f"I could not post in <#{fake.channel_id}>")
                assert "Sorry, something went wrong" in sent.json["content"]
                refused = fake.find("POST", f"/channels/{fake.channel_id}/messages")[-1]
                assert refused.status == 403
    asyncio.run(scenario())


def test_cli_sync_and_bad_arguments(redis_url, tmp_path):
    """`stemscribe discord sync --guild ID` works against the fake; missing token or bad id exit 2."""
    async def scenario():
        async with FakeDiscord() as fake:
            config = tmp_path / "stemscribe.env"
            config.write_text(f"STEMSCRIBE_DISCORD_TOKEN={fake.token}\nSTEMSCRIBE_DISCORD_API_BASE={fake.api_base}\n"
                              f"STEMSCRIBE_REDIS_URL={redis_url}\n")
            env = {k: v for k, v in os.environ.items() if not k.startswith("STEMSCRIBE_")}
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stemscribe", "--config", str(config), "discord", "sync", "--guild",
                fake.guild_id, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, out.decode()
            assert f"Synced 7 commands to server {fake.guild_id}." in out.decode()
            assert fake.find("PUT", f"/applications/{fake.application_id}/guilds/{fake.guild_id}/commands")
    asyncio.run(scenario())

    env = {k: v for k, v in os.environ.items() if not k.startswith("STEMSCRIBE_")}
    no_token = subprocess.run([sys.executable, "-m", "stemscribe", "discord"], env=env, capture_output=True,
                              text=True, timeout=60)
    assert no_token.returncode == 2 and "no bot token" in no_token.stderr
    bad_guild = subprocess.run([sys.executable, "-m", "stemscribe", "discord", "sync", "--guild", "my-server"],
                               env={**env, "STEMSCRIBE_DISCORD_TOKEN": "x"}, capture_output=True, text=True,
                               timeout=60)
    assert bad_guild.returncode == 2 and "--guild must be a server id" in bad_guild.stderr


def test_main_takes_argv(monkeypatch, tmp_path, capsys):
    for key in [k for k in os.environ if k.startswith("STEMSCRIBE_")]:
        monkeypatch.delenv(key)
    assert main(["run"]) == 2 and "no bot token" in capsys.readouterr().err
    config = tmp_path / "bad.toml"
    config.write_text("[stemscribe]\nmax_input_bytes = 'lots'\n")
    assert main(["--config", str(config)]) == 2 and "bad settings" in capsys.readouterr().err


def test_message_menu_with_several_recordings_makes_one_multitrack_job(redis_url, clips):
    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url)
            jobs = JobClient(settings)
            async with running_bot(fake, settings, jobs):
                user = fake.user_payload("ann")
                attachments = [fake.attachment("flute.ogg", clips["short"], "audio/ogg"),
                               fake.attachment("cover.jpg", b"\xff\xd8\xff", "image/jpeg"),
                               fake.attachment("fiddle.ogg", clips["short"], None)]  # no type: judged by ending
                menu = fake.message_menu("Transcribe", user, attachments)
                await fake.dispatch("INTERACTION_CREATE", menu)
                await _final_text(fake, menu, "Queued")
                _assert_deferred_first(fake, menu)
                [job] = jobs.jobs_for(_requester(user))
                request = Job.fetch(job.job_id, connection=jobs.redis).args[0]
                assert request["options"]["mode"] == "multitrack"
                assert request["titles"] == ["flute.ogg", "fiddle.ogg"]
    asyncio.run(scenario())
