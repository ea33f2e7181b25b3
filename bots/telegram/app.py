"""Building the Telegram Application: handlers, commands menu, error handler, clean shutdown.

Exports: build_application, error_handler, BOT_COMMANDS, ALLOWED_UPDATES.

Once started, the bot resumes every Telegram job that has not been delivered
yet (queued or running when a previous process stopped, or held by a crashed
instance), editing the same progress message, and keeps looking for such jobs
every ``settings.delivery_sweep_s``.

The Application talks to ``settings.telegram_base_url`` / ``telegram_base_file_url``,
so the same code runs against api.telegram.org, a local Bot API server (with
``telegram_local_mode``) or the fake server of the tests.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telegram import BotCommand, Update
from telegram.error import Forbidden
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from stemscribe.bots.common import user_message
from stemscribe.bots.deliveries import Deliveries
from stemscribe.bots.telegram import handlers
from stemscribe.bots.telegram.delivery import BOT_UPLOAD_LIMIT_BYTES, LOCAL_UPLOAD_LIMIT_BYTES, JobTracker, ticket_for
from stemscribe.bots.telegram.handlers import FailedAfterAck, Services
from stemscribe.bots.telegram.settings_menu import settings_button, settings_command
from stemscribe.settings import Settings

log = logging.getLogger(__name__)

#: The command menu Telegram shows next to the message box.
BOT_COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "What this bot does"),
    ("help", "Modes, options and examples"),
    ("transcribe", "Reply to a recording to write it down"),
    ("settings", "Your default options"),
    ("status", "Your jobs and place in the queue"),
    ("cancel", "Stop your running jobs"),
    ("fix", "Rewrite a score: /fix time:6/8 key:\"E minor\" transpose:Bb"),
)
#: Update types the bot asks Telegram for; everything else is never delivered.
ALLOWED_UPDATES: list[str] = [Update.MESSAGE, Update.CALLBACK_QUERY]

# New messages only: an edited caption must not start a second job.
_NEW = filters.UpdateType.MESSAGE
_RECORDING = (filters.VOICE | filters.AUDIO | filters.VIDEO_NOTE | filters.VIDEO | filters.Document.ALL
              | filters.PHOTO | filters.Sticker.ALL | filters.ANIMATION)


async def error_handler(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log an unexpected error with its traceback, then apologise in the chat with a reference."""
    reference = f"update-{update.update_id}" if isinstance(update, Update) else None
    log.error("unhandled error (%s)", reference or "no update", exc_info=context.error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    apology = user_message(context.error, job_id=reference)
    try:
        if isinstance(context.error, FailedAfterAck):
            await context.error.ack.edit_text(apology)
        else:
            await context.bot.send_message(update.effective_chat.id, apology)
    except Forbidden:
        log.info("cannot apologise in chat %s: the bot was blocked or removed", update.effective_chat.id)
    except Exception:  # noqa: BLE001 - Telegram is failing too; the traceback above is what matters
        log.exception("could not send the apology for %s", reference)


async def _post_init(application: Application) -> None:
    await application.bot.set_my_commands([BotCommand(name, text) for name, text in BOT_COMMANDS])
    svc: Services = application.bot_data["services"]

    def resume(status: Any) -> None:
        handlers.follow(application.bot, svc, ticket_for(status.job_id, status.requester.reply))

    application.bot_data["resumer"] = asyncio.ensure_future(svc.deliveries.run(resume, svc.tracker.is_following))


async def _post_stop(application: Application) -> None:
    resumer = application.bot_data.pop("resumer", None)
    if resumer is not None:
        resumer.cancel()
        await asyncio.gather(resumer, return_exceptions=True)
    # Followers release their jobs as they stop, so the next instance resumes them at once.
    await application.bot_data["services"].tracker.close()


def build_application(settings: Settings, *, client: Any = None) -> Application:
    """The Application with every handler registered; not started.

    Args:
        settings: token, Bot API URLs, local mode and limits.
        client: a JobClient; by default one is made from settings.

    Raises:
        ValueError: no Telegram token is configured.
    """
    if not settings.telegram_token:
        raise ValueError("No Telegram token: set STEMSCRIBE_TELEGRAM_TOKEN or telegram_token in the config file.")
    if client is None:
        from stemscribe.worker.client import JobClient  # noqa: PLC0415 - connects to Redis; only when needed
        client = JobClient(settings)
    application = (
        ApplicationBuilder()
        .token(settings.telegram_token)
        .base_url(settings.telegram_base_url)
        .base_file_url(settings.telegram_base_file_url)
        .local_mode(settings.telegram_local_mode)
        .concurrent_updates(True)
        .post_init(_post_init)
        .post_stop(_post_stop)
        .build()
    )
    upload_limit = LOCAL_UPLOAD_LIMIT_BYTES if settings.telegram_local_mode else BOT_UPLOAD_LIMIT_BYTES
    deliveries = Deliveries(client, handlers.PLATFORM, lease_s=settings.delivery_lease_s,
                            sweep_s=settings.delivery_sweep_s)
    application.bot_data["services"] = Services(settings, client, JobTracker(), upload_limit, deliveries)

    application.add_handler(CommandHandler("start", handlers.start_command, filters=_NEW))
    application.add_handler(CommandHandler("help", handlers.help_command, filters=_NEW))
    application.add_handler(CommandHandler("transcribe", handlers.transcribe_command, filters=_NEW))
    application.add_handler(CommandHandler("settings", settings_command, filters=_NEW))
    application.add_handler(CommandHandler("status", handlers.status_command, filters=_NEW))
    application.add_handler(CommandHandler("cancel", handlers.cancel_command, filters=_NEW))
    application.add_handler(CallbackQueryHandler(settings_button, pattern=r"^cfg:"))
    application.add_handler(CommandHandler("fix", handlers.fix_command, filters=_NEW))
    application.add_handler(CallbackQueryHandler(handlers.fix_button, pattern=r"^fx:"))
    application.add_handler(MessageHandler(_NEW & _RECORDING, handlers.handle_recording))
    application.add_handler(MessageHandler(_NEW & filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND,
                                           handlers.private_text))
    application.add_error_handler(error_handler)
    return application
