"""Delivering every job exactly once across bot restarts and several bot instances (both platforms).

Exports: Deliveries, Progress, step_id, instance_id.

Each bot process has one Deliveries with its own owner id. Jobs it submits are
booked as undelivered and leased to it (JobClient.submit(delivered_by=...));
``deliver_once`` wraps the coroutine that follows a job and posts its outcome:
it keeps the lease alive meanwhile, marks the job delivered when the coroutine
returns, and releases the lease when the bot shuts down mid-job, so the next
instance takes over at once. ``run`` sweeps the platform's undelivered jobs at
startup and every ``settings.delivery_sweep_s`` after, claiming each one nobody
holds (a restart's leftovers, or a crashed instance's once its lease lapsed)
and handing it to the bot's ``resume`` callback.

Results usually take several messages. The follower gets a Progress from
``progress(job_id)``, loads it before posting, skips the files earlier attempts
posted and records each message right after sending it, so an instance that
dies half-way is resumed where it stopped: only the message being sent at that
moment can reach the chat twice. See worker.deliveries for the guarantees.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
from typing import Any, Awaitable, Callable, Iterable

from stemscribe.core.errors import TransientError

log = logging.getLogger(__name__)


def instance_id(platform: str) -> str:
    """A fresh owner id for one bot process: platform, host, pid and a random tag."""
    return f"{platform}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def step_id(artifacts: Iterable[str]) -> str:
    """The step id of one posted message: the artifact names it carried, sorted, as JSON.

    A message is named by what it carries rather than by its place in a plan,
    because a resumed plan can differ (Discord's upload limit depends on where the
    result goes); either way a file recorded as posted is not posted again.
    """
    return json.dumps(sorted(artifacts))


class Progress:
    """Which messages of one job's results reached the chat: read before posting, recorded after each one.

    Args:
        deliveries: this instance's Deliveries.
        job_id: the job being delivered.
    """

    def __init__(self, deliveries: "Deliveries", job_id: str) -> None:
        self._deliveries = deliveries
        self.job_id = job_id
        #: Artifacts posted by earlier attempts (set by load()); never post these again.
        self.earlier_files: frozenset[str] = frozenset()
        #: How many messages earlier attempts posted (set by load()); 0 for a first attempt.
        self.earlier_messages = 0

    async def load(self) -> None:
        """Read what earlier attempts posted. If Redis cannot say, assume nothing (better twice than never)."""
        try:
            steps = await asyncio.to_thread(self._deliveries.client.delivery_steps, self.job_id,
                                            self._deliveries.platform)
        except TransientError as error:
            log.warning("job %s: could not read which results were posted already (%s); posting all",
                        self.job_id, error)
            steps = set()
        carried = [json.loads(step) for step in steps]
        self.earlier_files = frozenset(name for names in carried for name in names)
        self.earlier_messages = len(carried)

    async def posted(self, artifacts: Iterable[str]) -> None:
        """Record one message, carrying these artifacts (maybe none), as posted; call right after sending it.

        If another instance has taken the job over meanwhile, the follower is stopped
        here, as when renewing the lease fails, so it posts nothing more.
        """
        await self._deliveries.record_step(self.job_id, step_id(artifacts))


class Deliveries:
    """This bot instance's part in delivering its platform's jobs.

    Args:
        client: the JobClient (synchronous; called through asyncio.to_thread).
        platform: "telegram" or "discord".
        lease_s: settings.delivery_lease_s; the lease is renewed every third of it.
        sweep_s: settings.delivery_sweep_s; how often run() looks for jobs nobody holds.
    """

    def __init__(self, client: Any, platform: str, *, lease_s: float, sweep_s: float) -> None:
        self.client = client
        self.platform = platform
        self.owner = instance_id(platform)
        self.lease_s = lease_s
        self.sweep_s = sweep_s
        # job id -> (its deliver_once task, the event set when another instance takes it over)
        self._following: dict[str, tuple[asyncio.Task | None, asyncio.Event]] = {}

    def progress(self, job_id: str) -> Progress:
        """A Progress for the follower of job_id to skip and record posted messages with."""
        return Progress(self, job_id)

    async def deliver_once(self, job_id: str, follow: Awaitable[None]) -> None:
        """Await follow (which watches the job and posts its outcome, never raising), holding the job's lease.

        Returns normally after marking the job delivered (also when follow raised, which
        is logged: a buggy follower is not retried), or early (follow cancelled) when
        another instance took the job over. Re-raises cancellation from outside
        (shutdown) after releasing the lease.
        """
        task = asyncio.current_task()
        lost = asyncio.Event()
        self._following[job_id] = (task, lost)
        keeper = asyncio.create_task(self._keep(job_id), name=f"lease-{job_id}")
        try:
            await follow
        except asyncio.CancelledError:
            if not lost.is_set():
                await self._call_quietly("release", self.client.release_delivery, job_id, self.owner)
                raise
            if task is not None:
                task.uncancel()
            log.warning("job %s: another bot instance took over its delivery; stopped following it", job_id)
            return
        except Exception:
            # A follower bug; retrying it on every sweep would repeat whatever it posted already.
            log.exception("job %s: following it failed; not retrying its delivery", job_id)
        finally:
            keeper.cancel()
            self._following.pop(job_id, None)
        if not await self._call_quietly("mark delivered", self.client.mark_delivered, job_id, self.platform,
                                        self.owner):
            log.warning("job %s: delivered here while another bot instance held it", job_id)

    async def _keep(self, job_id: str) -> None:
        """Renew the lease until cancelled; when another instance holds it, stop the follower."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                held = await asyncio.to_thread(self.client.renew_delivery, job_id, self.platform, self.owner)
            except TransientError as error:
                log.info("job %s: could not renew the delivery lease (%s); trying again", job_id, error)
                continue
            if not held:
                self._lose(job_id)
                return

    def _lose(self, job_id: str) -> None:
        """Another instance holds the job now: stop its follower (deliver_once then returns quietly)."""
        task, lost = self._following.get(job_id, (None, None))
        if lost is not None:
            lost.set()
        if task is not None:
            task.cancel()

    async def record_step(self, job_id: str, step: str) -> None:
        """Record a posted message of job_id (see Progress.posted); a Redis hiccup is logged, not raised."""
        try:
            held = await asyncio.to_thread(self.client.record_delivery_step, job_id, self.platform, self.owner,
                                           step)
        except TransientError as error:
            # Posting goes on; at worst a resume posts this one message again.
            log.warning("job %s: could not record a posted message (%s)", job_id, error)
            return
        if not held and job_id in self._following:
            self._lose(job_id)
            await asyncio.sleep(0)  # the cancellation lands here, before anything else is posted

    async def _call_quietly(self, what: str, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(method, *args)
        except TransientError as error:
            # The lease lapses by itself; at worst the job is delivered again by the next instance.
            log.warning("job %s: could not %s (%s)", args[0], what, error)
            return True

    async def sweep(self, resume: Callable[[Any], None], is_followed: Callable[[str], bool]) -> list[str]:
        """Claim every undelivered job of the platform that nobody holds and hand it to resume.

        Args:
            resume: called with the job's JobStatus (its requester.reply says where to post);
                it must start following the job through deliver_once. If it raises, the
                job cannot be delivered anywhere and is dropped from the book.
            is_followed: whether this instance follows a job already.

        Returns:
            The ids of the jobs resumed.
        """
        resumed = []
        for status in await asyncio.to_thread(self.client.undelivered, self.platform):
            if is_followed(status.job_id):
                continue
            if not await asyncio.to_thread(self.client.claim_delivery, status.job_id, self.platform, self.owner):
                continue
            log.info("job %s (%s): resuming delivery to %s", status.job_id, status.state, self.platform)
            try:
                resume(status)
            except Exception:
                # Its reply address is unusable, so no instance could ever deliver it: drop it, loudly.
                log.exception("job %s: cannot resume its delivery; giving up on it", status.job_id)
                await self._call_quietly("mark delivered", self.client.mark_delivered, status.job_id,
                                         self.platform, self.owner)
                continue
            resumed.append(status.job_id)
        return resumed

    async def run(self, resume: Callable[[Any], None], is_followed: Callable[[str], bool]) -> None:
        """Sweep now and then every sweep_s until cancelled; a failing sweep is logged and retried."""
        while True:
            try:
                await self.sweep(resume, is_followed)
            except asyncio.CancelledError:
                raise
            except TransientError as error:
                log.warning("looking for undelivered jobs failed (%s); trying again later", error)
            except Exception:
                log.exception("looking for undelivered jobs failed")
            await asyncio.sleep(self.sweep_s)
