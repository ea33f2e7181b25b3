"""Deployment settings, read once at each entry point into a frozen object.

Exports: Settings, load_settings.

Every field can be set by an environment variable ``STEMSCRIBE_<FIELD>`` (upper
case) or in a TOML/``KEY=VALUE`` config file named by ``STEMSCRIBE_CONFIG``
(or passed explicitly). The environment wins over the file. Secrets (tokens)
are never logged: ``Settings.redacted()`` is what logs and `doctor` show.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from stemscribe.core import defaults

_SECRET_FIELDS = {"telegram_token", "discord_token", "s3_secret_key"}


@dataclass(frozen=True)
class Settings:
    """Settings shared by the CLI, workers and both bots."""

    # --- queue and storage
    redis_url: str = "redis://localhost:6379/0"
    queue_prefix: str = "stemscribe"
    artifact_store: str = "redis"          # redis | folder
    artifact_dir: str = "/var/lib/stemscribe/artifacts"
    artifact_ttl_s: int = 24 * 3600
    job_result_ttl_s: int = 24 * 3600
    job_retries: int = 1                   # re-runs of a job whose worker died (SIGKILL, OOM) or hiccuped
    worker_heartbeat_s: int = 10           # a worker silent for 3x this is presumed dead; its job is retried
    worker_shutdown_grace_s: float = 20.0  # on SIGTERM, finish the job if it ends within this, else requeue it
    worker_maintenance_interval_s: int = 60  # how often a worker looks for abandoned jobs and expired files
    delivery_lease_s: float = 60.0         # a bot's hold on delivering a job; a dead bot's jobs move on after this
    delivery_sweep_s: float = 30.0         # how often a running bot looks for undelivered jobs nobody holds
    # --- models
    models_dir: str = ""                   # demucs weights; "" = ~/.cache/stemscribe/models
    torch_threads: int = 0                 # 0 = number of CPU cores
    preload_models: str = "basic-pitch,transkun"
    # --- limits
    max_duration_s: float = defaults.MAX_DURATION_S
    max_duration_stems_s: float = defaults.MAX_DURATION_STEMS_S
    max_input_bytes: int = defaults.MAX_INPUT_BYTES
    max_jobs_per_user: int = 2
    max_jobs_per_chat: int = 4
    rate_limit_jobs: int = 10
    rate_limit_window_s: int = 3600
    max_queue_length: int = 50
    lilypond_timeout_s: float = defaults.LILYPOND_TIMEOUT_S
    # --- telegram
    telegram_token: str = ""
    telegram_base_url: str = "https://api.telegram.org/bot"
    telegram_base_file_url: str = "https://api.telegram.org/file/bot"
    telegram_local_mode: bool = False
    telegram_webhook_url: str = ""
    telegram_webhook_port: int = 8443
    # --- discord
    discord_token: str = ""
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = ""
    discord_dev_guild: str = ""
    # --- logging
    log_format: str = "text"                # text | json
    log_level: str = "INFO"

    def redacted(self) -> dict[str, Any]:
        """All fields as a dict with secrets masked, for logs and `doctor`."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = ("***" if value else "") if f.name in _SECRET_FIELDS else value
        return out

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir) if self.models_dir else Path.home() / ".cache" / "stemscribe" / "models"


def _coerce(kind: type, raw: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in {"1", "true", "yes", "on"}
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    return str(raw)


def _read_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".toml":
        data = tomllib.loads(text)
        return {k.lower(): v for k, v in data.get("stemscribe", data).items()}
    out: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        out[key.lower().removeprefix("stemscribe_")] = value.strip().strip('"').strip("'")
    return out


def load_settings(env: Mapping[str, str] | None = None, config_file: str | Path | None = None,
                  **overrides: Any) -> Settings:
    """Build Settings from a config file, then the environment, then overrides.

    Args:
        env: environment mapping (default os.environ).
        config_file: a .toml (table [stemscribe] or top level) or KEY=VALUE file;
            default $STEMSCRIBE_CONFIG if set.
        overrides: field values that win over everything (used by tests and CLI flags).

    Raises:
        ValueError: a value that cannot be converted to the field's type.
    """
    env = os.environ if env is None else env
    types = {f.name: f.type for f in fields(Settings)}
    kinds = {name: {"str": str, "int": int, "float": float, "bool": bool}[t if isinstance(t, str) else t.__name__]
             for name, t in types.items()}
    values: dict[str, Any] = {}
    path = config_file or env.get("STEMSCRIBE_CONFIG")
    if path:
        for key, raw in _read_file(Path(path)).items():
            if key in kinds:
                values[key] = _coerce(kinds[key], raw)
    for name, kind in kinds.items():
        raw = env.get("STEMSCRIBE_" + name.upper())
        if raw is not None and raw != "":
            try:
                values[name] = _coerce(kind, raw)
            except ValueError:
                raise ValueError(f"STEMSCRIBE_{name.upper()}={raw!r} is not a valid {kind.__name__}") from None
    values.update(overrides)
    return replace(Settings(), **values)
