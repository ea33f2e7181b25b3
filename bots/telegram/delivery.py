"""Following a job in the chat: one progress message edited in place, then the results.

Exports: Ticket, ticket_for, JobTracker, follow_job, deliver_results, with_flood_retry,
ProgressEditor, output_file_name, BOT_UPLOAD_LIMIT_BYTES, LOCAL_UPLOAD_LIMIT_BYTES,
POLL_INTERVAL_S, MIN_EDIT_INTERVAL_S.

Telegram allows a bot about one message a second per chat and twenty a minute in
groups, and answers anything faster with 429 "retry after N". Progress edits are
therefore throttled and skipped while a RetryAfter is pending; messages that must
arrive (results, the final edit) wait out the RetryAfter and are sent again.
"""

from __future__ import annotations

import dataclasses
import asyncio
import logging
import re
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Awaitable, Callable, Mapping, TypeVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMediaAudio, InputMediaDocument, InputMediaPhoto, ReplyParameters
from telegram.error import BadRequest, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from stemscribe.bots.common import (
    artifact_caption,
    delivery_order,
    outcome_text,
    page_caption,
    preview_page,
    progress_text,
    summary_line,
    user_message,
)
from stemscribe.bots.deliveries import Progress
from stemscribe.core.errors import StemscribeError, TransientError
from stemscribe.core.contract import JobState
from stemscribe.core.plan import format_size

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest file a bot may upload through the public Bot API.
BOT_UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024
#: Largest file a bot may upload through a local Bot API server.
LOCAL_UPLOAD_LIMIT_BYTES = 2000 * 1024 * 1024
#: Largest picture Telegram accepts through sendPhoto; bigger previews go as documents.
PHOTO_LIMIT_BYTES = 10 * 1024 * 1024
#: How often the bot reads a job's status.
POLL_INTERVAL_S = 1.0
#: Least time between two edits of one progress message (keeps groups under 20 a minute).
MIN_EDIT_INTERVAL_S = 3.0
#: How long the job status may be unreadable (Redis down) before the user is told.
MAX_STATUS_OUTAGE_S = 120.0
#: Longest RetryAfter a message that must arrive waits out before giving up.
MAX_FLOOD_WAIT_S = 120.0
#: Tries of one message that must arrive, flood control permitting.
FLOOD_ATTEMPTS = 4
#: Telegram's longest caption.
CAPTION_LIMIT_CHARS = 1024
#: Most items in one media group.
MEDIA_GROUP_MAX = 10
_FINAL_STATES = frozenset(state for state in JobState if state.final)


def retry_after_seconds(error: RetryAfter) -> float:
    """RetryAfter's wait in seconds, whichever type PTB is configured to hand out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def with_flood_retry(method: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """Call a Bot API method, waiting out Telegram's flood control (429 RetryAfter) between tries.

    Only RetryAfter is retried: Telegram then guarantees nothing was sent, so a retry
    cannot duplicate a message.

    Raises:
        RetryAfter: still refused after FLOOD_ATTEMPTS tries, or asked to wait over MAX_FLOOD_WAIT_S.
    """
    for attempt in range(1, FLOOD_ATTEMPTS + 1):
        try:
            return await method(*args, **kwargs)
        except RetryAfter as exc:
            wait_s = retry_after_seconds(exc)
            if attempt == FLOOD_ATTEMPTS or wait_s > MAX_FLOOD_WAIT_S:
                raise
            log.info("flood control: waiting %.1fs before retrying (attempt %d)", wait_s, attempt)
            await asyncio.sleep(wait_s + 0.05)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Ticket:
    """Where one job's progress and results go in Telegram.

    base_name: stem for the delivered file names (from the title or the input file).
    """

    job_id: str
    chat_id: int
    progress_message_id: int
    reply_to_message_id: int | None
    base_name: str


def ticket_for(job_id: str, reply: Mapping[str, Any]) -> Ticket:
    """A job's Ticket from the reply address stored with it at submit (also after a restart).

    Raises:
        KeyError, ValueError: the address names no chat or no progress message.
    """
    reply_to = reply.get("reply_to")
    return Ticket(job_id, int(reply["chat_id"]), int(reply["message_id"]), int(reply_to) if reply_to else None,
                  str(reply.get("base_name") or "score"))


class ProgressEditor:
    """Edits one message in place: throttled, and silent while flood control is pending."""

    def __init__(self, bot: Bot, chat_id: int, message_id: int, *, min_interval_s: float = MIN_EDIT_INTERVAL_S,
                 initial_text: str | None = None) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._message_id = message_id
        self._min_interval_s = min_interval_s
        self._shown = initial_text
        self._not_before = 0.0

    async def show(self, text: str) -> None:
        """Show text if it changed and an edit is allowed now; otherwise let a later call show it."""
        now = time.monotonic()
        if text == self._shown or now < self._not_before:
            return
        try:
            await self._edit(text)
        except RetryAfter as exc:
            self._not_before = time.monotonic() + retry_after_seconds(exc)
            log.info("flood control on progress edit in chat %s: pausing edits", self._chat_id)
            return
        self._not_before = time.monotonic() + self._min_interval_s

    async def finish(self, text: str) -> None:
        """Show the final text: waits out throttling and flood control, because it must arrive."""
        delay = self._not_before - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if text != self._shown:
            await with_flood_retry(self._edit, text)

    async def _edit(self, text: str) -> None:
        try:
            await self._bot.edit_message_text(text, chat_id=self._chat_id, message_id=self._message_id)
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                raise
        self._shown = text


def output_file_name(base: str, artifact: str) -> str:
    """File name a user receives: 'score.pdf' of 'Autumn-Leaves' -> 'Autumn-Leaves.pdf'."""
    if artifact.startswith("stems/"):
        return f"{base}-{artifact.split('/', 1)[1]}"
    return {"preview.png": f"{base}-preview.png", "score.pdf": f"{base}.pdf",
            "score.musicxml": f"{base}.musicxml", "score.mid": f"{base}.mid",
            "notes.mid": f"{base}-performance.mid"}.get(artifact, f"{base}-{artifact}")


def file_base_name(title: str | None, input_name: str) -> str:
    """Stem for delivered files, from the score title or else the input file name.

    Letters of any script and digits are kept; everything else becomes one hyphen.
    """
    raw = title or input_name.rsplit(".", 1)[0]
    slug = re.sub(r"[\W_]+", "-", raw).strip("-")[:60].strip("-")
    return slug or "score"


async def deliver_results(bot: Bot, client: Any, ticket: Ticket, output: Any, *, upload_limit_bytes: int,
                          progress: Progress | None = None) -> list[str]:
    """Upload a finished job's files: preview photo with the summary, the later pages, score files, stems.

    Page 1's preview goes as a photo captioned with the summary; the previews of
    pages 2.. follow as photo albums (media groups of up to MEDIA_GROUP_MAX), a
    page too big for a photo as a document; then the PDF, MusicXML and MIDI files
    as documents; then the stems as audio albums.

    Each message is one delivery step: files an earlier attempt posted are skipped,
    and each message (an album included, with every file in it) is recorded in
    progress as soon as it is sent.

    Args:
        client: the JobClient (artifacts are fetched through it, off the event loop).
        output: the JobOutput of the finished job.
        upload_limit_bytes: files larger than this are replaced by a note.
        progress: the job's loaded delivery Progress; None posts everything and records nothing.

    Returns:
        Notes for the user about files that could not be sent.
    """
    if output.summary.get("title"):
        # The score's own title (core decided it: the user's words, the file's tags, or its name).
        ticket = dataclasses.replace(ticket, base_name=file_base_name(str(output.summary["title"]), ticket.base_name))
    reply = ReplyParameters(message_id=ticket.reply_to_message_id, allow_sending_without_reply=True) \
        if ticket.reply_to_message_id else None
    posted_before = progress.earlier_files if progress is not None else frozenset()
    artifacts = {a.name: a for a in output.artifacts if a.name not in posted_before}
    notes: list[str] = []

    async def fetch(name: str) -> bytes | None:
        size = artifacts[name].size_bytes
        if size > upload_limit_bytes:
            notes.append(f"{output_file_name(ticket.base_name, name)} is {format_size(size)}, over Telegram's "
                         f"{format_size(upload_limit_bytes)} upload limit, so I could not send it."
                         + (" Ask for format:opus to get smaller stems." if name.startswith("stems/") else ""))
            return None
        return await asyncio.to_thread(client.fetch_artifact, ticket.job_id, name)

    async def sent(names: list[str]) -> None:
        if progress is not None:
            await progress.posted(names)

    async def fetch_all(names: list[str]) -> list[tuple[str, bytes]]:
        fetched = [(name, await fetch(name)) for name in names]
        return [(name, data) for name, data in fetched if data is not None]

    async def send_one(name: str) -> None:
        data = await fetch(name)
        if data is not None:
            await _send_score_file(bot, ticket, output, name, data, common)
            await sent([name])

    common = {"chat_id": ticket.chat_id, "reply_parameters": reply}
    order = delivery_order(artifacts)
    if "preview.png" in order:
        await send_one("preview.png")

    pages = await fetch_all([n for n in order if (preview_page(n) or 1) > 1])
    for batch in _batches([(name, data) for name, data in pages if len(data) <= PHOTO_LIMIT_BYTES]):
        await _send_pages(bot, ticket, output, batch, common)
        await sent([name for name, _ in batch])
    for batch in _batches([(name, data) for name, data in pages if len(data) > PHOTO_LIMIT_BYTES]):
        await _send_album(bot, ticket, output, batch, common, as_photos=False)
        await sent([name for name, _ in batch])

    for name in (n for n in order if preview_page(n) is None and not n.startswith("stems/")):
        await send_one(name)

    for batch in _batches(await fetch_all([n for n in order if n.startswith("stems/")])):
        await _send_stems(bot, ticket, batch, common)
        await sent([name for name, _ in batch])
    return notes


def fix_keyboard(job_id: str, summary: Mapping[str, Any]) -> InlineKeyboardMarkup | None:
    """The correction buttons under a score (bots.corrections.suggestions), four to a row; None if none."""
    from stemscribe.bots.corrections import button_data, suggestions

    buttons = [InlineKeyboardButton(s.label, callback_data=button_data(job_id, s.changes))
               for s in suggestions(summary)]
    if not buttons:
        return None
    return InlineKeyboardMarkup([buttons[i:i + 4] for i in range(0, len(buttons), 4)])


def _batches(files: list[tuple[str, bytes]]) -> list[list[tuple[str, bytes]]]:
    """Files split into runs of at most MEDIA_GROUP_MAX, one message each."""
    return [files[start:start + MEDIA_GROUP_MAX] for start in range(0, len(files), MEDIA_GROUP_MAX)]


async def _send_score_file(bot: Bot, ticket: Ticket, output: Any, name: str, data: bytes,
                           common: dict[str, Any]) -> None:
    """Send one score file: the preview as a photo carrying the summary when Telegram takes it, else a document."""
    upload = InputFile(data, filename=output_file_name(ticket.base_name, name))
    if name == "preview.png":
        # The likeliest corrections ride on the score's picture (bots.corrections).
        common = {**common, "reply_markup": fix_keyboard(ticket.job_id, output.summary)}
    if name == "preview.png" and len(data) <= PHOTO_LIMIT_BYTES:
        caption = summary_line(output.summary)[:CAPTION_LIMIT_CHARS] or None
        try:
            await with_flood_retry(bot.send_photo, photo=upload, caption=caption, **common)
            return
        except BadRequest as exc:
            # Telegram rejects photos with extreme proportions; the file itself is fine.
            log.info("job %s: preview refused as photo (%s); sending it as a document", ticket.job_id, exc)
    await with_flood_retry(bot.send_document, document=upload, caption=artifact_caption(name), **common)


async def _send_pages(bot: Bot, ticket: Ticket, output: Any, batch: list[tuple[str, bytes]],
                      common: dict[str, Any]) -> None:
    """Send up to MEDIA_GROUP_MAX later pages' previews as one message of photos.

    Telegram refuses photos of extreme proportions; the same pages then go as
    documents in one message, so the message, and what it carries, stays the same.
    """
    try:
        await _send_album(bot, ticket, output, batch, common, as_photos=True)
        return
    except BadRequest as exc:
        log.info("job %s: page previews refused as photos (%s); sending them as documents", ticket.job_id, exc)
    await _send_album(bot, ticket, output, batch, common, as_photos=False)


async def _send_album(bot: Bot, ticket: Ticket, output: Any, batch: list[tuple[str, bytes]],
                      common: dict[str, Any], *, as_photos: bool) -> None:
    """Send page previews, each captioned "Page 2 of 3", as one message: a lone photo or document, or an album."""
    items = [(output_file_name(ticket.base_name, name), data, page_caption(name, output.summary))
             for name, data in batch]
    if len(items) == 1:
        file_name, data, caption = items[0]
        upload = InputFile(data, filename=file_name)
        if as_photos:
            await with_flood_retry(bot.send_photo, photo=upload, caption=caption, **common)
        else:
            await with_flood_retry(bot.send_document, document=upload, caption=caption, **common)
        return
    # Raw bytes plus filename: PTB attaches each file under its own multipart name (attach://...).
    kind = InputMediaPhoto if as_photos else InputMediaDocument
    album = [kind(data, filename=file_name, caption=caption) for file_name, data, caption in items]
    await with_flood_retry(bot.send_media_group, media=album, **common)


async def _send_stems(bot: Bot, ticket: Ticket, batch: list[tuple[str, bytes]], common: dict[str, Any]) -> None:
    """Send up to MEDIA_GROUP_MAX stems as one message: a lone audio, or a media group."""
    if len(batch) == 1:
        name, data = batch[0]
        audio = InputFile(data, filename=output_file_name(ticket.base_name, name))
        await with_flood_retry(bot.send_audio, audio=audio, caption=artifact_caption(name),
                               title=artifact_caption(name), **common)
        return
    # Raw bytes plus filename: PTB then attaches each file under its own multipart name.
    group = [InputMediaAudio(data, filename=output_file_name(ticket.base_name, name),
                             caption=artifact_caption(name), title=artifact_caption(name))
             for name, data in batch]
    await with_flood_retry(bot.send_media_group, media=group, **common)


async def follow_job(bot: Bot, client: Any, ticket: Ticket, *, upload_limit_bytes: int,
                     initial_text: str | None = None, poll_interval_s: float = POLL_INTERVAL_S,
                     progress: Progress | None = None) -> None:
    """Edit the progress message until the job ends, then deliver results or the error.

    Never raises: a bug here is logged with the job id and the user gets an apology
    quoting it, because this runs as a background task with nobody to catch it.

    Args:
        progress: the job's delivery Progress (not loaded yet): results an earlier
            attempt posted are not posted again. None posts everything.
    """
    editor = ProgressEditor(bot, ticket.chat_id, ticket.progress_message_id, initial_text=initial_text)
    try:
        outage_s = 0.0
        while True:
            try:
                status = await asyncio.to_thread(client.status, ticket.job_id)
                outage_s = 0.0
            except TransientError:
                # The job keeps running in the worker; only a long outage is worth telling the user.
                outage_s += poll_interval_s
                if outage_s > MAX_STATUS_OUTAGE_S:
                    raise
                await asyncio.sleep(poll_interval_s)
                continue
            if status.state in _FINAL_STATES:
                break
            await editor.show(progress_text(status.state, stage=status.stage, percent=status.percent,
                                            message=status.message, position=status.position))
            await asyncio.sleep(poll_interval_s)
        if status.state == "finished":
            output = await asyncio.to_thread(client.result, ticket.job_id)
            await editor.show(progress_text("finished") + " Sending your files…")
            if progress is not None:
                await progress.load()
            notes = await deliver_results(bot, client, ticket, output, upload_limit_bytes=upload_limit_bytes,
                                          progress=progress)
            await editor.finish("\n".join(["Done: " + (summary_line(output.summary) or "your score is below."),
                                           *notes]))
        else:
            await editor.finish(outcome_text(status.state, status.error, job_id=ticket.job_id))
    except asyncio.CancelledError:
        raise
    except StemscribeError as exc:
        # Expected trouble (files expired, Redis gone for long): say so, no traceback needed.
        log.warning("job %s: %s", ticket.job_id, exc)
        await editor.finish(user_message(exc, job_id=ticket.job_id))
    except Exception as exc:  # noqa: BLE001 - the background task's last line of defence
        log.exception("job %s: following or delivering failed", ticket.job_id)
        try:
            await editor.finish(user_message(exc, job_id=ticket.job_id))
        except Exception:  # noqa: BLE001 - Telegram itself is failing; the log above has the cause
            log.exception("job %s: could not tell the user about the failure", ticket.job_id)


class JobTracker:
    """Owns the background tasks that follow jobs, so shutdown can stop them cleanly."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def track(self, job_id: str, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        return task

    @property
    def job_ids(self) -> list[str]:
        return list(self._tasks)

    def is_following(self, job_id: str) -> bool:
        return job_id in self._tasks

    async def close(self) -> None:
        """Stop following every job (the jobs themselves keep running in the worker)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
