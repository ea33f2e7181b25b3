"""How a finished job's files reach Discord: upload planning and the three routes.

Exports: PlannedFile, UploadPlan, plan_uploads, upload_name, Route, InteractionRoute,
ChannelRoute, DirectMessageRoute, deliver, fix_view, MAX_FILES_PER_MESSAGE.

Discord caps each message at 10 files and each upload at a size that depends on
the guild's boost tier (the interaction tells us the real figure). plan_uploads
packs result files into as few messages as fit, in the order users expect
(every page's preview, PDF, MusicXML, MIDI, stems), and lists what cannot be
attached at all so the reply can say so. The embed shows page 1; the previews of
later pages travel as image attachments. A Route is one place to post: the interaction's
own response (valid for 15 minutes), the channel with a mention, or a DM.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

import discord

from stemscribe.bots.common import artifact_caption, delivery_order
from stemscribe.core.plan import format_size

log = logging.getLogger(__name__)

#: Discord accepts at most this many attachments on one message.
MAX_FILES_PER_MESSAGE = 10
#: Longest message content Discord accepts.
MAX_CONTENT_CHARS = 2000
#: Embed colour of result messages.
RESULT_COLOUR = discord.Colour(0x2F6FB3)


@dataclass(frozen=True)
class PlannedFile:
    """One artifact to upload: its name in the job, the file name users see, its size."""

    artifact: str
    filename: str
    size_bytes: int


@dataclass
class UploadPlan:
    """Messages to send (each a list of files) and files too large for any message."""

    messages: list[list[PlannedFile]] = field(default_factory=list)
    too_large: list[PlannedFile] = field(default_factory=list)
    limit_bytes: int = 0

    @property
    def preview(self) -> PlannedFile | None:
        """The preview image if it travels in the first message (so the embed can show it)."""
        if self.messages:
            for planned in self.messages[0]:
                if planned.artifact == "preview.png":
                    return planned
        return None


def _slug(title: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()
    return slug[:60] or "score"


def upload_name(artifact: str, title: str) -> str:
    """The file name users download: 'autumn-leaves.pdf', 'autumn-leaves-vocals.opus'."""
    slug = _slug(title)
    fixed = {"preview.png": f"{slug}-preview.png", "score.pdf": f"{slug}.pdf",
             "score.musicxml": f"{slug}.musicxml", "score.mid": f"{slug}.mid",
             "notes.mid": f"{slug}-performance.mid"}
    if artifact in fixed:
        return fixed[artifact]
    if artifact.startswith("stems/"):
        return f"{slug}-{artifact.split('/', 1)[1]}"
    return f"{slug}-{artifact.replace('/', '-')}"


def plan_uploads(artifacts: Sequence[tuple[str, int]], *, limit_bytes: int, title: str,
                 max_files: int = MAX_FILES_PER_MESSAGE) -> UploadPlan:
    """Pack (artifact name, size) pairs into messages under Discord's limits.

    Args:
        artifacts: result files of the job; only the previews, score files and stems are sent,
            in bots.common.delivery_order.
        limit_bytes: the largest upload this guild/channel accepts; also the most one
            message may carry in total, since Discord checks the whole request.
        title: used for the file names users see.
        max_files: most files per message.

    Returns:
        An UploadPlan; files larger than limit_bytes are in too_large, in order.
    """
    plan = UploadPlan(limit_bytes=limit_bytes)
    current: list[PlannedFile] = []
    current_bytes = 0
    sizes = dict(artifacts)
    for name in delivery_order(sizes):
        planned = PlannedFile(name, upload_name(name, title), int(sizes[name]))
        if planned.size_bytes > limit_bytes:
            plan.too_large.append(planned)
            continue
        if current and (len(current) >= max_files or current_bytes + planned.size_bytes > limit_bytes):
            plan.messages.append(current)
            current, current_bytes = [], 0
        current.append(planned)
        current_bytes += planned.size_bytes
    if current:
        plan.messages.append(current)
    return plan


def too_large_note(plan: UploadPlan) -> str:
    """A sentence naming each file that could not be attached, or '' when all fit."""
    if not plan.too_large:
        return ""
    names = ", ".join(f"{artifact_caption(p.artifact)} ({format_size(p.size_bytes)})" for p in plan.too_large)
    return (f"Could not attach {names}: uploads here are limited to {format_size(plan.limit_bytes)}. "
            "Ask a server admin about boosting, or try a shorter recording.")


class Route:
    """One place to post results; send() posts a message, first() may replace a placeholder."""

    #: Shown after the route in logs.
    name = "route"

    async def first(self, *, content: str, embed: discord.Embed | None = None,
                    files: Sequence[discord.File] = (), view: discord.ui.View | None = None) -> None:
        """Post the main message (the result, or the final error text), with its buttons (view) if any."""
        await self.send(content=content, embed=embed, files=files, view=view)

    async def send(self, *, content: str, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = (), view: discord.ui.View | None = None) -> None:
        raise NotImplementedError


class InteractionRoute(Route):
    """The interaction's own deferred response, then followups; valid while the token lives."""

    name = "interaction"

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction

    async def first(self, *, content: str, embed: discord.Embed | None = None,
                    files: Sequence[discord.File] = (), view: discord.ui.View | None = None) -> None:
        extra = {"view": view} if view is not None else {}
        await self.interaction.edit_original_response(content=content, embed=embed, attachments=list(files), **extra)

    async def send(self, *, content: str, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = (), view: discord.ui.View | None = None) -> None:
        kwargs = {"embed": embed} if embed is not None else {}
        if view is not None:
            kwargs["view"] = view
        await self.interaction.followup.send(content=content or None, files=list(files), wait=True, **kwargs)


class ChannelRoute(Route):
    """A normal channel message that mentions the requester (after the token expired)."""

    name = "channel"

    def __init__(self, channel: discord.abc.Messageable, user: discord.abc.User) -> None:
        self.channel = channel
        self.user = user

    async def first(self, *, content: str, embed: discord.Embed | None = None,
                    files: Sequence[discord.File] = (), view: discord.ui.View | None = None) -> None:
        await self.send(content=f"{self.user.mention} {content}", embed=embed, files=files, view=view)

    async def send(self, *, content: str, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = (), view: discord.ui.View | None = None) -> None:
        kwargs = {"embed": embed} if embed is not None else {}
        if view is not None:
            kwargs["view"] = view
        await self.channel.send(content=content.strip()[:MAX_CONTENT_CHARS] or None, files=list(files),
                                allowed_mentions=discord.AllowedMentions(users=[self.user], everyone=False,
                                                                         roles=False), **kwargs)


class DirectMessageRoute(Route):
    """A direct message to the requester, when the channel does not let us post."""

    name = "direct message"

    def __init__(self, user: discord.abc.User, *, reason: str) -> None:
        self.user = user
        self.reason = reason
        self._explained = False

    async def send(self, *, content: str, embed: discord.Embed | None = None,
                   files: Sequence[discord.File] = (), view: discord.ui.View | None = None) -> None:
        if not self._explained:
            content = f"{self.reason}\n{content}".strip()
            self._explained = True
        kwargs = {"embed": embed} if embed is not None else {}
        if view is not None:
            kwargs["view"] = view
        await self.user.send(content=content[:MAX_CONTENT_CHARS] or None, files=list(files), **kwargs)


def fix_view(job_id: str, summary: dict) -> discord.ui.View | None:
    """The correction buttons under a score (bots.corrections.suggestions) plus "Other fix…", which opens a form.

    The buttons have no callbacks of their own: TranscribeCog.on_interaction answers every
    ``fx:`` custom id, so they keep working after a restart. None when there is nothing to offer.
    """
    from stemscribe.bots.corrections import BUTTON_PREFIX, button_data, suggestions

    view = discord.ui.View(timeout=None)
    for suggestion in suggestions(summary):
        view.add_item(discord.ui.Button(label=suggestion.label[:80], style=discord.ButtonStyle.secondary,
                                        custom_id=button_data(job_id, suggestion.changes)))
    view.add_item(discord.ui.Button(label="Other fix\u2026", style=discord.ButtonStyle.primary,
                                    custom_id=f"{BUTTON_PREFIX}m:{job_id}"))
    return view


#: Builds the message(s) for a route; deliver() retries it on the next route after a failure.
Composer = Callable[[Route], Awaitable[None]]


def is_expired_token(error: discord.HTTPException) -> bool:
    """True for Discord's answers to a dead interaction token (401 / Unknown Webhook / Unknown Interaction)."""
    return error.status == 401 or error.code in (50027, 10015, 10062)


async def deliver(compose: Composer, routes: Sequence[Callable[[], Route | None]]) -> Route | None:
    """Run compose on each route in turn until one works.

    Args:
        compose: posts everything through the route it is given.
        routes: route factories in order of preference; a factory may return None to skip.

    Returns:
        The route that worked, or None when every route failed (already logged).
    """
    for make in routes:
        route = make()
        if route is None:
            continue
        try:
            await compose(route)
            return route
        except (discord.Forbidden, discord.NotFound) as error:
            # Forbidden: no permission to post there; NotFound: channel deleted or token gone.
            log.info("cannot post through %s (%s); trying the next route", route.name, error.text)
        except discord.HTTPException as error:
            if not is_expired_token(error):
                raise
            log.info("interaction token expired before delivery; trying the next route")
    log.warning("no route left to deliver a result; the requester was not told")
    return None
