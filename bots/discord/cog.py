"""The slash commands and the "Transcribe" message menu.

Exports: TranscribeCog, audio_attachments, check_attachments, defaults_scope, AUDIO_EXTENSIONS.

Handlers stay thin: they turn command values into option pairs, let
stemscribe.core.options validate them, run the cheap checks (is it audio, is it
small enough), enqueue through the JobClient and hand the job to a watcher.
Every user-caused failure is answered with the shared wording of
stemscribe.bots.common; anything else goes to the tree's error handler.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Literal, Optional

import discord
from discord import app_commands
from discord.ext import commands

from stemscribe.bots.common import HELP_TEXT, user_message
from stemscribe.core.errors import OptionsError, StemscribeError, UnsupportedFormatError
from stemscribe.core.instruments import INSTRUMENTS, instrument_names
from stemscribe.core.options import Options, merge_option_pairs, options_from_pairs, split_option_words
from stemscribe.core.plan import InputFacts, Limits, check_inputs
from stemscribe.worker.client import InputFile, Requester

from .watch import TERMINAL_STATES, JobWatch, progress_line

if TYPE_CHECKING:
    from .bot import StemscribeBot

log = logging.getLogger(__name__)

#: File endings accepted as audio when Discord sends no content type.
AUDIO_EXTENSIONS = frozenset({".mp3", ".wav", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac", ".wma",
                              ".aif", ".aiff", ".webm", ".mp4", ".m4v", ".mov", ".mkv", ".caf", ".amr", ".3gp"})

YesNo = Literal["yes", "no"]
ModeWord = Literal["auto", "solo", "piano", "stems", "multitrack"]
LevelWord = Literal["easy", "full"]

_OPTION_HELP = {
    "mode": "auto lets stemscribe choose; solo, piano (reduction), stems (one staff per instrument), multitrack",
    "stems": "Also send the separated instrument tracks as audio",
    "instrument": "The (main) instrument, e.g. violin, guitar, piano",
    "title": "Title printed on the score",
    "level": "Piano reduction detail: easy or full",
    "more": 'Other options as words, e.g. tempo:92 time:6/8 key:"D minor" chords:no',
}


def is_audio(attachment: discord.Attachment) -> bool:
    """Whether an attachment looks like audio (or video with sound) by type or file ending."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type.startswith(("audio/", "video/")):
        return True
    return PurePath(attachment.filename).suffix.lower() in AUDIO_EXTENSIONS


def audio_attachments(message: discord.Message) -> list[discord.Attachment]:
    """The attachments of a message that look like audio."""
    return [a for a in message.attachments if is_audio(a)]


def check_attachments(attachments: list[discord.Attachment], options: Options, limits: Limits) -> None:
    """The cheap checks before downloading anything (sizes and counts: core.plan.check_inputs).

    Raises:
        UnsupportedFormatError: no attachment, or one that is not audio.
        AudioTooLargeError: a file over this server's size limit.
        EmptyAudioError: an empty file.
        OptionsError: more files than one job takes for the mode.
    """
    if not attachments:
        raise UnsupportedFormatError("That message has no audio attachments.",
                                     hint="Use it on a message with a recording (mp3, wav, ogg, flac, m4a or a video).")
    for attachment in attachments:
        if not is_audio(attachment):
            raise UnsupportedFormatError(f"{attachment.filename} is not an audio file.",
                                         hint="Attach a recording: mp3, wav, ogg, flac, m4a or a video with sound.")
    check_inputs([InputFacts(a.filename, a.size) for a in attachments], options, limits)


@dataclass(frozen=True)
class _Queued:
    """The status of a job just queued, in the shape progress_line reads."""

    position: int
    state: str = "queued"
    stage: str = "queued"
    percent: float = 0.0
    message: str = ""


def defaults_scope(guild_id: int) -> str:
    """The key of a server's saved defaults in the job store."""
    return f"discord:guild:{guild_id}"


def _requester(interaction: discord.Interaction, *, title: str | None = None) -> Requester:
    """Who asked; with a title (at submit), also everything needed to resume the job after a restart."""
    reply = {"guild_id": interaction.guild_id, "channel_id": interaction.channel_id,
             "application_id": interaction.application_id, "interaction_id": interaction.id}
    if title is not None:
        user = interaction.user
        # The token lets a restarted bot keep editing the response while it lives (15 minutes).
        reply.update(interaction_token=interaction.token, title=title,
                     attachment_size_limit=interaction.filesize_limit,
                     channel_type=interaction.channel.type.value if interaction.channel is not None else None,
                     user={"id": str(user.id), "username": user.name, "discriminator": user.discriminator,
                           "global_name": user.global_name, "avatar": None})
    return Requester(platform="discord", user_id=str(interaction.user.id),
                     chat_id=str(interaction.channel_id or interaction.user.id), reply=reply)


def _pairs(**values: Optional[str]) -> dict[str, str]:
    """Slash-command values (None = not given) plus the free 'more' words, as option pairs."""
    more = values.pop("more", None)
    given = {key: value for key, value in values.items() if value is not None}
    extra = split_option_words(more) if more else {}
    for key in extra.keys() & given.keys():
        raise OptionsError(f"{key} is given twice.", hint=f"Drop {key}:{extra[key]} from the extra options.")
    return {**given, **extra}


def _describe_pairs(pairs: dict) -> str:
    return " ".join(f'{k}:"{v}"' if " " in str(v) else f"{k}:{v}" for k, v in pairs.items())


class TranscribeCog(commands.Cog):
    """/transcribe, the Transcribe menu, /status, /cancel, /help, /defaults and /fix (with the score's buttons)."""

    defaults = app_commands.Group(name="defaults", description="Server-wide default options for /transcribe",
                                  guild_only=True)

    def __init__(self, bot: "StemscribeBot") -> None:
        self.bot = bot
        self._fixes: set[asyncio.Task] = set()
        self.menu = app_commands.ContextMenu(name="Transcribe", callback=self.transcribe_message)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # ------------------------------------------------------------------ transcribe

    @app_commands.command(name="transcribe")
    @app_commands.describe(file="The recording: mp3, wav, ogg, flac, m4a or a video with sound", **_OPTION_HELP)
    async def transcribe(self, interaction: discord.Interaction, file: discord.Attachment,
                         mode: Optional[ModeWord] = None, stems: Optional[YesNo] = None,
                         instrument: Optional[str] = None, title: Optional[app_commands.Range[str, 1, 120]] = None,
                         level: Optional[LevelWord] = None, more: Optional[str] = None) -> None:
        """Write a recording down as sheet music (PDF, preview, MusicXML, MIDI)."""
        received = asyncio.get_running_loop().time()
        await interaction.response.defer(thinking=True)
        try:
            pairs = _pairs(mode=mode, stems=stems, instrument=instrument, title=title, level=level, more=more)
        except OptionsError as error:
            await interaction.edit_original_response(content=user_message(error))
            return
        await self._start(interaction, [file], pairs, received=received)

    @transcribe.autocomplete("instrument")
    async def instrument_autocomplete(self, interaction: discord.Interaction,
                                      current: str) -> list[app_commands.Choice[str]]:
        """Suggest instruments matching what the user typed so far."""
        return instrument_choices(current)

    async def transcribe_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Transcribe the audio attachments of a message (several become one multitrack score)."""
        received = asyncio.get_running_loop().time()
        await interaction.response.defer(thinking=True)
        audio = audio_attachments(message)
        pairs = {"mode": "multitrack"} if len(audio) > 1 else {}
        await self._start(interaction, audio, pairs, received=received)

    async def _start(self, interaction: discord.Interaction, attachments: list[discord.Attachment],
                     pairs: dict[str, str], *, received: float) -> None:
        """Validate, enqueue and start watching one job; answer user errors in place."""
        try:
            saved = await self._saved_defaults(interaction.guild_id)
            options = options_from_pairs(merge_option_pairs(saved, pairs))
            check_attachments(attachments, options, Limits.from_settings(self.bot.settings))
            files = [InputFile(name=a.filename, data=await a.read()) for a in attachments]
            title = options.title or PurePath(attachments[0].filename).stem
            submission = await asyncio.to_thread(self.bot.jobs.submit, files, options,
                                                 _requester(interaction, title=title),
                                                 delivered_by=self.bot.deliveries.owner)
        except StemscribeError as error:
            await interaction.edit_original_response(content=user_message(error))
            return
        except discord.HTTPException as error:
            log.warning("downloading an attachment failed: %s", error)
            await interaction.edit_original_response(
                content="I could not download your file from Discord. Please try again in a minute.")
            return
        queued = progress_line(submission.job_id, _Queued(submission.position))
        await interaction.edit_original_response(content=queued)
        self.bot.watch(JobWatch(job_id=submission.job_id, interaction=interaction, received_at=received,
                                title=title, shown=queued))

    async def _saved_defaults(self, guild_id: int | None) -> dict:
        if guild_id is None:
            return {}
        return await asyncio.to_thread(self.bot.jobs.load_defaults, defaults_scope(guild_id)) or {}

    # ------------------------------------------------------------------ status, cancel, help

    @app_commands.command(name="status")
    async def status(self, interaction: discord.Interaction) -> None:
        """Show your queued and running transcriptions."""
        jobs = await asyncio.to_thread(self.bot.jobs.jobs_for, _requester(interaction))
        if not jobs:
            await interaction.response.send_message("You have no transcriptions queued or running.", ephemeral=True)
            return
        lines = [progress_line(job.job_id, job).replace("\n", " · ") for job in jobs]
        await interaction.response.send_message("\n".join(lines)[:2000], ephemeral=True)

    @app_commands.command(name="cancel")
    @app_commands.describe(job="Which job to stop (leave empty to stop your only running job)")
    async def cancel(self, interaction: discord.Interaction, job: Optional[str] = None) -> None:
        """Stop one of your transcriptions."""
        requester = _requester(interaction)
        if job is None:
            active = [j for j in await asyncio.to_thread(self.bot.jobs.jobs_for, requester)
                      if j.state not in TERMINAL_STATES]
            if not active:
                await interaction.response.send_message("You have nothing queued or running.", ephemeral=True)
                return
            if len(active) > 1:
                await interaction.response.send_message(
                    f"You have {len(active)} jobs running: pick one with /cancel job:.", ephemeral=True)
                return
            job = active[0].job_id
        if await asyncio.to_thread(self.bot.jobs.cancel, job, requester):
            await interaction.response.send_message(f"Cancelling job `{job}`.", ephemeral=True)
        else:
            await interaction.response.send_message(
                f"I could not cancel `{job}`: it has ended already, or it is not yours.", ephemeral=True)

    @cancel.autocomplete("job")
    async def cancel_autocomplete(self, interaction: discord.Interaction,
                                  current: str) -> list[app_commands.Choice[str]]:
        """Offer the user's own running jobs."""
        jobs = await asyncio.to_thread(self.bot.jobs.jobs_for, _requester(interaction))
        return [app_commands.Choice(name=f"{j.job_id} ({j.state})", value=j.job_id)
                for j in jobs if j.state not in TERMINAL_STATES and current.lower() in j.job_id.lower()][:25]

    @app_commands.command(name="help")
    async def help(self, interaction: discord.Interaction) -> None:
        """How to use stemscribe: modes, options and examples."""
        intro = ("Use /transcribe with an audio file, or right-click a message with audio and pick "
                 "Apps → Transcribe. Extra options go in the `more` field.\n\n")
        await interaction.response.send_message((intro + HELP_TEXT)[:2000], ephemeral=True)

    # ------------------------------------------------------------------ corrections (bots.corrections)

    @app_commands.command(name="fix")
    @app_commands.describe(job="Which score (leave empty for your latest in this channel)",
                           time="Another meter, e.g. 6/8", tempo="Another tempo in bpm, e.g. 140",
                           key='Another key, e.g. "E minor"', transpose="An interval (+2, -m3) or an instrument "
                           "(Bb-clarinet, alto-sax, F-horn)", level="Piano reduction detail",
                           more="Other changes as words, e.g. chords:no")
    async def fix(self, interaction: discord.Interaction, job: Optional[str] = None, time: Optional[str] = None,
                  tempo: Optional[str] = None, key: Optional[str] = None, transpose: Optional[str] = None,
                  level: Optional[LevelWord] = None, more: Optional[str] = None) -> None:
        """Write one of your scores again in another meter, tempo, key, level or transposition."""
        try:
            pairs = _pairs(time=time, tempo=tempo, key=key, transpose=transpose, level=level, more=more)
            if not pairs:
                raise OptionsError("Tell me what to change.", hint="For example /fix time:6/8 or /fix transpose:Bb.")
        except OptionsError as error:
            await interaction.response.send_message(user_message(error), ephemeral=True)
            return
        if job is None:
            jobs = await asyncio.to_thread(self.bot.jobs.jobs_for, _requester(interaction))
            finished = [j for j in jobs if j.state == "finished"
                        and str(j.requester.chat_id) == str(interaction.channel_id or interaction.user.id)]
            if not finished:
                await interaction.response.send_message("You have no score here to fix; send a recording with "
                                                        "/transcribe first.", ephemeral=True)
                return
            job = finished[0].job_id
        await self._correct(interaction, job, pairs)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """The buttons under a score (``fx:<job>:<word>=<value>``), "Other fix…" and its form."""
        from stemscribe.bots.corrections import BUTTON_PREFIX, parse_button_data, parse_fix_text

        data = interaction.data or {}
        custom_id = str(data.get("custom_id") or "")
        if interaction.type == discord.InteractionType.component and custom_id.startswith(f"{BUTTON_PREFIX}m:"):
            await interaction.response.send_modal(FixForm(custom_id))
            return
        if interaction.type == discord.InteractionType.component:
            parsed = parse_button_data(custom_id)
            if parsed is not None:
                await self._correct(interaction, *parsed)
            return
        if interaction.type == discord.InteractionType.modal_submit and custom_id.startswith(f"{BUTTON_PREFIX}m:"):
            typed = " ".join(str(c.get("value") or "") for row in data.get("components", [])
                             for c in row.get("components", []))
            try:
                _, changes = parse_fix_text(typed)
            except OptionsError as error:
                await interaction.response.send_message(user_message(error), ephemeral=True)
                return
            await self._correct(interaction, custom_id.split(":", 1)[1], changes)

    async def _correct(self, interaction: discord.Interaction, job_id: str, changes: dict) -> None:
        """Queue a correction (refusals and expiry answered privately), then post the version as a new message."""
        from stemscribe.bots import corrections
        from stemscribe.core.revise import version_label

        moderator = bool(interaction.guild_id) and bool(getattr(interaction.permissions, "manage_messages", False))
        try:
            correction = await corrections.submit(self.bot.jobs, job_id, changes, _requester(interaction),
                                                  moderator=moderator)
            status = await asyncio.to_thread(self.bot.jobs.status, job_id)
        except StemscribeError as error:
            await interaction.response.send_message(user_message(error), ephemeral=True)
            return
        label = version_label(correction.version, changes)
        await interaction.response.send_message(f"Writing {label}\u2026")
        title = str((status.requester.reply or {}).get("title") or "score")
        task = asyncio.create_task(self._post_version(interaction, correction, title, label),
                                   name=f"fix-{correction.correction_id}")
        self._fixes.add(task)
        task.add_done_callback(self._fixes.discard)

    async def _post_version(self, interaction: discord.Interaction, correction, title: str, label: str) -> None:
        """Edit the "Writing version n" message into the version: embed, preview, files, the buttons again."""
        import io

        from stemscribe.bots import corrections
        from stemscribe.bots.common import summary_line

        from .delivery import RESULT_COLOUR, fix_view, upload_name

        try:
            output, error = await corrections.follow_version(self.bot.jobs, correction.correction_id)
            if output is None:
                await interaction.edit_original_response(content=user_message(error or {},
                                                                              job_id=correction.correction_id))
                return
            slug = upload_name("score.pdf", title)[: -len(".pdf")]
            names = corrections.delivered_names(output.artifacts)[:10]
            files, preview = [], None
            for name in names:
                data = await asyncio.to_thread(self.bot.jobs.fetch_artifact, correction.job_id, name)
                filename = corrections.version_file_name(slug, name)
                files.append(discord.File(io.BytesIO(data), filename=filename))
                if name.endswith("/preview.png"):
                    preview = filename
            caption = corrections.version_caption(output.summary)
            embed = discord.Embed(title=f"{title} \u2014 {label}"[:256], colour=RESULT_COLOUR,
                                  description=summary_line(output.summary)[:4000] or None)
            if preview:
                embed.set_image(url=f"attachment://{preview}")
            embed.set_footer(text=f"job {correction.job_id}")
            await interaction.edit_original_response(content=caption[:2000], embed=embed, attachments=files,
                                                     view=fix_view(correction.job_id, output.summary))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a background task: the user still hears about it
            log.error("delivering correction %s failed", correction.correction_id, exc_info=error)
            try:
                await interaction.edit_original_response(content=user_message(error,
                                                                              job_id=correction.correction_id))
            except discord.HTTPException:
                log.warning("could not tell the user about correction %s", correction.correction_id)

    # ------------------------------------------------------------------ server defaults

    @defaults.command(name="show")
    async def defaults_show(self, interaction: discord.Interaction) -> None:
        """Show this server's default options."""
        saved = await self._saved_defaults(interaction.guild_id)
        text = f"Server defaults: {_describe_pairs(saved)}" if saved else "This server has no default options."
        await interaction.response.send_message(text, ephemeral=True)

    @defaults.command(name="set")
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(**{k: v for k, v in _OPTION_HELP.items() if k != "title"})
    async def defaults_set(self, interaction: discord.Interaction, mode: Optional[ModeWord] = None,
                           stems: Optional[YesNo] = None, instrument: Optional[str] = None,
                           level: Optional[LevelWord] = None, more: Optional[str] = None) -> None:
        """Set default options for everyone's /transcribe in this server (Manage Server)."""
        assert interaction.guild_id is not None  # the group is guild_only
        try:
            pairs = _pairs(mode=mode, stems=stems, instrument=instrument, level=level, more=more)
            if not pairs:
                raise OptionsError("Give at least one option to set.", hint="For example mode:piano.")
            merged = merge_option_pairs(await self._saved_defaults(interaction.guild_id), pairs)
            options_from_pairs(merged)
            await asyncio.to_thread(self.bot.jobs.save_defaults, defaults_scope(interaction.guild_id), pairs)
        except OptionsError as error:
            await interaction.response.send_message(user_message(error), ephemeral=True)
            return
        await interaction.response.send_message(f"Saved. Server defaults: {_describe_pairs(merged)}", ephemeral=True)

    @defaults_set.autocomplete("instrument")
    async def defaults_instrument_autocomplete(self, interaction: discord.Interaction,
                                               current: str) -> list[app_commands.Choice[str]]:
        """Suggest instruments matching what the user typed so far."""
        return instrument_choices(current)

    @defaults.command(name="clear")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def defaults_clear(self, interaction: discord.Interaction) -> None:
        """Remove this server's default options (Manage Server)."""
        assert interaction.guild_id is not None
        saved = await self._saved_defaults(interaction.guild_id)
        if saved:
            await asyncio.to_thread(self.bot.jobs.save_defaults, defaults_scope(interaction.guild_id),
                                    {key: None for key in saved})
        await interaction.response.send_message("Server defaults cleared.", ephemeral=True)


class FixForm(discord.ui.Modal, title="Fix this score"):
    """The "Other fix…" form: any correction typed as option words."""

    changes = discord.ui.TextInput(label="What to change", placeholder='time:6/8 tempo:140 key:"E minor" transpose:Bb',
                                   max_length=200)

    def __init__(self, custom_id: str) -> None:
        super().__init__(custom_id=custom_id, timeout=None)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """Answered by TranscribeCog.on_interaction, which sees every form of ours, also after a restart."""


def instrument_choices(current: str) -> list[app_commands.Choice[str]]:
    """Up to 25 instruments whose option word or name contains what was typed."""
    typed = current.strip().lower()
    choices = []
    for word in instrument_names():
        name = INSTRUMENTS[word].name if word in INSTRUMENTS else word
        if typed in word or typed in name.lower():
            label = name if word in INSTRUMENTS else word.replace("-", " ")
            choices.append(app_commands.Choice(name=label, value=word))
    return choices[:25]
