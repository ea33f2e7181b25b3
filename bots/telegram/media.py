"""Finding the recording in a Telegram message and fetching it within Telegram's limits.

Exports: Recording, find_recording, check_recording, download_recording,
BOT_DOWNLOAD_LIMIT_BYTES, AUDIO_EXTENSIONS.

Telegram tells us a file's size (and for most media its duration) before we
download anything, so the cheap checks here answer "too large" and "too long"
without spending bandwidth. Bots on the public Bot API may only download files
up to 20 MB; a local Bot API server (``telegram_local_mode``) lifts that.
"""

from __future__ import annotations

import mimetypes
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath

import aiofiles

from telegram import Bot, Message
from telegram.error import BadRequest, NetworkError
from telegram.warnings import PTBDeprecationWarning

from stemscribe.bots.common import format_duration
from stemscribe.core.defaults import MEGABYTE_BYTES
from stemscribe.core.errors import AudioTooLargeError, TransientError, UnsupportedFormatError
from stemscribe.core.options import Mode, Options
from stemscribe.core.plan import InputFacts, Limits, check_inputs, format_size
from stemscribe.settings import Settings

#: Largest file the public Bot API lets a bot download.
BOT_DOWNLOAD_LIMIT_BYTES = 20 * MEGABYTE_BYTES

#: File name endings accepted as recordings when Telegram reports no useful mime type.
AUDIO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp3", ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff",
    ".wma", ".webm", ".mka", ".mp4", ".m4v", ".mov", ".mkv", ".3gp", ".amr",
})

_NOT_AUDIO_HINT = "Send a voice note, an audio file (MP3, WAV, FLAC, OGG, M4A) or a video with sound."


@dataclass(frozen=True)
class Recording:
    """One attachment that can be transcribed, as Telegram describes it before download.

    kind: voice | audio | video_note | video | document.
    file_size: bytes as Telegram reports them (None when it does not say).
    duration_s: seconds as Telegram reports them (None for documents).
    """

    kind: str
    file_id: str
    file_name: str
    file_size: int | None
    duration_s: float | None

    @property
    def label(self) -> str:
        """How the acknowledgement names it: "voice note (0:12)"."""
        what = {"voice": "voice note", "audio": "audio file", "video_note": "video note",
                "video": "video", "document": "file"}[self.kind]
        return f"{what} ({format_duration(self.duration_s)})" if self.duration_s else what


def _has_audio_type(mime_type: str | None, file_name: str | None) -> bool:
    mime = (mime_type or "").lower()
    if mime.startswith(("audio/", "video/")) or mime in {"application/ogg", "application/x-ogg"}:
        return True
    return PurePosixPath(file_name or "").suffix.lower() in AUDIO_EXTENSIONS


def _name(file_name: str | None, mime_type: str | None, fallback_stem: str, fallback_ext: str) -> str:
    if file_name:
        return file_name
    ext = mimetypes.guess_extension(mime_type or "", strict=False) or fallback_ext
    return fallback_stem + (".ogg" if ext in {".oga", ".opus"} else ext)


def find_recording(message: Message) -> Recording | None:
    """The transcribable attachment of a message, or None when it carries no attachment at all.

    Raises:
        UnsupportedFormatError: the message carries a file, picture or sticker without sound.
    """
    if message.voice:
        v = message.voice
        return Recording("voice", v.file_id, _name(None, v.mime_type, "voice-note", ".ogg"), v.file_size,
                         _seconds(v))
    if message.audio:
        a = message.audio
        return Recording("audio", a.file_id, _name(a.file_name, a.mime_type, "audio", ".mp3"), a.file_size,
                         _seconds(a))
    if message.video_note:
        n = message.video_note
        return Recording("video_note", n.file_id, "video-note.mp4", n.file_size, _seconds(n))
    if message.video:
        v = message.video
        return Recording("video", v.file_id, _name(v.file_name, v.mime_type, "video", ".mp4"), v.file_size,
                         _seconds(v))
    if message.document:
        d = message.document
        if not _has_audio_type(d.mime_type, d.file_name):
            shown = d.file_name or "That file"
            raise UnsupportedFormatError(f"{shown} is not a recording I can read.", hint=_NOT_AUDIO_HINT)
        return Recording("document", d.file_id, _name(d.file_name, d.mime_type, "recording", ".bin"),
                         d.file_size, None)
    if message.photo or message.sticker or message.animation:
        raise UnsupportedFormatError("Pictures, stickers and GIFs have no sound to write down.",
                                     hint=_NOT_AUDIO_HINT)
    return None


def _seconds(media: object) -> float | None:
    # PTB 22 gives durations as int (deprecated, with a warning) or timedelta, depending on PTB_TIMEDELTA.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        duration = getattr(media, "duration", None)
    if duration is None:
        return None
    return duration.total_seconds() if isinstance(duration, timedelta) else float(duration)


def download_limit_bytes(settings: Settings) -> int:
    """The largest recording this bot will fetch: the server limit, capped by Telegram's."""
    if settings.telegram_local_mode:
        return settings.max_input_bytes
    return min(settings.max_input_bytes, BOT_DOWNLOAD_LIMIT_BYTES)


def _platform_limit(settings: Settings) -> dict:
    """Telegram's download limit as core.plan's checks take it (none with a local Bot API server)."""
    if settings.telegram_local_mode:
        return {}
    return {"download_limit_bytes": BOT_DOWNLOAD_LIMIT_BYTES, "download_limit_owner": "Telegram"}


def check_size(size: int | None, settings: Settings, *, name: str = "This file") -> None:
    """Raises AudioTooLargeError when size is over what Telegram or this server allows."""
    check_inputs([InputFacts(name, size)], Options(), Limits.from_settings(settings), **_platform_limit(settings))


def check_recording(recording: Recording, options: Options, settings: Settings) -> None:
    """Cheap checks on what Telegram reports, before anything is downloaded (core.plan.check_inputs).

    Raises:
        AudioTooLargeError: over Telegram's download limit or this server's input limit.
        AudioTooLongError: longer than this server accepts for the requested mode.
        EmptyAudioError: Telegram reports an empty file.
    """
    facts = InputFacts(recording.file_name, recording.file_size, recording.duration_s)
    # One recording per message: the mode's count rules are the chat's, not the file's.
    single = options if options.mode is not Mode.MULTITRACK else options.with_changes(mode=Mode.AUTO)
    check_inputs([facts], single, Limits.from_settings(settings), **_platform_limit(settings))


def _local_path(file_path: str | None) -> Path | None:
    """The file on this machine that a local Bot API server reported, if that's what it is."""
    if not file_path:
        return None
    path = Path(file_path)
    return path if path.is_absolute() and path.is_file() else None


async def download_recording(bot: Bot, recording: Recording, settings: Settings) -> bytes:
    """Fetch the recording's bytes (from the local Bot API server's disk in local mode).

    Raises:
        AudioTooLargeError: Telegram refused because the file is too big, or the bytes
            turned out larger than allowed.
        TransientError: the download failed for a network reason.
    """
    try:
        telegram_file = await bot.get_file(recording.file_id)
        local = _local_path(telegram_file.file_path) if settings.telegram_local_mode else None
        if local is not None:
            # A local Bot API server hands over a path on its disk (files up to 2 GB);
            # PTB would read it synchronously and stall every chat meanwhile.
            async with aiofiles.open(local, "rb") as handle:
                data = await handle.read(download_limit_bytes(settings) + 1)
        else:
            data = bytes(await telegram_file.download_as_bytearray())
    except BadRequest as exc:
        if "too big" in exc.message.lower():
            raise AudioTooLargeError(
                f"Telegram lets bots download files up to {format_size(BOT_DOWNLOAD_LIMIT_BYTES)}, "
                f"and {recording.file_name} is larger.",
                hint="Send a shorter clip or a compressed version (a voice note or an MP3 is plenty).") from exc
        raise
    except NetworkError as exc:
        raise TransientError(f"Downloading the recording from Telegram failed: {exc.message}") from exc
    check_size(len(data), settings, name=recording.file_name)
    return data
