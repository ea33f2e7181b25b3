"""A fake Telegram Bot API server for bot tests, plus a harness that runs the real bot against it.

Exports: FakeBotApi, ApiCall, BotHarness, make_user, make_chat, message_update,
callback_update, TOKEN, BOT_USERNAME.

FakeBotApi is an aiohttp server on 127.0.0.1 that speaks enough of the Bot API
for python-telegram-bot's Application: getMe, getUpdates (long poll, fed by the
test), sendMessage, editMessageText, editMessageReplyMarkup, sendPhoto,
sendDocument, sendAudio, sendMediaGroup, sendChatAction, getFile plus the file
download route, answerCallbackQuery, setMyCommands, deleteWebhook, setWebhook.
It records every call with its parameters and uploaded files, can answer the
next call of a method with 429 "retry after" on demand, can refuse photos as
Telegram refuses pictures of extreme proportions (``refuse_photos``), and can
leave uploads unanswered, as Telegram looks to a bot that dies while sending one.

sendMediaGroup works as the real one: ``media`` is a JSON array of 2-10 items of
one kind (photos may mix with videos only), each naming its upload as
``attach://<part name>``, a part of the same multipart request; the answer is one
message per item sharing a media_group_id.

BotHarness runs the fake server and a real Application (built by the bot's own
build_application) on an event loop in a background thread, so tests stay
synchronous and compose with the Redis and worker fixtures. It can also stop
that bot and start others against the same server, for restart tests.
"""

from __future__ import annotations

from pathlib import Path

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

TOKEN = "123456:TEST-token"
BOT_ID = 123456
BOT_USERNAME = "stemscribe_test_bot"

#: Methods that post a file to a chat (see FakeBotApi.hang_uploads_after).
UPLOAD_METHODS = ("sendPhoto", "sendDocument", "sendAudio", "sendMediaGroup")

# Parameters whose form values are JSON documents rather than plain strings.
_JSON_PARAMS = {"reply_markup", "media", "entities", "caption_entities", "allowed_updates",
                "commands", "reply_parameters", "link_preview_options", "scope"}


@dataclass
class ApiCall:
    """One request the bot made: method, decoded parameters, uploaded files, time, HTTP status, result."""

    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    status: int = 200
    result: Any = None

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value not in (None, "") else None

    def upload(self, param: str) -> tuple[str, bytes]:
        """The (file name, bytes) uploaded as parameter `param` ('document') or referenced as 'attach://x'."""
        if param.startswith("attach://"):
            return self.files[param.removeprefix("attach://")]
        value = self.params.get(param, "")
        key = value.removeprefix("attach://") if isinstance(value, str) and value.startswith("attach://") else param
        return self.files[key]


class FakeBotApi:
    """The fake Bot API: call log, update queue, downloadable files and injected failures."""

    #: Set True to answer photos (sendPhoto, photo albums) with 400 PHOTO_INVALID_DIMENSIONS.
    refuse_photos: bool = False

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        #: file ids fetched over HTTP from the file endpoint, in order.
        self.downloads: list[str] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self._media_group_ids = itertools.count(1)
        self._files: dict[str, tuple[bytes, int]] = {}
        self._failures: dict[str, list[int]] = {}
        self._uploads_before_hang: int | None = None
        self._unhang: asyncio.Event | None = None
        self._new_update: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()
        self.port = 0

    # ------------------------------------------------------------------ test side (any thread)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    #: Set to a folder to act like a local Bot API server (absolute file paths, no 20 MB cap).
    local_dir: Path | None = None

    def add_file(self, data: bytes, *, declared_size: int | None = None) -> tuple[str, int]:
        """Store bytes the bot may download; returns (file_id, file_size Telegram reports)."""
        file_id = f"file-{next(self._file_ids)}"
        size = len(data) if declared_size is None else declared_size
        with self._lock:
            self._files[file_id] = (data, size)
        return file_id, size

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; returns its update_id."""
        with self._lock:
            update = {"update_id": next(self._update_ids), **update}
            self._updates.append(update)
        loop, event = self._loop, self._new_update
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)
        return update["update_id"]

    def fail_next(self, method: str, *, retry_after_s: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 Too Many Requests."""
        with self._lock:
            self._failures.setdefault(method, []).extend([retry_after_s] * times)

    def hang_uploads_after(self, answered: int) -> None:
        """Answer the next `answered` uploads, then leave every later one unanswered until release_uploads().

        A held call is recorded with status 0 (nothing reached the chat); the bot sees
        a request that never ends, as if it died while sending it.
        """
        with self._lock:
            self._uploads_before_hang = answered

    def release_uploads(self) -> None:
        """Answer the held uploads with 503 (still nothing posted) and take later ones normally."""
        with self._lock:
            self._uploads_before_hang = None
        if self._loop is not None and self._unhang is not None:
            self._loop.call_soon_threadsafe(self._unhang.set)

    def calls_of(self, *methods: str, chat_id: int | None = None) -> list[ApiCall]:
        """Successful and failed calls of the given methods, optionally to one chat, in order."""
        with self._lock:
            calls = list(self.calls)
        return [c for c in calls if c.method in methods and (chat_id is None or c.chat_id == chat_id)]

    def texts_to(self, chat_id: int) -> list[str]:
        """Every text the chat saw: sent messages and edits that succeeded, in order."""
        return [c.params.get("text", "") for c in self.calls_of("sendMessage", "editMessageText", chat_id=chat_id)
                if c.status == 200]

    def wait_for(self, predicate: Callable[["FakeBotApi"], Any], *, timeout_s: float = 20.0) -> Any:
        """Poll until predicate(self) is truthy and return its value; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate(self)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s}s; calls: {[(c.method, c.params) for c in self.calls]}")

    # ------------------------------------------------------------------ server side (event loop)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._new_update = asyncio.Event()
        self._unhang = asyncio.Event()
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - aiohttp has no public accessor

    async def stop(self) -> None:
        if self._unhang is not None:
            self._unhang.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        params: dict[str, Any] = {}
        files: dict[str, tuple[str, bytes]] = {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.filename is not None:
                    files[part.name] = (part.filename, bytes(await part.read()))
                else:
                    params[part.name] = await part.text()
        elif request.content_type == "application/json":
            params = await request.json()
        else:
            params = dict(await request.post())
        for key in _JSON_PARAMS & params.keys():
            if isinstance(params[key], str):
                params[key] = json.loads(params[key])
        return params, files

    async def _handle_method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        params, files = await self._read_params(request)
        call = ApiCall(method, params, files)
        with self._lock:
            pending = self._failures.get(method)
            retry_after = pending.pop(0) if pending else None
            hang = False
            if retry_after is not None:
                call.status = 429
            elif method in UPLOAD_METHODS and self._uploads_before_hang is not None:
                hang = self._uploads_before_hang == 0
                self._uploads_before_hang = max(0, self._uploads_before_hang - 1)
                call.status = 0 if hang else call.status
            self.calls.append(call)
        if retry_after is not None:
            return web.json_response({"ok": False, "error_code": 429,
                                      "description": f"Too Many Requests: retry after {retry_after}",
                                      "parameters": {"retry_after": retry_after}}, status=429)
        if hang:
            await self._unhang.wait()
            call.status = 503
            return web.json_response({"ok": False, "error_code": 503, "description": "Service Unavailable"},
                                     status=503)
        handler = getattr(self, "_api_" + method, None)
        if handler is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        result = await handler(params, files)
        if isinstance(result, web.Response):
            call.status = result.status
            return result
        call.result = result
        return web.json_response({"ok": True, "result": result})

    async def _handle_download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["path"].rsplit("/", 1)[-1]
        with self._lock:
            entry = self._files.get(file_id)
            self.downloads.append(file_id)
        if entry is None:
            return web.Response(status=404)
        return web.Response(body=entry[0], content_type="application/octet-stream")

    def _message(self, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        return {"message_id": next(self._message_ids), "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "chat"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Stemscribe", "username": BOT_USERNAME},
                **extra}

    # --- Bot API methods

    async def _api_getMe(self, params: dict, files: dict) -> dict:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Stemscribe", "username": BOT_USERNAME,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _api_getUpdates(self, params: dict, files: dict) -> list:
        offset = int(params.get("offset") or 0)
        timeout_s = float(params.get("timeout") or 0)
        deadline = time.monotonic() + min(timeout_s, 2.0)
        while True:
            with self._lock:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = list(self._updates)
                self._new_update.clear()
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0:
                return ready
            try:
                await asyncio.wait_for(self._new_update.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def _api_deleteWebhook(self, params: dict, files: dict) -> bool:
        return True

    async def _api_setWebhook(self, params: dict, files: dict) -> bool:
        return True

    async def _api_setMyCommands(self, params: dict, files: dict) -> bool:
        return True

    async def _api_sendChatAction(self, params: dict, files: dict) -> bool:
        return True

    async def _api_answerCallbackQuery(self, params: dict, files: dict) -> bool:
        return True

    async def _api_sendMessage(self, params: dict, files: dict) -> dict:
        return self._message(params, text=params.get("text", ""))

    async def _api_editMessageText(self, params: dict, files: dict) -> dict:
        return {**self._message(params, text=params.get("text", "")), "message_id": int(params["message_id"]),
                "edit_date": int(time.time())}

    async def _api_editMessageReplyMarkup(self, params: dict, files: dict) -> dict:
        return {**self._message(params, text="settings"), "message_id": int(params["message_id"])}

    def _stored(self, upload: tuple[str, bytes]) -> dict[str, Any]:
        file_id, size = self.add_file(upload[1])
        return {"file_id": file_id, "file_unique_id": file_id + "u", "file_size": size}

    @staticmethod
    def _bad_request(description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": 400, "description": f"Bad Request: {description}"},
                                 status=400)

    async def _api_sendPhoto(self, params: dict, files: dict) -> dict | web.Response:
        if self.refuse_photos:
            return self._bad_request("PHOTO_INVALID_DIMENSIONS")
        photo = self._stored(files["photo"])
        return self._message(params, photo=[{**photo, "width": 800, "height": 600}],
                             caption=params.get("caption"))

    async def _api_sendDocument(self, params: dict, files: dict) -> dict:
        name, _ = files["document"]
        return self._message(params, document={**self._stored(files["document"]), "file_name": name},
                             caption=params.get("caption"))

    async def _api_sendAudio(self, params: dict, files: dict) -> dict:
        return self._message(params, audio={**self._stored(files["audio"]), "duration": 1,
                                            "file_name": files["audio"][0]})

    async def _api_sendMediaGroup(self, params: dict, files: dict) -> list | web.Response:
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            return self._bad_request("media must include 2-10 items")
        kinds = {item.get("type") for item in media}
        if len(kinds) > 1 and not kinds <= {"photo", "video"}:
            return self._bad_request("audio and documents can only be grouped with their own kind")
        refs = [str(item.get("media", "")) for item in media]
        if not all(ref.startswith("attach://") and ref.removeprefix("attach://") in files for ref in refs):
            return self._bad_request("every item must name a file uploaded as attach://<part name>")
        if self.refuse_photos and "photo" in kinds:
            return self._bad_request("PHOTO_INVALID_DIMENSIONS")
        group_id = f"group-{next(self._media_group_ids)}"
        out = []
        for item, ref in zip(media, refs):
            upload = files[ref.removeprefix("attach://")]
            kind, stored = item["type"], self._stored(upload)
            body: Any = {**stored, "file_name": upload[0]}
            if kind == "audio":
                body["duration"] = 1
            elif kind == "photo":
                body = [{**stored, "width": 800, "height": 1100}]  # a photo is a list of sizes
            out.append(self._message(params, **{kind: body}, media_group_id=group_id, caption=item.get("caption")))
        return out

    async def _api_getFile(self, params: dict, files: dict) -> dict | web.Response:
        file_id = params["file_id"]
        with self._lock:
            entry = self._files.get(file_id)
        if entry is None:
            return web.json_response({"ok": False, "error_code": 400,
                                      "description": "Bad Request: invalid file_id"}, status=400)
        if self.local_dir is not None:
            # A local Bot API server keeps files on its own disk and answers with the path.
            path = self.local_dir / file_id
            path.write_bytes(entry[0])
            return {"file_id": file_id, "file_unique_id": file_id + "u", "file_size": entry[1],
                    "file_path": str(path.resolve())}
        if entry[1] > 20 * 1024 * 1024:
            return web.json_response({"ok": False, "error_code": 400,
                                      "description": "Bad Request: file is too big"}, status=400)
        return {"file_id": file_id, "file_unique_id": file_id + "u", "file_size": entry[1],
                "file_path": f"documents/{file_id}"}


# ---------------------------------------------------------------------- update builders

_ids = itertools.count(1)


def make_user(user_id: int, name: str = "Ada") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name, "username": name.lower()}


def make_chat(chat_id: int) -> dict[str, Any]:
    """A private chat for positive ids, a group for negative ones (as Telegram numbers them)."""
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "User"}
    return {"id": chat_id, "type": "group", "title": "Band practice"}


def message_update(*, user: dict, chat_id: int, text: str | None = None, caption: str | None = None,
                   reply_to: dict | None = None, **media: Any) -> dict[str, Any]:
    """An update carrying a new message; media keyword is voice=, audio=, document=, video=..."""
    message: dict[str, Any] = {"message_id": next(_ids), "date": int(time.time()), "chat": make_chat(chat_id),
                               "from": user}
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    if caption is not None:
        message["caption"] = caption
        mention = "@" + BOT_USERNAME
        if mention in caption:
            message["caption_entities"] = [{"type": "mention", "offset": caption.index(mention),
                                            "length": len(mention)}]
    if reply_to is not None:
        message["reply_to_message"] = reply_to
    message.update(media)
    return {"message": message}


def callback_update(*, user: dict, message: dict, data: str) -> dict[str, Any]:
    """An update for a press on an inline keyboard button of `message` (a message the bot sent)."""
    return {"callback_query": {"id": str(next(_ids)), "from": user, "chat_instance": "ci",
                               "message": message, "data": data}}


# ---------------------------------------------------------------------- harness

class BotHarness:
    """Runs FakeBotApi and a real PTB Application (polling) on a background event loop.

    Args:
        build: callable(base_url, base_file_url) -> telegram.ext.Application, called on
            the harness loop once the fake server listens; None runs the fake server
            alone (for a bot started as a separate process).
    """

    def __init__(self, build: Callable[[str, str], Any] | None) -> None:
        self.api = FakeBotApi()
        self._build = build
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bot-harness", daemon=True)
        self.app: Any = None
        self._apps: list[Any] = []

    def __enter__(self) -> "BotHarness":
        self._thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.call(self._stop(), timeout_s=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def call(self, coro: Any, *, timeout_s: float = 20.0) -> Any:
        """Run a coroutine on the harness loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def start_bot(self, build: Callable[[str, str], Any], *, polling: bool = True) -> Any:
        """Start another Application against the same fake server (as after a restart); returns it.

        polling=False runs it without fetching updates, so a second instance does not
        answer the updates the first one handles.
        """
        return self.call(self._start_app(build, polling=polling))

    def stop_bot(self, app: Any) -> None:
        """Stop one Application cleanly, as a deploy's SIGTERM would; the fake server keeps running."""
        self.call(self._stop_app(app), timeout_s=30)

    async def _start(self) -> None:
        await self.api.start()
        if self._build is not None:
            self.app = await self._start_app(self._build, polling=True)

    async def _start_app(self, build: Callable[[str, str], Any], *, polling: bool) -> Any:
        app = build(self.api.base_url, self.api.base_file_url)
        await app.initialize()
        if app.post_init:
            await app.post_init(app)
        if polling:
            await app.updater.start_polling(poll_interval=0.0, timeout=1)
        await app.start()
        self._apps.append(app)
        return app

    async def _stop_app(self, app: Any) -> None:
        if app not in self._apps:
            return
        self._apps.remove(app)
        if app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        if app.post_stop:
            await app.post_stop(app)
        await app.shutdown()

    async def _stop(self) -> None:
        for app in list(self._apps):
            await self._stop_app(app)
        await self.api.stop()


# ---------------------------------------------------------------------- audio fixtures

#: A real recording of the dev set that test clips are cut from.
DEVSET_FLUTE = "01-banks-of-the-bann-flute/audio.ogg"


def cut_clip(source: str, target: str, *, seconds: float, start_s: float = 0.0, silent: bool = False) -> bytes:
    """Cut (or, with silent=True, synthesise silence of) an Ogg/Opus voice-note-like clip with ffmpeg."""
    import subprocess

    if silent:
        inputs = ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono"]
    else:
        inputs = ["-ss", str(start_s), "-i", source]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-t", str(seconds), "-ac", "1", "-c:a", "libopus",
                    "-b:a", "48k", target], check=True, timeout=60)
    with open(target, "rb") as handle:
        return handle.read()
