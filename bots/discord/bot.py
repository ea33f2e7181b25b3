"""The Discord client of stemscribe: intents, endpoints, command tree, job watchers.

Exports: StemscribeBot, StemscribeTree, INTENTS, INVITE_PERMISSIONS, configure_endpoints,
invite_url.

The bot only needs the guilds intent: slash commands and context menus carry
their own data (attachments included), so no message-content or members intent
is requested. Dependencies (settings, the job client, timings) are passed in,
so tests can run the real client against a local fake Discord.

Once connected, the bot resumes every Discord job not delivered yet (left by a
previous process, or by a crashed instance once its lease lapsed) and looks for
more every ``settings.delivery_sweep_s``; see stemscribe.bots.deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket

from stemscribe.bots.common import user_message
from stemscribe.bots.deliveries import Deliveries
from stemscribe.core.errors import StemscribeError
from stemscribe.settings import Settings

from .watch import JobWatch, Timings, resumed_watch, watch_job

log = logging.getLogger(__name__)

#: Gateway intents: guild and channel metadata only (upload limits, channel cache).
INTENTS = discord.Intents.none()
INTENTS.guilds = True

#: Channel permissions the bot uses, for the invite URL: view the channel, post,
#: post in threads, embed the result card and attach the score files.
INVITE_PERMISSIONS = discord.Permissions(view_channel=True, send_messages=True, send_messages_in_threads=True,
                                         embed_links=True, attach_files=True)


def configure_endpoints(settings: Settings) -> None:
    """Point discord.py at settings.discord_api_base and discord_gateway_url when set.

    Both are class attributes in discord.py, so this affects every client in the process.
    """
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
    if settings.discord_gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def invite_url(application_id: int | str) -> str:
    """The OAuth2 URL that adds the bot to a server with the scopes and permissions it needs."""
    return discord.utils.oauth_url(int(application_id), permissions=INVITE_PERMISSIONS,
                                   scopes=("bot", "applications.commands"))


def _permission_names(names: list[str]) -> str:
    return ", ".join(name.replace("_", " ").replace("guild", "server").title() for name in names)


class StemscribeTree(app_commands.CommandTree):
    """The command tree with stemscribe's single error handler (logs bugs first)."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        """Answer every command failure the handlers did not answer themselves."""
        original = getattr(error, "original", error)
        if isinstance(error, app_commands.MissingPermissions):
            text = f"You need the {_permission_names(error.missing_permissions)} permission to do that."
        elif isinstance(error, app_commands.NoPrivateMessage):
            text = "That only works in a server, not in direct messages."
        elif isinstance(original, StemscribeError):
            text = user_message(original)
        else:
            reference = f"interaction {interaction.id}"
            log.error("command %s failed (%s)", getattr(interaction.command, "qualified_name", "?"), reference,
                      exc_info=original)
            text = user_message(original, job_id=reference)
        await reply(interaction, text)


async def reply(interaction: discord.Interaction, text: str) -> None:
    """Answer an interaction whether or not it was deferred already."""
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text, embed=None, attachments=[])
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as error:
        log.warning("could not answer interaction %s: %s", interaction.id, error)


class StemscribeBot(commands.Bot):
    """stemscribe on Discord.

    Args:
        settings: deployment settings (token, endpoints, limits, dev guild).
        jobs: the worker's JobClient (or None for a bot that only syncs commands).
        timings: token lifetime, polling and edit intervals.
        sync_dev_guild: copy and sync the commands to settings.discord_dev_guild at startup.
    """

    def __init__(self, settings: Settings, jobs: Any, *, timings: Timings | None = None,
                 sync_dev_guild: bool = True) -> None:
        configure_endpoints(settings)
        self.timings = timings or Timings()
        super().__init__(command_prefix=commands.when_mentioned, intents=INTENTS, tree_cls=StemscribeTree,
                         help_command=None, max_messages=None,
                         guild_ready_timeout=self.timings.guild_ready_timeout_s,
                         allowed_mentions=discord.AllowedMentions.none())
        self.settings = settings
        self.jobs = jobs
        self.sync_dev_guild = sync_dev_guild
        self.deliveries = Deliveries(jobs, "discord", lease_s=settings.delivery_lease_s,
                                     sweep_s=settings.delivery_sweep_s) if jobs is not None else None
        self._watches: set[asyncio.Task] = set()
        self._resumer: asyncio.Task | None = None

    async def setup_hook(self) -> None:
        """Load the commands; in development also sync them to the dev guild at once."""
        from .cog import TranscribeCog  # the cog imports the worker client; keep bot importable without it

        await self.add_cog(TranscribeCog(self))
        if self.sync_dev_guild and self.settings.discord_dev_guild:
            guild = discord.Object(int(self.settings.discord_dev_guild))
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to development guild %s", len(synced), guild.id)

    async def on_ready(self) -> None:
        """Log who we are and the invite link; the first time, start resuming undelivered jobs."""
        log.info("connected as %s; invite: %s", self.user, invite_url(self.application_id or 0))
        if self.deliveries is not None and self._resumer is None:
            self._resumer = asyncio.create_task(self.deliveries.run(self._resume, self.is_watching),
                                                name="resume-deliveries")

    def _resume(self, status) -> None:
        self.watch(resumed_watch(self, status))

    def is_watching(self, job_id: str) -> bool:
        """Whether this process follows the job already."""
        return any(task.get_name() == f"watch-{job_id}" for task in self._watches)

    def watch(self, job: JobWatch) -> asyncio.Task:
        """Follow a job in the background (holding its delivery) until its result is delivered."""
        task = asyncio.create_task(self.deliveries.deliver_once(job.job_id, watch_job(self, job)),
                                   name=f"watch-{job.job_id}")
        self._watches.add(task)
        task.add_done_callback(self._watch_done)
        return task

    def _watch_done(self, task: asyncio.Task) -> None:
        self._watches.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("watching %s failed", task.get_name(), exc_info=task.exception())

    async def wait_for_watches(self, timeout: float | None = None) -> None:
        """Wait until every job being watched has been delivered (used at shutdown and in tests)."""
        if self._watches:
            await asyncio.wait(set(self._watches), timeout=timeout)

    async def close(self) -> None:
        """Stop watching jobs (they keep running in the worker; the next instance delivers them) and disconnect."""
        if self._resumer is not None:
            self._resumer.cancel()
            await asyncio.gather(self._resumer, return_exceptions=True)
        watches = list(self._watches)
        for task in watches:
            task.cancel()
        if watches:
            # Each watcher releases its job on the way out, so the next instance resumes it at once.
            await asyncio.wait(watches, timeout=10)
            log.info("stopped watching %d running job(s)", len(watches))
        await super().close()
