"""`stemscribe telegram` as a process: polling and webhook start-up against the fake Bot API.

Each test starts the real command line in a subprocess (signal handling and all),
talks to it the way Telegram would, and stops it with SIGINT like an operator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from helpers.redis_server import free_port
from helpers.telegram_fake import TOKEN, BotHarness, make_user, message_update
from stemscribe.bots.telegram.main import main, webhook_secret
from stemscribe.cli import build_parser
from stemscribe.cmd_telegram import handler

ALICE = make_user(511, "Alice")


@pytest.fixture
def fake_api():
    with BotHarness(None) as harness:
        yield harness.api


def start_bot(api, redis_url: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "STEMSCRIBE_TELEGRAM_TOKEN": TOKEN, "STEMSCRIBE_TELEGRAM_BASE_URL": api.base_url,
           "STEMSCRIBE_TELEGRAM_BASE_FILE_URL": api.base_file_url, "STEMSCRIBE_REDIS_URL": redis_url}
    env.pop("STEMSCRIBE_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "stemscribe", "telegram", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return process.returncode, out.decode(errors="replace")


def test_polling(fake_api, redis_url):
    process = start_bot(fake_api, redis_url, "--polling")
    try:
        fake_api.wait_for(lambda a: a.calls_of("getUpdates"), timeout_s=30)
        fake_api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], text="/start"))
        fake_api.wait_for(lambda a: any("Send me a recording" in t for t in a.texts_to(ALICE["id"])))
    finally:
        code, out = stop(process)
    assert code == 0, out
    assert TOKEN not in out, "the token must never reach the logs"
    allowed = fake_api.calls_of("getUpdates")[0].params["allowed_updates"]
    assert sorted(allowed) == ["callback_query", "message"]


def test_webhook(fake_api, redis_url):
    port = free_port()
    process = start_bot(fake_api, redis_url, "--webhook-url", "https://bot.example.org/telegram/hook",
                        "--listen", "127.0.0.1", "--port", str(port))
    try:
        (registered,) = fake_api.wait_for(lambda a: a.calls_of("setWebhook"), timeout_s=30)
        assert registered.params["url"] == "https://bot.example.org/telegram/hook"
        assert registered.params["secret_token"] == webhook_secret(TOKEN)
        update = {"update_id": 1, **message_update(user=ALICE, chat_id=ALICE["id"], text="/help")}

        def post(secret: str) -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/telegram/hook", data=json.dumps(update).encode(),
                                             headers={"Content-Type": "application/json",
                                                      "X-Telegram-Bot-Api-Secret-Token": secret})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        deadline = time.monotonic() + 20
        while True:  # the webhook server starts listening just after setWebhook
            try:
                assert post("forged") == 403, "an update without the right secret is refused"
                break
            except urllib.error.URLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert not fake_api.calls_of("sendMessage")
        assert post(webhook_secret(TOKEN)) == 200
        fake_api.wait_for(lambda a: any("Examples" in t for t in a.texts_to(ALICE["id"])))
    finally:
        code, out = stop(process)
    assert code == 0, out


def test_configuration_errors(capsys, monkeypatch, tmp_path):
    for name in ("STEMSCRIBE_TELEGRAM_TOKEN", "STEMSCRIBE_CONFIG", "STEMSCRIBE_TELEGRAM_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--polling"]) == 2
    assert "no token" in capsys.readouterr().err
    config = tmp_path / "stemscribe.toml"
    config.write_text(f'[stemscribe]\ntelegram_token = "{TOKEN}"\nredis_url = "redis://127.0.0.1:1/0"\n')
    assert main(["--config", str(config), "--webhook-url", "http://insecure.example.org/hook"]) == 2
    assert "must be https://" in capsys.readouterr().err
    args = build_parser().parse_args(["telegram", "--webhook-url", "https://x.example.org/h", "--port", "8443"])
    assert args.func is handler and args.port == 8443 and not args.polling
