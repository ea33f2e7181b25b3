"""Stand-ins for worker tests: a fast fake pipeline with core's signature, test audio, settings.

Exports: FakePipeline, wav_bytes, worker_settings, start_worker_process, wait_for.

FakePipeline writes the contract files (tiny) and reports every stage, taking as
long as asked, so queue behaviour (progress, cancel, SIGKILL, SIGTERM) can be
tested in seconds. With pages=N it stands for an N-page score: preview-2.png ..
preview-N.png too (up to core's preview cap), listed in its result.json as core
lists them. The real pipeline is used by the integration tests in
tests/test_worker_pipeline.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Callable

import numpy as np

from stemscribe.core.defaults import MAX_PREVIEW_PAGES
from stemscribe.core.engrave import preview_file_name
from stemscribe.core.pipeline import OUTPUT_FILES
from stemscribe.core.progress import Stage

from stemscribe.settings import Settings, load_settings

_STAGES = (Stage.DECODE, Stage.TRANSCRIBE, Stage.ANALYZE, Stage.SCORE, Stage.ENGRAVE)
_REPO = Path(__file__).resolve().parents[2]


class FakePipeline:
    """Same call signature as stemscribe.core.pipeline.run; sleeps `seconds` in small steps.

    Args:
        seconds: total run time.
        error: an exception instance to raise half-way (after progress was reported).
        stems: also write stems/bass.opus.
        pages: pages of the pretend score; each up to MAX_PREVIEW_PAGES gets a preview file.
        auto_separates: behave like an auto job that decided to separate (calls the hook first).
    """

    def __init__(self, seconds: float = 0.2, *, error: BaseException | None = None, stems: bool = False,
                 pages: int = 1, auto_separates: bool = False) -> None:
        self.seconds, self.error, self.stems, self.pages = seconds, error, stems, pages
        self.auto_separates = auto_separates
        self.calls: list[dict] = []

    def __call__(self, inputs, out_dir, options, *, toolkit=None, limits=None, reporter=None,
                 before_auto_separation=None) -> dict:
        self.calls.append({"inputs": [Path(p) for p in inputs], "options": options})
        if self.auto_separates and before_auto_separation is not None:
            before_auto_separation()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        steps = max(1, int(self.seconds / 0.05))
        for i in range(steps):
            stage = _STAGES[min(len(_STAGES) - 1, i * len(_STAGES) // steps)]
            if reporter is not None:
                reporter(stage, (i % max(1, steps // len(_STAGES))) / max(1, steps // len(_STAGES)), f"step {i}")
            if self.error is not None and i >= steps // 2:
                raise self.error
            time.sleep(self.seconds / steps)
        if self.error is not None:
            raise self.error
        files = list(OUTPUT_FILES)
        at = files.index("preview.png") + 1
        files[at:at] = [preview_file_name(page) for page in range(2, min(self.pages, MAX_PREVIEW_PAGES) + 1)]
        for name in files[:-1]:  # result.json last, below
            (out_dir / name).write_bytes(f"fake {name} for {Path(inputs[0]).name}".encode())
        if self.stems:
            (out_dir / "stems").mkdir(exist_ok=True)
            (out_dir / "stems" / "bass.opus").write_bytes(b"fake stem")
            files[-1:-1] = ["stems/bass.opus"]
        summary = {"mode": "solo", "inputs": [Path(p).name for p in inputs], "bars": 2 * self.pages,
                   "pages": self.pages, "files": files, "input_bytes": sum(Path(p).stat().st_size for p in inputs)}
        (out_dir / "result.json").write_text(json.dumps(summary))
        return summary


def wav_bytes(seconds: float = 1.0, *, sample_rate: int = 16000, freq_hz: float = 440.0) -> bytes:
    """A mono 16-bit WAV of a sine tone, as bytes."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    samples = (0.5 * np.sin(2 * np.pi * freq_hz * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def worker_settings(redis_url: str, **overrides) -> Settings:
    """Settings for tests: the test Redis, fast heartbeats and maintenance, generous caps."""
    values = dict(redis_url=redis_url, worker_heartbeat_s=1, worker_maintenance_interval_s=1,
                  worker_shutdown_grace_s=1.0, max_jobs_per_user=50, max_jobs_per_chat=50, rate_limit_jobs=500,
                  max_queue_length=100, log_level="INFO")
    values.update(overrides)
    return load_settings(env={}, **values)


def stop_process(process: subprocess.Popen, *, timeout_s: float = 20.0) -> None:
    """SIGTERM (the graceful path), then SIGKILL if it has not exited in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def start_worker_process(redis_url: str, *, seconds: float = 0.2, pages: int = 1, burst: bool = False,
                         log_path: Path, env_extra: dict | None = None) -> subprocess.Popen:
    """Start tests/helpers/worker_proc.py (a real `stemscribe worker` around a FakePipeline of `pages` pages)."""
    env = {**os.environ, "STEMSCRIBE_REDIS_URL": redis_url, "STEMSCRIBE_WORKER_HEARTBEAT_S": "1",
           "STEMSCRIBE_WORKER_MAINTENANCE_INTERVAL_S": "1", "STEMSCRIBE_WORKER_SHUTDOWN_GRACE_S": "1",
           "STEMSCRIBE_LOG_FORMAT": "json", "FAKE_PIPELINE_SECONDS": str(seconds),
           "FAKE_PIPELINE_PAGES": str(pages), **(env_extra or {})}
    args = [sys.executable, str(_REPO / "tests" / "helpers" / "worker_proc.py")] + (["--burst"] if burst else [])
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=_REPO)
    finally:
        log.close()


def wait_for(predicate: Callable[[], object], *, timeout_s: float = 20.0, interval_s: float = 0.05,
             what: str = "condition"):
    """Poll predicate until it returns something truthy; that value is returned.

    Raises:
        AssertionError: timeout_s passed first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def run_burst(settings, pipeline, queues=None) -> None:
    """Run every queued job in this process with a burst StemscribeWorker, then return (signal handlers restored)."""
    import signal

    from stemscribe.worker.main import build_worker

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        build_worker(settings, pipeline=pipeline, preload=False, queues=queues).work(burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
