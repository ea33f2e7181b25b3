"""`stemscribe doctor` on a healthy host and on broken ones, with real tools and a real Redis.

Each run engraves a real LilyPond score and probes a real redis-server; broken
setups are made by changing what the process sees (PATH, STEMSCRIBE_* variables),
never by mocking the checks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from helpers.redis_server import free_port
from stemscribe import cmd_doctor
from stemscribe.settings import load_settings

# Shaped like real tokens; never valid anywhere.
FAKE_TELEGRAM_TOKEN = "123456789:AAFakeTokenForDoctorTestsOnly_abcdefghij"
FAKE_DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.FakeDiscordTokenForDoctorTestsOnly_xyz"

needs_lilypond = pytest.mark.skipif(shutil.which("lilypond") is None, reason="lilypond is not installed")


def run_doctor(argv: list[str], capsys) -> tuple[int, str]:
    """Run `stemscribe doctor ARGV` the way the command line does; returns (exit code, stdout)."""
    main = None
    try:
        from stemscribe import cli
    except ImportError:
        cli = None
    if cli is not None and "cmd_doctor" in Path(cli.__file__).read_text():
        main = cli.main
    if main is not None:
        try:
            code = main(["doctor", *argv])
        except SystemExit as exc:
            code = exc.code
    else:
        parser = argparse.ArgumentParser(prog="stemscribe")
        cmd_doctor.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["doctor", *argv])
        code = args.func(args, load_settings())
    return int(code or 0), capsys.readouterr().out


def lines_by_check(output: str) -> dict[str, str]:
    """{check name: its line} from doctor's text output."""
    found = {}
    for line in output.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in ("OK", "WARN", "FAIL"):
            name = rest.strip().split("  ")[0].strip()
            found[name] = line
    return found


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No STEMSCRIBE_* from the developer's shell; private torch and HuggingFace caches."""
    for key in list(os.environ):
        if key.startswith("STEMSCRIBE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return monkeypatch


@pytest.fixture
def installed_models(tmp_path) -> Path:
    """A models folder holding htdemucs's weight file name (content is not read by listing)."""
    import demucs

    bag = yaml.safe_load((Path(demucs.__file__).parent / "remote" / "htdemucs.yaml").read_text())
    folder = tmp_path / "models"
    folder.mkdir()
    for signature in bag["models"]:
        (folder / f"{signature}-0123abcd.th").write_bytes(b"\0" * 1024)
    return folder


@needs_lilypond
def test_healthy_host_passes_every_check(clean_env, redis_url, installed_models, tmp_path, capsys):
    clean_env.setenv("STEMSCRIBE_REDIS_URL", redis_url)
    clean_env.setenv("STEMSCRIBE_MODELS_DIR", str(installed_models))
    clean_env.setenv("STEMSCRIBE_ARTIFACT_STORE", "folder")
    clean_env.setenv("STEMSCRIBE_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    clean_env.setenv("STEMSCRIBE_TELEGRAM_TOKEN", FAKE_TELEGRAM_TOKEN)
    clean_env.setenv("STEMSCRIBE_DISCORD_TOKEN", FAKE_DISCORD_TOKEN)

    code, out = run_doctor([], capsys)

    checks = lines_by_check(out)
    assert set(checks) == {"lilypond", "ffmpeg", "basic-pitch", "transkun", "pitch tracker", "demucs", "redis",
                           "redis persistence", "artifacts", "telegram token", "discord token"}, out
    assert all(line.startswith("OK") for line in checks.values()), out
    assert code == 0
    assert "LilyPond 2." in checks["lilypond"] and "PDF and PNG" in checks["lilypond"]
    assert "htdemucs" in checks["demucs"]
    assert "appendonly yes" in checks["redis persistence"]
    assert (tmp_path / "artifacts").is_dir()
    assert FAKE_TELEGRAM_TOKEN not in out and FAKE_DISCORD_TOKEN not in out
    assert "0 failure(s)" in out


@needs_lilypond
def test_broken_host_names_each_failure_with_its_fix(clean_env, tmp_path, capsys):
    # PATH with ffmpeg but without LilyPond; a Redis port nobody listens on; a
    # models folder that does not exist; an artifact "folder" that is a file.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ffmpeg", "ffprobe"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    clean_env.setenv("PATH", str(bin_dir))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    clean_env.setenv("STEMSCRIBE_REDIS_URL", f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0")
    clean_env.setenv("STEMSCRIBE_MODELS_DIR", str(tmp_path / "no-such-models"))
    clean_env.setenv("STEMSCRIBE_ARTIFACT_STORE", "folder")
    clean_env.setenv("STEMSCRIBE_ARTIFACT_DIR", str(blocker / "artifacts"))

    code, out = run_doctor([], capsys)

    checks = lines_by_check(out)
    assert code == 1
    assert checks["lilypond"].startswith("FAIL") and "not found on PATH" in checks["lilypond"]
    assert "apt-get install lilypond" in checks["lilypond"]
    assert checks["ffmpeg"].startswith("OK"), out
    assert checks["redis"].startswith("FAIL") and "-> fix: start Redis" in checks["redis"]
    assert "hunter2-secret" not in out and ":***@127.0.0.1" in checks["redis"]
    assert "redis persistence" not in checks  # nothing to ask a server that is not there
    assert checks["demucs"].startswith("FAIL") and "does not exist" in checks["demucs"]
    assert "stemscribe models fetch htdemucs" in checks["demucs"]
    assert checks["artifacts"].startswith("FAIL") and "cannot write" in checks["artifacts"]
    assert checks["telegram token"].startswith("WARN") and checks["discord token"].startswith("WARN")
    assert "4 failure(s)" in out


def test_bot_role_requires_its_token_and_skips_worker_tools(clean_env, redis_url, tmp_path, capsys):
    clean_env.setenv("PATH", str(tmp_path))  # no LilyPond, no ffmpeg: a bot needs neither
    clean_env.setenv("STEMSCRIBE_REDIS_URL", redis_url)

    code, out = run_doctor(["--role", "telegram"], capsys)

    checks = lines_by_check(out)
    assert code == 1
    assert set(checks) == {"redis", "redis persistence", "artifacts", "telegram token"}, out
    assert checks["telegram token"].startswith("FAIL")
    assert "STEMSCRIBE_TELEGRAM_TOKEN is not set" in checks["telegram token"]
    assert "BotFather" in checks["telegram token"]

    clean_env.setenv("STEMSCRIBE_TELEGRAM_TOKEN", FAKE_TELEGRAM_TOKEN)
    code, out = run_doctor(["--role", "telegram"], capsys)
    assert code == 0, out
    assert FAKE_TELEGRAM_TOKEN not in out
    assert lines_by_check(out)["telegram token"].startswith("OK")

    clean_env.setenv("STEMSCRIBE_DISCORD_TOKEN", "not a token")
    code, out = run_doctor(["--role", "discord"], capsys)
    assert code == 0  # malformed is a warning: Discord is the judge
    assert lines_by_check(out)["discord token"].startswith("WARN")
    assert "not a token" not in out


def test_redis_without_persistence_is_a_warning(clean_env, private_redis_server, tmp_path, capsys):
    conn = private_redis_server.client()
    conn.config_set("appendonly", "no")
    conn.config_set("maxmemory-policy", "allkeys-lru")
    clean_env.setenv("PATH", str(tmp_path))
    clean_env.setenv("STEMSCRIBE_REDIS_URL", private_redis_server.url)
    clean_env.setenv("STEMSCRIBE_DISCORD_TOKEN", FAKE_DISCORD_TOKEN)

    code, out = run_doctor(["--role", "discord"], capsys)

    line = lines_by_check(out)["redis persistence"]
    assert code == 0
    assert line.startswith("WARN")
    assert "appendonly is off" in line and "allkeys-lru" in line
    assert "--appendonly yes" in line and "noeviction" in line


def test_json_output_is_machine_readable_and_redacted(clean_env, tmp_path, capsys):
    clean_env.setenv("PATH", str(tmp_path))
    clean_env.setenv("STEMSCRIBE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    clean_env.setenv("STEMSCRIBE_TELEGRAM_TOKEN", FAKE_TELEGRAM_TOKEN)
    clean_env.setenv("STEMSCRIBE_DISCORD_TOKEN", FAKE_DISCORD_TOKEN)

    code, out = run_doctor(["--json", "--role", "telegram", "--role", "discord"], capsys)

    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["roles"] == ["discord", "telegram"]
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["redis"]["status"] == "FAIL" and by_name["redis"]["fix"]
    assert by_name["telegram token"]["status"] == "OK"
    assert report["settings"]["telegram_token"] == "***"
    assert FAKE_TELEGRAM_TOKEN not in out and FAKE_DISCORD_TOKEN not in out


def test_models_folder_without_weights_only_warns(clean_env, tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    check = cmd_doctor.check_demucs(load_settings(env={"STEMSCRIBE_MODELS_DIR": str(empty)}))
    assert check.status is cmd_doctor.Status.WARN
    assert "stems:yes jobs will be refused" in check.detail
    assert check.fix.startswith("stemscribe models fetch htdemucs")


@pytest.mark.parametrize("url, shown", [
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("rediss://user:pw@host/1", "rediss://user:***@host/1"),
    ("redis://host:6379/0", "redis://host:6379/0"),
])
def test_redact_url_masks_only_the_password(url, shown):
    assert cmd_doctor.redact_url(url) == shown
