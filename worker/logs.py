"""Process logging for workers (and the CLI): text or one JSON object per line, with the job id.

Exports: configure_logging, JobContextFilter, JsonFormatter.

Every record gets ``job_id`` (the RQ job running in this process, or "-") and
``worker`` (set by ``stemscribe worker``), so an operator can follow one job
across the log of a fleet. Secrets never reach the log: settings are logged
only through Settings.redacted().
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO

from rq import get_current_job


class JobContextFilter(logging.Filter):
    """Adds job_id and worker to every record passing the handler.

    Args:
        worker: the worker name to stamp ("" outside workers).
    """

    def __init__(self, worker: str = "") -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "job_id", None):
            job = get_current_job()
            record.job_id = job.id if job is not None else "-"
        if not getattr(record, "worker", None):
            record.worker = self.worker or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, job_id, worker, and exc when any."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", "-"),
            "worker": getattr(record, "worker", "-"),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure_logging(settings, *, worker: str = "", stream: IO[str] | None = None) -> None:
    """Send all logging to stream (default stderr) in settings.log_format at settings.log_level.

    Args:
        settings: stemscribe Settings (log_format text|json, log_level).
        worker: worker name stamped on every record.
        stream: where to write.

    Raises:
        ValueError: an unknown log_format.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    kind = settings.log_format.strip().lower()
    if kind == "json":
        handler.setFormatter(JsonFormatter())
    elif kind == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [job %(job_id)s] %(message)s"))
    else:
        raise ValueError(f"STEMSCRIBE_LOG_FORMAT={settings.log_format!r}: use 'text' or 'json'")
    handler.addFilter(JobContextFilter(worker))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
