"""Start-up of the Telegram bot: polling or webhook, from settings and command-line flags.

Exports: main, run, add_arguments, webhook_secret.

``python -m stemscribe.bots.telegram.main`` and ``stemscribe telegram`` both end in
run(). Polling needs nothing but the token; a webhook needs a public HTTPS URL
that forwards to ``--listen``:``--port`` (see docs/TELEGRAM.md).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from typing import Sequence
from urllib.parse import urlsplit

from stemscribe.bots.startup import bot_parser, load_bot_settings
from stemscribe.bots.telegram.app import ALLOWED_UPDATES, build_application
from stemscribe.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `stemscribe telegram` and this module's main()."""
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--polling", action="store_true",
                     help="ask Telegram for updates (the default unless a webhook URL is configured)")
    how.add_argument("--webhook-url", metavar="URL",
                     help="public HTTPS URL Telegram posts updates to (default: telegram_webhook_url setting)")
    parser.add_argument("--listen", default="0.0.0.0", help="address the webhook server binds (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port the webhook server binds (default: telegram_webhook_port)")
    parser.add_argument("--drop-pending", action="store_true",
                        help="ignore messages that arrived while the bot was offline")


def webhook_secret(token: str) -> str:
    """The secret Telegram sends with every webhook call; derived from the token so nothing else needs setting."""
    return hashlib.sha256(b"stemscribe-webhook:" + token.encode()).hexdigest()


def _configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(settings.log_level.upper())
    # httpx logs every request URL at INFO, and Bot API URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the bot until interrupted.

    Returns:
        0 after a clean stop, 2 when the configuration is unusable.
    """
    _configure_logging(settings)
    if not settings.telegram_token:
        print("stemscribe telegram: no token. Set STEMSCRIBE_TELEGRAM_TOKEN or telegram_token in the config "
              "file (see docs/TELEGRAM.md).", file=sys.stderr)
        return 2
    webhook_url = None if args.polling else (args.webhook_url or settings.telegram_webhook_url or None)
    if webhook_url is None:
        log.info("telegram bot starting (polling %s)", settings.telegram_base_url.split("/bot")[0])
        build_application(settings).run_polling(allowed_updates=ALLOWED_UPDATES,
                                                 drop_pending_updates=args.drop_pending)
        return 0
    parts = urlsplit(webhook_url)
    if parts.scheme != "https" or not parts.hostname:
        print(f"stemscribe telegram: the webhook URL must be https://HOST/PATH, not {webhook_url!r}.",
              file=sys.stderr)
        return 2
    application = build_application(settings)
    port = args.port or settings.telegram_webhook_port
    log.info("telegram bot starting (webhook %s, listening on %s:%d)", webhook_url, args.listen, port)
    try:
        application.run_webhook(listen=args.listen, port=port, url_path=parts.path.lstrip("/"),
                                webhook_url=webhook_url, secret_token=webhook_secret(settings.telegram_token),
                                allowed_updates=ALLOWED_UPDATES, drop_pending_updates=args.drop_pending)
    except RuntimeError as exc:
        if "webhooks" not in str(exc):
            raise
        print("stemscribe telegram: webhook mode needs tornado: pip install 'python-telegram-bot[webhooks]'.",
              file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the Telegram bot; see --help."""
    parser = bot_parser("stemscribe-telegram", "Run the stemscribe Telegram bot.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    settings = load_bot_settings(args, command="stemscribe telegram")
    return run(settings, args) if settings is not None else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
