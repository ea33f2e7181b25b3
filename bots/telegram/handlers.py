"""Chat handlers of the Telegram bot: recordings in, jobs queued, /start /help /status /cancel.

Exports: Services, FailedAfterAck, services, follow, handle_recording, transcribe_command, start_command,
help_command, status_command, cancel_command, private_text, user_scope,
load_user_options, strip_bot_address.

In private chats every recording is transcribed, and a caption without a single
key:value word ("my song for tonight") becomes the score's title. In groups the
bot only acts when addressed: ``/transcribe`` (as a reply to a message with
audio, or as the caption of one), or a caption that mentions the bot; other
chatter is ignored. Captions that hold option words are parsed strictly.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from telegram import Message, ReplyParameters, Update
from telegram.constants import ChatType, MessageEntityType
from telegram.ext import ContextTypes

from stemscribe.bots.common import HELP_TEXT, caption_options, progress_text, user_message
from stemscribe.bots.deliveries import Deliveries
from stemscribe.core.contract import JobState
from stemscribe.bots.telegram.delivery import (
    JobTracker,
    file_base_name,
    follow_job,
    ticket_for,
    with_flood_retry,
)
from stemscribe.bots.telegram.media import check_recording, download_recording, find_recording
from stemscribe.core.errors import OptionsError, StemscribeError
from stemscribe.core.options import Options, options_from_pairs
from stemscribe.settings import Settings
from stemscribe.worker.client import InputFile, Requester

log = logging.getLogger(__name__)

PLATFORM = "telegram"
_ACTIVE_STATES = frozenset(state for state in JobState if state.active)

START_TEXT = (
    "Hi! Send me a recording (a voice note, an audio file or a video with sound) and I send back "
    "sheet music: a PDF, a preview picture, MusicXML and MIDI.\n\n"
    "Add options in the caption, for example:\n"
    "  mode:piano title:\"Autumn Leaves\"\n"
    "  mode:stems stems:yes\n"
    "A caption without options, like \"my song for tonight\", becomes the title.\n\n"
    "In a group, reply to a recording with /transcribe, or mention me in its caption.\n"
    "/settings sets your defaults, /status shows your jobs, /cancel stops them, /help explains every option."
)
TELEGRAM_HELP = (
    HELP_TEXT + "\n\n"
    "In groups: reply to a recording with /transcribe mode:piano, or send it with a caption that mentions me.\n"
    "/settings: your defaults · /status: your jobs · /cancel: stop your jobs (or /cancel JOB_ID)"
)


class FailedAfterAck(Exception):
    """A bug after the acknowledgement was sent; the error handler turns that message into the apology."""

    def __init__(self, ack: Message) -> None:
        super().__init__(f"failed after acknowledging in chat {ack.chat_id}")
        self.ack = ack


@dataclass
class Services:
    """What every handler needs, created once at startup and kept in bot_data."""

    settings: Settings
    client: Any  # stemscribe.worker.client.JobClient; synchronous, so always called via to_thread
    tracker: JobTracker
    upload_limit_bytes: int
    deliveries: Deliveries


def services(context: ContextTypes.DEFAULT_TYPE) -> Services:
    return context.application.bot_data["services"]


def user_scope(user_id: int) -> str:
    """Key under which a Telegram user's option defaults are stored."""
    return f"{PLATFORM}:user:{user_id}"


def requester_for(message: Message, *, reply: dict[str, Any] | None = None) -> Requester:
    return Requester(platform=PLATFORM, user_id=str(message.from_user.id), chat_id=str(message.chat.id),
                     reply=reply or {})


async def load_user_options(svc: Services, user_id: int) -> Options:
    """The user's saved defaults as Options; unusable saved values are dropped with a log line."""
    pairs = await asyncio.to_thread(svc.client.load_defaults, user_scope(user_id))
    try:
        return options_from_pairs(pairs or {})
    except OptionsError as exc:
        log.warning("ignoring unusable saved defaults of telegram user %s: %s", user_id, exc)
        return Options()


def strip_bot_address(text: str | None, username: str) -> str:
    """Remove '/transcribe[@bot]' and '@bot' from option text."""
    text = text or ""
    text = re.sub(rf"^\s*/transcribe(@{re.escape(username)})?\b", "", text, flags=re.I)
    return re.sub(rf"@{re.escape(username)}\b", "", text, flags=re.I).strip()


def _mentions_bot(message: Message, username: str) -> bool:
    mentions = message.parse_caption_entities([MessageEntityType.MENTION]).values()
    return any(m.lower() == "@" + username.lower() for m in mentions)


def _is_transcribe_caption(message: Message, username: str) -> bool:
    return bool(re.match(rf"^\s*/transcribe(@{re.escape(username)})?(\s|$)", message.caption or "", re.I))


async def reply(message: Message, text: str, **kwargs: Any) -> Message:
    """Answer a message in its chat, quoting it, waiting out flood control."""
    quote = ReplyParameters(message.message_id, allow_sending_without_reply=True)
    return await with_flood_retry(message.get_bot().send_message, message.chat.id, text, reply_parameters=quote,
                                  **kwargs)


async def transcribe(update: Update, context: ContextTypes.DEFAULT_TYPE, source: Message, option_text: str, *,
                     caption_title: bool = False) -> None:
    """Check, download and queue the recording in `source`, then follow the job in the chat.

    caption_title: option_text is a private chat's caption, which may be a title instead of options.
    """
    svc = services(context)
    request = update.effective_message
    try:
        recording = find_recording(source)
        if recording is None:
            await reply(request, "That message has no recording. Reply with /transcribe to a voice note, "
                                 "an audio file or a video with sound.")
            return
        options, titled = caption_options(option_text, base=await load_user_options(svc, request.from_user.id),
                                          title_fallback=caption_title)
        check_recording(recording, options, svc.settings)
    except StemscribeError as exc:
        await reply(request, user_message(exc))
        return
    named = (f' I\'ll title the score "{titled}" (options go as key:value words, e.g. mode:piano).'
             if titled else "")
    ack = await reply(request, f"Got your {recording.label}.{named} Fetching it…")
    try:
        data = await download_recording(context.bot, recording, svc.settings)
        # Everything needed to resume this job after a restart: where to edit, what to answer, file names.
        where = {"chat_id": source.chat.id, "message_id": ack.message_id, "reply_to": source.message_id,
                 "base_name": file_base_name(options.title, recording.file_name)}
        submission = await asyncio.to_thread(svc.client.submit, [InputFile(recording.file_name, data)], options,
                                             requester_for(request, reply=where),
                                             delivered_by=svc.deliveries.owner)
    except StemscribeError as exc:
        await with_flood_retry(ack.edit_text, user_message(exc))
        return
    except Exception as exc:
        raise FailedAfterAck(ack) from exc
    log.info("job %s queued for telegram user %s in chat %s", submission.job_id, request.from_user.id,
             request.chat.id)
    # The follower's first edit turns the acknowledgement into "Queued…"; it owns the message from here on.
    follow(context.bot, svc, ticket_for(submission.job_id, where))


def follow(bot: Any, svc: Services, ticket: Any) -> None:
    """Follow a job in the background (holding its delivery) until its outcome is posted."""
    svc.tracker.track(ticket.job_id, svc.deliveries.deliver_once(
        ticket.job_id, follow_job(bot, svc.client, ticket, upload_limit_bytes=svc.upload_limit_bytes,
                                  progress=svc.deliveries.progress(ticket.job_id))))


async def handle_recording(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Transcribe a recording sent in a private chat, or in a group when the caption addresses the bot."""
    message = update.effective_message
    username = context.bot.username
    if message.chat.type != ChatType.PRIVATE and not (
            _mentions_bot(message, username) or _is_transcribe_caption(message, username)):
        return
    await transcribe(update, context, message, strip_bot_address(message.caption, username),
                     caption_title=message.chat.type == ChatType.PRIVATE)


async def transcribe_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/transcribe [options], as a reply to a message with a recording."""
    message = update.effective_message
    source = message.reply_to_message
    if source is None:
        await reply(message, "Reply to a voice note or audio file with /transcribe (options may follow, "
                             "e.g. /transcribe mode:piano). In a private chat, just send me the recording.")
        return
    await transcribe(update, context, source, strip_bot_address(message.text, context.bot.username))


async def start_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet the user and show how to use the bot."""
    await reply(update.effective_message, START_TEXT)


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explain modes, options and commands, with examples."""
    await reply(update.effective_message, TELEGRAM_HELP)


async def status_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """List the user's jobs in this chat with their state and place in the queue."""
    message = update.effective_message
    jobs = await asyncio.to_thread(services(context).client.jobs_for, requester_for(message))
    active = [j for j in jobs if j.state in _ACTIVE_STATES]
    if not active:
        await reply(message, "You have no jobs running. Send me a recording to start one.")
        return
    lines = [f"{j.job_id}: " + progress_text(j.state, stage=j.stage, percent=j.percent, position=j.position)
             for j in active]
    await reply(message, "Your jobs:\n" + "\n".join(lines) + "\n\n/cancel stops them.")


async def cancel_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Cancel the named job, or every running job of the user in this chat."""
    message = update.effective_message
    client = services(context).client
    requester = requester_for(message)
    if context.args:
        wanted = context.args[:5]
    else:
        wanted = [j.job_id for j in await asyncio.to_thread(client.jobs_for, requester) if j.state in _ACTIVE_STATES]
    if not wanted:
        await reply(message, "You have no jobs to cancel.")
        return
    cancelled = [job_id for job_id in wanted if await asyncio.to_thread(client.cancel, job_id, requester)]
    if not cancelled:
        await reply(message, "Nothing to cancel: that job is finished, is not yours, or does not exist.")
        return
    await reply(message, f"Cancelling {len(cancelled)} job{'s' if len(cancelled) > 1 else ''}: "
                         + ", ".join(cancelled) + ".")


async def private_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer plain text in a private chat with a pointer to what the bot expects."""
    await reply(update.effective_message, "Send me a recording (voice note, audio file or video with sound), "
                                          "with options in its caption if you like. /help lists them.")


# ---------------------------------------------------------------- corrections (bots.corrections)

async def fix_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A correction button under a score: write the next version with the change it names."""
    from stemscribe.bots.corrections import parse_button_data

    query = update.callback_query
    parsed = parse_button_data(query.data or "")
    if parsed is None:
        await query.answer("This button is out of date. Send /fix with what to change.")
        return
    job_id, changes = parsed
    requester = Requester(platform=PLATFORM, user_id=str(query.from_user.id),
                          chat_id=str(query.message.chat.id if query.message else query.from_user.id), reply={})
    await _correct(context, job_id, changes, requester, anchor=query.message, answer=query.answer)


async def fix_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/fix time:6/8 tempo:140 key:"E minor" transpose:Bb: as a reply to a score, or for the user's latest job."""
    from stemscribe.bots.corrections import parse_button_data, parse_fix_text

    message = update.effective_message
    svc = services(context)
    try:
        job_id, changes = parse_fix_text(message.text or "")
    except OptionsError as exc:
        await reply(message, user_message(exc))
        return
    anchor = message.reply_to_message
    if job_id is None and anchor is not None and anchor.reply_markup is not None:
        for row in anchor.reply_markup.inline_keyboard:
            for button in row:
                parsed = parse_button_data(button.callback_data or "")
                if parsed is not None:
                    job_id = parsed[0]
    requester = requester_for(message)
    if job_id is None:
        jobs = await asyncio.to_thread(svc.client.jobs_for, requester)
        finished = [j for j in jobs if j.state == "finished" and str(j.requester.chat_id) == str(message.chat.id)]
        if not finished:
            await reply(message, "Reply to one of your scores with /fix (e.g. /fix time:6/8), or send me a "
                                 "recording first.")
            return
        job_id = finished[0].job_id

    async def answer(text: str, show_alert: bool = False) -> None:
        await reply(message, text)

    await _correct(context, job_id, changes, requester, anchor=anchor or message, answer=answer, announce=True)


async def _correct(context: ContextTypes.DEFAULT_TYPE, job_id: str, changes: dict, requester: Requester, *,
                   anchor: Message | None, answer: Any, announce: bool = False) -> None:
    """Queue a correction (refusals and expiry are answered), then post the version in the background."""
    from stemscribe.bots import corrections
    from stemscribe.core.revise import version_label

    svc = services(context)
    try:
        correction = await corrections.submit(svc.client, job_id, changes, requester)
        status = await asyncio.to_thread(svc.client.status, job_id)
    except StemscribeError as exc:
        await answer(user_message(exc), show_alert=True)
        return
    label = version_label(correction.version, changes)
    if not announce:
        await answer(f"Writing {label}…")
    chat_id = int(requester.chat_id)
    quote = ReplyParameters(anchor.message_id, allow_sending_without_reply=True) if anchor is not None else None
    note = await with_flood_retry(context.bot.send_message, chat_id, f"Writing {label}…", reply_parameters=quote)
    base = str((status.requester.reply or {}).get("base_name") or "score")
    svc.tracker.track(correction.correction_id,
                      _post_version(context.bot, svc, correction, note, base=base, quote=quote))


async def _post_version(bot: Any, svc: Services, correction: Any, note: Message, *, base: str, quote: Any) -> None:
    """Wait for a version and post it: the preview (with the buttons again), later pages, PDF, MusicXML, MIDI."""
    from telegram import InputFile as TgFile

    from stemscribe.bots import corrections
    from stemscribe.bots.telegram.delivery import fix_keyboard

    try:
        output, error = await corrections.follow_version(svc.client, correction.correction_id)
        if output is None:
            await with_flood_retry(note.edit_text, user_message(error or {}, job_id=correction.correction_id))
            return
        caption = corrections.version_caption(output.summary)
        common = {"chat_id": note.chat_id, "reply_parameters": quote}
        for name in corrections.delivered_names(output.artifacts):
            data = await asyncio.to_thread(svc.client.fetch_artifact, correction.job_id, name)
            upload = TgFile(data, filename=corrections.version_file_name(base, name))
            if name.endswith("/preview.png"):
                await with_flood_retry(bot.send_photo, photo=upload, caption=caption[:1024],
                                       reply_markup=fix_keyboard(correction.job_id, output.summary), **common)
            elif name.endswith(".png"):
                await with_flood_retry(bot.send_photo, photo=upload, **common)
            else:
                await with_flood_retry(bot.send_document, document=upload, **common)
        await with_flood_retry(note.edit_text, "Done: " + caption)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a background task: the user still hears about it
        log.exception("correction %s: delivering it failed", correction.correction_id)
        try:
            await with_flood_retry(note.edit_text, user_message(exc, job_id=correction.correction_id))
        except Exception:  # noqa: BLE001
            log.exception("correction %s: could not tell the user", correction.correction_id)
