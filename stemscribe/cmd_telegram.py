"""`stemscribe telegram`: run the Telegram bot (polling, or a webhook when a URL is set).

Exports: register, handler.
"""

from __future__ import annotations

import argparse

from stemscribe.bots.telegram.main import add_arguments, run
from stemscribe.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `telegram` subcommand."""
    parser = subparsers.add_parser(
        "telegram",
        help="run the Telegram bot",
        description=("Run the Telegram bot with the token from STEMSCRIBE_TELEGRAM_TOKEN or the config file. "
                     "It polls Telegram unless a webhook URL is given (--webhook-url or telegram_webhook_url). "
                     "Jobs are queued in Redis; run `stemscribe worker` alongside. See docs/TELEGRAM.md."),
    )
    add_arguments(parser)
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace, settings: Settings) -> int:
    """Run the bot until interrupted; returns the exit code."""
    return run(settings, args)
