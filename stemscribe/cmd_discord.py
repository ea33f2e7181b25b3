"""`stemscribe discord`: run the Discord bot, or sync its slash commands.

Exports: register, handler.

    stemscribe discord                 run the bot
    stemscribe discord sync            register the commands globally
    stemscribe discord sync --guild ID register them on one server at once (development)
"""

from __future__ import annotations

import argparse

from stemscribe.bots.discord.main import add_arguments, handler

__all__ = ["register", "handler"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``discord`` subcommand."""
    parser = subparsers.add_parser(
        "discord", help="run the Discord bot, or sync its slash commands",
        description="Runs the Discord bot (needs STEMSCRIBE_DISCORD_TOKEN and a running worker). "
                    "'sync' registers the slash commands: globally, or with --guild on one server at once.")
    add_arguments(parser)
