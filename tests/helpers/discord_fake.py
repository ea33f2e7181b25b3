"""A local fake of the Discord REST API and gateway for the Discord bot tests.

Exports: FakeDiscord, Call, Upload, snowflake.

FakeDiscord is an aiohttp server on 127.0.0.1 that speaks just enough of
Discord for the real discord.py client: the REST routes the bot uses (login,
application info, command sync, interaction callbacks, webhook edits and
followups, channel messages, DM channels, a CDN for attachments) and a JSON
gateway (HELLO, IDENTIFY -> READY, heartbeats and their ACKs, GUILD_CREATE,
dispatch of INTERACTION_CREATE). Every REST request is recorded as a Call with
its JSON body and uploaded files, so tests can assert exactly what the bot sent.

Behaviour the tests can switch:
  * ``forbidden_channels``: POST /channels/{id}/messages answers 403 Missing Permissions.
  * ``dm_closed``: sending to a DM channel answers 403 Cannot send messages to this user.
  * ``token_lifetime_s``: interaction webhooks older than this answer 401 Invalid Webhook Token,
    as Discord does after 15 minutes.
  * ``hang_uploads_after(n)``: answer n more requests carrying files, then leave later ones
    unanswered (status 0, nothing posted), as Discord looks to a bot that dies while sending one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
_counter = itertools.count(1)


def snowflake() -> str:
    """A fresh, time-ordered Discord id as a string."""
    return str(((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_counter) % 4096))


@dataclass
class Upload:
    """One file of a multipart request: form field, file name, bytes."""

    field: str
    filename: str
    data: bytes


@dataclass
class Call:
    """One REST request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[Upload] = field(default_factory=list)
    status: int = 200
    at: float = field(default_factory=time.monotonic)

    @property
    def filenames(self) -> list[str]:
        return [f.filename for f in self.files]


class FakeDiscord:
    """Fake Discord REST + gateway. Use as ``async with FakeDiscord() as fake``.

    Args:
        token: the bot token the fake accepts.
        guild_premium_tier: the test guild's boost tier (sets guild.filesize_limit in discord.py).
        heartbeat_interval_ms: sent in HELLO; short so tests see heartbeats.
    """

    def __init__(self, *, token: str = "test-token", guild_premium_tier: int = 0,
                 heartbeat_interval_ms: int = 1000) -> None:
        self.token = token
        self.application_id = snowflake()
        self.bot_user = {"id": self.application_id, "username": "stemscribe", "discriminator": "0",
                         "global_name": "stemscribe", "avatar": None, "bot": True}
        self.owner = self.user_payload("owner")
        self.guild_id = snowflake()
        self.channel_id = snowflake()
        self.other_channel_id = snowflake()
        self.guild_premium_tier = guild_premium_tier
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.calls: list[Call] = []
        self.identify: dict | None = None
        self.heartbeats = 0
        self.forbidden_channels: set[str] = set()
        self.dm_closed = False
        self.token_lifetime_s: float = 15 * 60
        self.cdn: dict[str, bytes] = {}
        self._uploads_before_hang: int | None = None
        self._unhang = asyncio.Event()
        self.dm_channels: dict[str, str] = {}      # user id -> DM channel id
        self._tokens: dict[str, float] = {}        # interaction token -> monotonic creation time
        self._messages: dict[str, dict] = {}
        self._ws: web.WebSocketResponse | None = None
        self._seq = 0
        self._ready = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> "FakeDiscord":
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{name}", self._cdn)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._unhang.set()
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def hang_uploads_after(self, answered: int) -> None:
        """Answer the next `answered` requests carrying files, then hold later ones until release_uploads()."""
        self._uploads_before_hang = answered

    def release_uploads(self) -> None:
        """Answer the held uploads with 503 (still nothing posted) and take later ones normally."""
        self._uploads_before_hang = None
        self._unhang.set()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the client has identified and received READY."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # ------------------------------------------------------------------ payload builders

    @staticmethod
    def user_payload(name: str, user_id: str | None = None) -> dict:
        return {"id": user_id or snowflake(), "username": name, "discriminator": "0",
                "global_name": name, "avatar": None}

    def member_payload(self, user: dict, *, permissions: int) -> dict:
        return {"user": user, "roles": [], "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False,
                "mute": False, "flags": 0, "permissions": str(permissions)}

    def guild_payload(self) -> dict:
        channels = [{"id": cid, "type": 0, "name": name, "position": i, "permission_overwrites": [],
                     "guild_id": self.guild_id}
                    for i, (cid, name) in enumerate(((self.channel_id, "music"), (self.other_channel_id, "quiet")))]
        return {"id": self.guild_id, "name": "Test Guild", "icon": None, "owner_id": self.owner["id"],
                "premium_tier": self.guild_premium_tier, "roles": [
                    {"id": self.guild_id, "name": "@everyone", "permissions": str(0x400 | 0x800), "position": 0,
                     "color": 0, "hoist": False, "managed": False, "mentionable": False}],
                "channels": channels, "threads": [], "members": [], "emojis": [], "stickers": [],
                "features": [], "member_count": 2, "large": False, "unavailable": False,
                "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
                "mfa_level": 0, "nsfw_level": 0, "preferred_locale": "en-US", "system_channel_flags": 0,
                "joined_at": "2024-01-01T00:00:00+00:00"}

    def attachment(self, filename: str, data: bytes, content_type: str | None) -> dict:
        """Serve bytes on the fake CDN and return the attachment payload pointing at them."""
        att_id = snowflake()
        key = f"{att_id}-{filename}"
        self.cdn[key] = data
        url = f"http://127.0.0.1:{self.port}/cdn/{key}"
        payload = {"id": att_id, "filename": filename, "size": len(data), "url": url, "proxy_url": url}
        if content_type:
            payload["content_type"] = content_type
        return payload

    def _interaction_base(self, user: dict, *, channel_id: str | None, permissions: int,
                          app_permissions: int, attachment_size_limit: int) -> dict:
        token = "itoken-" + snowflake()
        self._tokens[token] = time.monotonic()
        channel_id = channel_id or self.channel_id
        return {"id": snowflake(), "application_id": self.application_id, "token": token, "version": 1,
                "guild_id": self.guild_id, "channel_id": channel_id,
                "channel": {"id": channel_id, "type": 0, "name": "music", "guild_id": self.guild_id},
                "member": self.member_payload(user, permissions=permissions),
                "app_permissions": str(app_permissions), "locale": "en-US", "guild_locale": "en-US",
                "attachment_size_limit": attachment_size_limit, "entitlements": [],
                "authorizing_integration_owners": {"0": self.guild_id}, "context": 0}

    def slash(self, name: str, user: dict, options: list[dict] | None = None, *,
              attachments: list[dict] | None = None, channel_id: str | None = None,
              permissions: int = 0x400 | 0x800, app_permissions: int = 0x400 | 0x800 | 0x4000 | 0x8000,
              attachment_size_limit: int = 10 * 1024 * 1024, subcommand: str | None = None) -> dict:
        """An APPLICATION_COMMAND interaction for /name with the given options."""
        data: dict[str, Any] = {"id": snowflake(), "name": name, "type": 1, "options": options or []}
        if subcommand:
            data["options"] = [{"name": subcommand, "type": 1, "options": options or []}]
        if attachments:
            data["resolved"] = {"attachments": {a["id"]: a for a in attachments}}
        payload = self._interaction_base(user, channel_id=channel_id, permissions=permissions,
                                         app_permissions=app_permissions, attachment_size_limit=attachment_size_limit)
        payload.update(type=2, data=data)
        return payload

    def autocomplete(self, name: str, user: dict, options: list[dict]) -> dict:
        """An APPLICATION_COMMAND_AUTOCOMPLETE interaction; mark the focused option with focused=True."""
        payload = self._interaction_base(user, channel_id=None, permissions=0, app_permissions=0,
                                         attachment_size_limit=10 * 1024 * 1024)
        payload.update(type=4, data={"id": snowflake(), "name": name, "type": 1, "options": options})
        return payload

    def message_menu(self, name: str, user: dict, attachments: list[dict], *,
                     attachment_size_limit: int = 10 * 1024 * 1024) -> dict:
        """A message context-menu interaction on a message carrying the attachments."""
        message = {"id": snowflake(), "channel_id": self.channel_id, "author": self.owner, "content": "",
                   "timestamp": _now_iso(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
                   "mentions": [], "mention_roles": [], "attachments": attachments, "embeds": [],
                   "pinned": False, "type": 0, "flags": 0}
        payload = self._interaction_base(user, channel_id=None, permissions=0x400 | 0x800,
                                         app_permissions=0x400 | 0x800 | 0x4000 | 0x8000,
                                         attachment_size_limit=attachment_size_limit)
        payload.update(type=2, data={"id": snowflake(), "name": name, "type": 3, "target_id": message["id"],
                                     "resolved": {"messages": {message["id"]: message}}})
        return payload

    # ------------------------------------------------------------------ gateway

    async def dispatch(self, event: str, data: dict) -> None:
        """Send one DISPATCH (op 0) event to the connected client."""
        await self.wait_ready()
        assert self._ws is not None
        self._seq += 1
        await self._ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            payload = json.loads(msg.data)
            op = payload.get("op")
            if op == 1:
                self.heartbeats += 1
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                if payload["d"].get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                self.identify = payload["d"]
                self._seq += 1
                await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": self._seq, "d": {
                    "v": 10, "user": self.bot_user, "guilds": [{"id": self.guild_id, "unavailable": True}],
                    "session_id": "session-" + snowflake(), "resume_gateway_url": self.gateway_url,
                    "application": {"id": self.application_id, "flags": 0}, "private_channels": []}}))
                self._seq += 1
                await ws.send_str(json.dumps({"op": 0, "t": "GUILD_CREATE", "s": self._seq, "d": self.guild_payload()}))
                self._ready.set()
        return ws

    # ------------------------------------------------------------------ REST

    async def _cdn(self, request: web.Request) -> web.Response:
        data = self.cdn.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _rest(self, request: web.Request) -> web.Response:
        body, files = await _read_body(request)
        call = Call(request.method, "/" + request.match_info["tail"], dict(request.query), body, files)
        if files and self._uploads_before_hang is not None:
            if self._uploads_before_hang == 0:
                call.status = 0
                self.calls.append(call)
                async with self._changed:
                    self._changed.notify_all()
                await self._unhang.wait()
                call.status = 503
                return web.Response(status=503)
            self._uploads_before_hang -= 1
        if request.headers.get("Authorization") != f"Bot {self.token}" and not call.path.startswith(("/webhooks/", "/interactions/")):
            call.status = 401
            response = _json({"message": "401: Unauthorized", "code": 0}, status=401)
        else:
            status, data = self._route(call)
            call.status = status
            response = _json(data, status=status) if data is not None else web.Response(status=status)
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        return response

    def _route(self, call: Call) -> tuple[int, Any]:
        parts = call.path.strip("/").split("/")
        m, app = call.method, self.application_id
        if m == "GET" and parts == ["users", "@me"]:
            return 200, self.bot_user
        if m == "GET" and parts == ["oauth2", "applications", "@me"]:
            return 200, {"id": app, "name": "stemscribe", "description": "", "icon": None, "bot_public": True,
                         "bot_require_code_grant": False, "owner": self.owner, "verify_key": "0" * 64, "flags": 0}
        if m == "PUT" and parts[:2] == ["applications", app] and parts[-1] == "commands":
            return 200, [{"description": "", **cmd, "id": snowflake(), "application_id": app, "version": snowflake()}
                         for cmd in call.json]
        if m == "POST" and parts[0] == "interactions" and parts[-1] == "callback":
            if self._expired(parts[2]):
                return 404, {"message": "Unknown interaction", "code": 10062}
            kind = call.json["type"]
            return 200, {"interaction": {"id": parts[1], "type": 2, "response_message_loading": kind == 5},
                         "resource": {"type": kind}}
        if parts[0] == "webhooks" and len(parts) >= 3:
            if self._expired(parts[2]):
                return 401, {"message": "Invalid Webhook Token", "code": 50027}
            return 200, self._message(call, channel_id=self.channel_id)
        if m == "POST" and parts[0] == "channels" and parts[-1] == "messages":
            channel_id = parts[1]
            if channel_id in self.forbidden_channels:
                return 403, {"message": "Missing Permissions", "code": 50013}
            if self.dm_closed and channel_id in self.dm_channels.values():
                return 403, {"message": "Cannot send messages to this user", "code": 50007}
            return 200, self._message(call, channel_id=channel_id)
        if m == "POST" and parts == ["users", "@me", "channels"]:
            user_id = call.json["recipient_id"]
            dm_id = self.dm_channels.setdefault(str(user_id), snowflake())
            return 200, {"id": dm_id, "type": 1, "last_message_id": None,
                         "recipients": [self.user_payload("someone", str(user_id))]}
        return 404, {"message": "404: Not Found", "code": 0}

    def _expired(self, token: str) -> bool:
        created = self._tokens.get(token)
        return created is None or time.monotonic() - created > self.token_lifetime_s

    def _message(self, call: Call, *, channel_id: str) -> dict:
        body = call.json if isinstance(call.json, dict) else {}
        attachments = [{"id": snowflake(), "filename": f.filename, "size": len(f.data),
                        "url": f"http://127.0.0.1:{self.port}/cdn/none", "proxy_url": ""} for f in call.files]
        return {"id": snowflake(), "channel_id": channel_id, "author": self.bot_user, "content": body.get("content") or "",
                "timestamp": _now_iso(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
                "mentions": [], "mention_roles": [], "attachments": attachments, "embeds": body.get("embeds") or [],
                "pinned": False, "type": 0, "flags": 0, "webhook_id": self.application_id}

    # ------------------------------------------------------------------ assertions helpers

    def find(self, method: str, prefix: str) -> list[Call]:
        """Calls with this method whose path starts with prefix (successful or not)."""
        return [c for c in self.calls if c.method == method and c.path.startswith(prefix)]

    def interaction_calls(self, payload: dict) -> list[Call]:
        """Every REST call made with this interaction's id or token, in order."""
        return [c for c in self.calls if payload["token"] in c.path]

    async def wait_for(self, predicate, timeout: float = 30.0) -> Call:
        """Wait until a recorded call satisfies predicate(call); returns it."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                for call in self.calls:
                    if predicate(call):
                        return call
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching call within {timeout}s; calls: "
                                         + "; ".join(f"{c.method} {c.path} {c.status}" for c in self.calls))
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    pass


def _json(data: Any, *, status: int) -> web.Response:
    # discord.py parses a body as JSON only when the content type is exactly application/json.
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


async def _read_body(request: web.Request) -> tuple[Any, list[Upload]]:
    if request.content_type.startswith("multipart/"):
        body: Any = None
        files: list[Upload] = []
        reader = await request.multipart()
        async for part in reader:
            data = await part.read()  # type: ignore[union-attr]
            if part.name == "payload_json":  # type: ignore[union-attr]
                body = json.loads(data)
            else:
                files.append(Upload(part.name or "", part.filename or "", bytes(data)))  # type: ignore[union-attr]
        return body, files
    raw = await request.read()
    return (json.loads(raw) if raw else None), []
