"""Start-up shared by the bots' own ``main()``: the ``--config`` flag and loading settings from it.

Exports: bot_parser, load_bot_settings.

``stemscribe discord`` and ``stemscribe telegram`` get their settings from the
top-level command line (stemscribe.cli); these helpers serve the bots' modules
run on their own (``python -m stemscribe.bots.<platform>.main``).
"""

from __future__ import annotations

import argparse
import sys

from stemscribe.settings import Settings, load_settings


def bot_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser that already takes ``--config FILE``; the bot adds its own flags after it."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="settings file (TOML or KEY=VALUE); default $STEMSCRIBE_CONFIG")
    return parser


def load_bot_settings(args: argparse.Namespace, *, command: str) -> Settings | None:
    """Settings from ``args.config`` (default $STEMSCRIBE_CONFIG) and the STEMSCRIBE_* environment.

    Args:
        args: parsed by a bot_parser.
        command: names the program in the error, e.g. "stemscribe discord".

    Returns:
        The settings, or None after printing "<command>: bad settings: <why>" to stderr
        (the caller then exits with status 2).
    """
    try:
        return load_settings(config_file=args.config)
    except (ValueError, OSError) as exc:
        print(f"{command}: bad settings: {exc}", file=sys.stderr)
        return None
