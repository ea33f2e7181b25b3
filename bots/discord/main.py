"""Start the Discord bot, or sync its commands, from the command line.

Exports: main, add_arguments, handler, run_bot, sync_commands.

``stemscribe discord`` (or ``python -m stemscribe.bots.discord.main``) runs the
bot until SIGINT/SIGTERM. ``stemscribe discord sync`` registers the slash
commands globally (they can take up to an hour to appear everywhere), and
``stemscribe discord sync --guild ID`` registers them on one server at once,
for development.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Sequence

import discord

from stemscribe.bots.startup import bot_parser, load_bot_settings
from stemscribe.settings import Settings

from .bot import StemscribeBot, invite_url

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `discord` command's own arguments (shared by the CLI and main())."""
    parser.add_argument("action", nargs="?", choices=("run", "sync"), default="run",
                        help="run the bot (default), or sync the slash commands and exit")
    parser.add_argument("--guild", metavar="ID",
                        help="with sync: register the commands on this server only (instant; for development)")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace, settings: Settings) -> int:
    """Run or sync as the arguments say; returns the exit code."""
    if not settings.discord_token:
        print("stemscribe discord: no bot token. Set STEMSCRIBE_DISCORD_TOKEN (see docs/DISCORD.md).",
              file=sys.stderr)
        return 2
    if args.guild and not args.guild.isdigit():
        print(f"stemscribe discord: --guild must be a server id (a number), not {args.guild!r}.", file=sys.stderr)
        return 2
    if not getattr(args, "verbose", False):
        logging.getLogger().setLevel(settings.log_level.upper())
    try:
        if args.action == "sync":
            guild_id = int(args.guild) if args.guild else None
            count = asyncio.run(sync_commands(settings, guild_id=guild_id))
            where = f"server {guild_id}" if guild_id else "all servers (may take up to an hour to show)"
            print(f"Synced {count} commands to {where}.")
            return 0
        asyncio.run(run_bot(settings))
    except discord.LoginFailure:
        print("stemscribe discord: Discord rejected the bot token. Copy it again from the Developer Portal.",
              file=sys.stderr)
        return 1
    return 0


async def run_bot(settings: Settings) -> None:
    """Connect and serve until SIGINT or SIGTERM, then close cleanly."""
    from stemscribe.worker.client import JobClient

    jobs = JobClient(settings)
    async with StemscribeBot(settings, jobs) as bot:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
            except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
                pass
        await bot.start(settings.discord_token)


async def sync_commands(settings: Settings, *, guild_id: int | None = None) -> int:
    """Register the commands with Discord (REST only, no gateway); returns how many.

    Args:
        settings: token and endpoints.
        guild_id: a development server to register on at once; None registers globally.
    """
    async with StemscribeBot(settings, None, sync_dev_guild=False) as bot:
        await bot.login(settings.discord_token)
        guild = discord.Object(guild_id) if guild_id else None
        if guild is not None:
            bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
        log.info("invite: %s", invite_url(bot.application_id or 0))
        return len(synced)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``[run|sync] [--guild ID] [--config FILE]``; returns the exit code."""
    parser = bot_parser("stemscribe-discord", "stemscribe's Discord bot")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_bot_settings(args, command="stemscribe discord")
    return handler(args, settings) if settings is not None else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
