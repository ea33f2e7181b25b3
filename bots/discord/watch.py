"""Follow one queued job: edit the interaction's response with progress, then deliver.

Exports: Timings, JobWatch, watch_job, resumed_watch, progress_line, TERMINAL_STATES.

A JobWatch polls JobClient.status from a background task, edits the deferred
response at most once per Timings.edit_interval_s, and when the job ends posts
the result (embed, preview, files) or the mapped error. The interaction token
lives 15 minutes; shortly before it dies the response says the result will come
in the channel, and delivery then goes to the channel with a mention, or by DM
when the bot may not post there.

After a restart, resumed_watch rebuilds the interaction from the reply address
stored with the job, so a resumed job goes down the same path: progress edits
and the result in the response while its token lives, else the channel or DM.
"""

from __future__ import annotations

import dataclasses
import asyncio
import io
import logging
from dataclasses import dataclass
from typing import Any

import discord

from stemscribe.bots.common import artifact_caption, outcome_text, progress_text, summary_line, user_message
from stemscribe.bots.deliveries import Progress
from stemscribe.core.contract import JobError, JobState
from stemscribe.core.errors import StemscribeError, TransientError

from .delivery import (
    ChannelRoute,
    DirectMessageRoute,
    InteractionRoute,
    RESULT_COLOUR,
    Route,
    UploadPlan,
    deliver,
    fix_view,
    is_expired_token,
    plan_uploads,
    too_large_note,
)

log = logging.getLogger(__name__)

#: Job states after which nothing changes any more.
TERMINAL_STATES = frozenset(state for state in JobState if state.final)


@dataclass(frozen=True)
class Timings:
    """Clock settings of the Discord front end (tests shorten them).

    token_lifetime_s: how long Discord honours an interaction token (15 minutes).
    token_margin_s: stop using the token this long before it dies.
    poll_interval_s: how often a job's status is read from the queue.
    edit_interval_s: least time between two edits of one progress message.
    guild_ready_timeout_s: how long discord.py waits for more guilds at startup.
    transient_patience_s: how long status reads may keep failing (Redis down) before giving up.
    """

    token_lifetime_s: float = 15 * 60
    token_margin_s: float = 45.0
    poll_interval_s: float = 1.0
    edit_interval_s: float = 2.5
    guild_ready_timeout_s: float = 2.0
    transient_patience_s: float = 300.0


@dataclass
class JobWatch:
    """What the watcher needs to know about one submitted job.

    received_at: loop.time() when the interaction arrived (its token's birth).
    title: shown on the result embed and used for file names.
    shown: the text the response shows now (the "queued" line), so it is not sent twice.
    """

    job_id: str
    interaction: discord.Interaction
    received_at: float
    title: str
    shown: str = ""


def resumed_watch(bot: Any, status: Any) -> JobWatch:
    """A JobWatch for a job submitted before this process started, from its stored reply address.

    Args:
        bot: the logged-in StemscribeBot.
        status: the job's JobStatus; requester.reply is what cog._requester stored at submit.

    Raises:
        KeyError, ValueError: the address lacks the interaction or the user (nowhere to deliver).
    """
    reply = status.requester.reply
    user = dict(reply["user"])
    payload: dict[str, Any] = {
        "id": str(reply["interaction_id"]), "application_id": str(reply["application_id"]),
        "token": str(reply["interaction_token"]), "type": discord.InteractionType.application_command.value,
        "version": 1, "attachment_size_limit": int(reply.get("attachment_size_limit")
                                                    or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES)}
    if reply.get("guild_id"):
        payload["guild_id"] = str(reply["guild_id"])
        payload["member"] = {"user": user, "roles": [], "flags": 0, "joined_at": None}
        if reply.get("channel_id"):
            payload["channel"] = {"id": str(reply["channel_id"]), "type": int(reply.get("channel_type") or 0),
                                  "name": "", "guild_id": str(reply["guild_id"])}
    else:
        payload["user"] = user
    # discord.py builds interactions from gateway payloads only; this is the same constructor.
    interaction = discord.Interaction(data=payload, state=bot._connection)  # noqa: SLF001
    age_s = (discord.utils.utcnow() - interaction.created_at).total_seconds()
    return JobWatch(job_id=status.job_id, interaction=interaction,
                    received_at=asyncio.get_running_loop().time() - age_s, title=str(reply.get("title") or "score"))


def _is_bug(error: dict) -> bool:
    """True when a failed job's stored error is not one of ours (user, transient, cancel)."""
    return JobError.from_dict(error).is_bug


def progress_line(job_id: str, status: Any) -> str:
    """The progress message: the shared progress text plus the job id for /cancel."""
    text = progress_text(status.state, stage=status.stage, percent=status.percent,
                         message=status.message, position=status.position)
    return f"{text}\nJob `{job_id}` · /cancel to stop it"


def _token_deadline(watch: JobWatch, timings: Timings) -> float:
    return watch.received_at + timings.token_lifetime_s - timings.token_margin_s


async def watch_job(bot: Any, watch: JobWatch) -> None:
    """Poll the job until it ends, showing progress, then deliver its outcome.

    A bug anywhere in here still reaches the user as an apology quoting the job id.

    Args:
        bot: the StemscribeBot (gives jobs, timings and the channel/user caches).
        watch: the job and its interaction.
    """
    try:
        status = await _follow(bot, watch)
        token_alive = asyncio.get_running_loop().time() < _token_deadline(watch, bot.timings)
        await _finish(bot, watch, status, token_alive=token_alive)
    except asyncio.CancelledError:
        raise
    except StemscribeError as error:
        await _tell(bot, watch, user_message(error, job_id=watch.job_id))
    except Exception as error:
        log.error("delivering job %s failed", watch.job_id, exc_info=error)
        await _tell(bot, watch, user_message(error, job_id=watch.job_id))


async def _follow(bot: Any, watch: JobWatch) -> Any:
    """Edit the progress message until the job reaches a terminal state; returns that status."""
    loop = asyncio.get_running_loop()
    timings: Timings = bot.timings
    last_text, warned = watch.shown, False
    last_edit = loop.time() if watch.shown else float("-inf")
    failing_since: float | None = None
    while True:
        try:
            status = await asyncio.to_thread(bot.jobs.status, watch.job_id)
            failing_since = None
        except TransientError:
            # Redis restarts are survivable: keep polling for a while before giving up.
            failing_since = failing_since if failing_since is not None else loop.time()
            if loop.time() - failing_since > timings.transient_patience_s:
                raise
            await asyncio.sleep(timings.poll_interval_s)
            continue
        if status.state in TERMINAL_STATES:
            return status
        now = loop.time()
        deadline = _token_deadline(watch, timings)
        text = progress_line(watch.job_id, status)
        if now < deadline and not warned and now + timings.poll_interval_s >= deadline:
            text += "\nThis is taking a while: I will post the result in this channel and mention you."
            warned, last_edit = True, float("-inf")
        if now < deadline and text != last_text and now - last_edit >= timings.edit_interval_s:
            try:
                await watch.interaction.edit_original_response(content=text)
                last_text, last_edit = text, now
            except discord.HTTPException as error:
                if not is_expired_token(error):
                    log.warning("progress edit for job %s failed: %s", watch.job_id, error)
        await asyncio.sleep(timings.poll_interval_s)


async def _tell(bot: Any, watch: JobWatch, text: str) -> None:
    """Deliver one line of text through the best route still open."""
    token_alive = asyncio.get_running_loop().time() < _token_deadline(watch, bot.timings)

    async def compose(route: Route) -> None:
        await route.first(content=text)
    await deliver(compose, _routes(bot, watch, token_alive=token_alive))


def _routes(bot: Any, watch: JobWatch, *, token_alive: bool) -> list:
    interaction = watch.interaction
    user = interaction.user
    channel_id = interaction.channel_id

    def via_interaction() -> Route | None:
        return InteractionRoute(interaction) if token_alive else None

    def via_channel() -> Route | None:
        if channel_id is None or interaction.guild_id is None:
            return None
        channel = bot.get_channel(channel_id) or bot.get_partial_messageable(channel_id, guild_id=interaction.guild_id)
        return ChannelRoute(channel, user)

    def via_dm() -> Route | None:
        where = f"<#{channel_id}>" if channel_id else "that channel"
        return DirectMessageRoute(user, reason=f"I could not post in {where} (I am missing the permission to "
                                                "send messages or attach files there), so here it is by DM.")

    return [via_interaction, via_channel, via_dm]


def _limit_for(bot: Any, watch: JobWatch, route: Route) -> int:
    """The real upload limit of where the route posts."""
    if isinstance(route, InteractionRoute):
        return watch.interaction.filesize_limit
    if isinstance(route, ChannelRoute) and watch.interaction.guild_id is not None:
        guild = bot.get_guild(watch.interaction.guild_id)
        if guild is not None:
            return min(guild.filesize_limit, watch.interaction.filesize_limit)
        return watch.interaction.filesize_limit
    return discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES


async def _finish(bot: Any, watch: JobWatch, status: Any, *, token_alive: bool) -> None:
    if status.state != "finished":
        if status.state == JobState.FAILED and _is_bug(status.error or {}):
            log.error("job %s failed unexpectedly: %s", watch.job_id, status.error)
        await _tell(bot, watch, outcome_text(status.state, status.error, job_id=watch.job_id))
        return

    output = await asyncio.to_thread(bot.jobs.result, watch.job_id)
    if output.summary.get("title"):
        # The score's own title, as core decided it, heads the card and names the files.
        watch = dataclasses.replace(watch, title=str(output.summary["title"]))
    progress: Progress = bot.deliveries.progress(watch.job_id)
    await progress.load()
    # Only files no earlier attempt posted. Fixed for this attempt: when a route fails half-way, the
    # next one (a DM, say) gets all of them again, as the requester may not see the first one's messages.
    sizes = [(a.name, a.size_bytes) for a in output.artifacts if a.name not in progress.earlier_files]
    cache: dict[str, bytes] = {}

    async def payload(name: str) -> bytes:
        if name not in cache:
            cache[name] = await asyncio.to_thread(bot.jobs.fetch_artifact, watch.job_id, name)
        return cache[name]

    async def compose(route: Route) -> None:
        # Planned per route (the upload limit depends on it), so it may differ from an earlier attempt's plan.
        plan = plan_uploads(sizes, limit_bytes=_limit_for(bot, watch, route), title=watch.title)
        await _post_result(route, plan, output.summary, watch, payload, progress)

    await deliver(compose, _routes(bot, watch, token_alive=token_alive))


def _result_embed(plan: UploadPlan, summary: dict, watch: JobWatch) -> discord.Embed:
    """The result card: title, summary, notes, and the list of files the plan attaches."""
    embed = discord.Embed(title=watch.title[:256], description=summary_line(summary)[:4000] or None,
                          colour=RESULT_COLOUR)
    if plan.preview is not None:
        embed.set_image(url=f"attachment://{plan.preview.filename}")
    warnings = [str(w) for w in summary.get("warnings", [])][:3]
    if warnings:
        embed.add_field(name="Notes", value="\n".join(warnings)[:1024], inline=False)
    listed = [f"{artifact_caption(p.artifact)}: {p.filename}" for group in plan.messages for p in group]
    if listed:
        embed.add_field(name="Files", value="\n".join(listed)[:1024], inline=False)
    embed.set_footer(text=f"job {watch.job_id}")
    return embed


async def _post_result(route: Route, plan: UploadPlan, summary: dict, watch: JobWatch, payload,
                       progress: Progress) -> None:
    """Send the plan's messages through one route, recording each in progress: the embed rides on the first.

    After an earlier attempt posted some messages, the plan holds only the files
    still missing and they go as the parts after those (nothing, if none is missing).
    """
    earlier = progress.earlier_messages
    total = earlier + len(plan.messages)
    note = too_large_note(plan)
    if not total:
        await route.first(content=("Your score is ready. " + note).strip(), embed=_result_embed(plan, summary, watch))
        await progress.posted([])
        return
    for index, group in enumerate(plan.messages, start=earlier):
        files = [discord.File(io.BytesIO(await payload(p.artifact)), filename=p.filename) for p in group]
        tail = "\n" + note if index == total - 1 and note else ""
        if index == 0:
            content = "Your score is ready." + (f" ({total} messages)" if total > 1 else "")
            await route.first(content=(content + tail).strip(), embed=_result_embed(plan, summary, watch),
                              files=files, view=fix_view(watch.job_id, summary))
        else:
            await route.send(content=f"Part {index + 1} of {total}." + tail, files=files)
        await progress.posted([p.artifact for p in group])
