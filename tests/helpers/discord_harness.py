"""Run the real StemscribeBot against FakeDiscord inside one asyncio.run.

Exports: running_bot, bot_settings, make_clip, restore_discord_endpoints, FAST_TIMINGS,
DEVSET_FLUTE, PERM_MANAGE_GUILD.

Tests are plain functions that call ``asyncio.run(scenario())``; the scenario
opens ``FakeDiscord`` and ``running_bot`` as async context managers, so every
test has its own event loop, server and client, and nothing leaks between tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path
from typing import Any, AsyncIterator

import discord
from discord.gateway import DiscordWebSocket

from stemscribe.bots.discord import StemscribeBot, Timings
from stemscribe.settings import Settings, load_settings

from .discord_fake import FakeDiscord

#: A flute tune from the shared dev set; tests cut a few seconds of it.
DEVSET_FLUTE = Path(__file__).resolve().parents[3] / "shared" / "devset" / "01-banks-of-the-bann-flute" / "audio.ogg"
#: Discord permission bit "Manage Server".
PERM_MANAGE_GUILD = 1 << 5
#: Timings for tests: quick polling and edits; a token that lives for the whole test.
FAST_TIMINGS = Timings(poll_interval_s=0.2, edit_interval_s=0.5, guild_ready_timeout_s=0.05)


def bot_settings(fake: FakeDiscord, redis_url: str, **overrides: Any) -> Settings:
    """Settings pointing at the fake Discord and the test Redis (environment ignored)."""
    values: dict[str, Any] = dict(redis_url=redis_url, discord_token=fake.token, discord_api_base=fake.api_base,
                                  discord_gateway_url=fake.gateway_url, discord_dev_guild=fake.guild_id,
                                  preload_models="")
    values.update(overrides)
    return load_settings(env={}, **values)


@contextlib.contextmanager
def restore_discord_endpoints():
    """Put discord.py's class-level REST base and gateway URL back after a test."""
    base, gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    try:
        yield
    finally:
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, settings: Settings, jobs: Any, *,
                      timings: Timings = FAST_TIMINGS) -> AsyncIterator[StemscribeBot]:
    """Start the real client (REST login, gateway, command sync) and yield it once ready."""
    bot = StemscribeBot(settings, jobs, timings=timings)
    runner = asyncio.create_task(bot.start(settings.discord_token))
    ready = asyncio.ensure_future(bot.wait_until_ready())
    try:
        done, _ = await asyncio.wait({ready, runner}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            runner.result()  # the client stopped: raise its error here
            raise AssertionError("the client stopped before it was ready")
        if ready not in done:
            raise AssertionError("the client did not get ready within 10 s")
        yield bot
    finally:
        ready.cancel()
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(runner, 10)


def make_clip(path: Path, *, start_s: float, duration_s: float, source: Path = DEVSET_FLUTE) -> Path:
    """Cut duration_s seconds of source (from start_s) into an Ogg/Vorbis file with ffmpeg."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", str(start_s), "-t", str(duration_s),
                    "-i", str(source), "-ac", "1", "-c:a", "libvorbis", "-q:a", "3", str(path)],
                   check=True, timeout=60)
    return path
