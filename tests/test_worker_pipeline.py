"""The real pipeline through the queue: `stemscribe submit --wait` against a worker with loaded models.

One 5-second flute clip cut from the dev set goes through Redis, a worker running
core.pipeline.run (basic-pitch, LilyPond) and back into a folder, exactly as a bot
would receive it. About half a minute on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.worker_fakes import wait_for, worker_settings

from stemscribe.core.pipeline import OUTPUT_FILES
from stemscribe.worker.client import JobClient
from stemscribe.worker.main import build_worker

REPO = Path(__file__).resolve().parents[1]
DEVSET_CLIP = REPO.parent / "shared" / "devset" / "01-banks-of-the-bann-flute" / "audio.ogg"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flute_clip(tmp_path_factory) -> Path:
    if not DEVSET_CLIP.exists():
        pytest.skip(f"dev set clip missing: {DEVSET_CLIP}")
    clip = tmp_path_factory.mktemp("clip") / "banks-of-the-bann.ogg"
    subprocess.run(["ffmpeg", "-v", "error", "-ss", "2", "-t", "5", "-i", str(DEVSET_CLIP), "-c:a", "libopus",
                    str(clip)], check=True)
    return clip


def cli(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stemscribe", *args], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_submit_wait_writes_the_transcribe_files(redis_url, flute_clip, tmp_path):
    settings = worker_settings(redis_url, preload_models="basic-pitch")
    env = {**os.environ, "STEMSCRIBE_REDIS_URL": redis_url}
    out = tmp_path / "out"
    submit = cli("submit", str(flute_clip), 'title:"Banks of the Bann"', "instrument:flute", "--wait",
                 "--out", str(out), env=env)
    try:
        client = JobClient(settings)

        def queued() -> bool:
            assert submit.poll() is None, submit.communicate()[1]  # the CLI must still be waiting
            return client.queue_stats()["waiting"] == 1

        wait_for(queued, timeout_s=60, what="the CLI to queue the job")
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            worker = build_worker(settings)  # loads basic-pitch before taking the job
            assert worker.runtime.toolkit.engines.loaded() == ["basic-pitch"]
            worker.work(burst=True)
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        stdout, stderr = submit.communicate(timeout=60)
    finally:
        if submit.poll() is None:
            submit.kill()
            submit.wait()
    assert submit.returncode == 0, stderr
    assert "in line" in stderr and "100.0% finished" in stderr  # progress lines were shown
    assert "Wrote" in stdout
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "score.pdf").read_bytes().startswith(b"%PDF")
    assert (out / "preview.png").read_bytes().startswith(b"\x89PNG")
    result = json.loads((out / "result.json").read_text())
    assert result["title"] == "Banks of the Bann" and result["inputs"] == ["banks-of-the-bann.ogg"]
    assert result["mode"] == "solo" and result["duration_s"] == pytest.approx(5.0, abs=0.1)
    # engines were loaded once at start-up, not per job
    assert worker.runtime.toolkit.engines.load_counts["basic-pitch"] == 1

    job_ids = [k.decode().split(":")[-1] for k in client.redis.keys("rq:job:*") if k.count(b":") == 2]
    assert len(job_ids) == 1
    job = client.status(job_ids[0])
    assert job.state == "finished" and job.requester.platform == "cli"
    assert {"decode", "transcribe", "engrave", "store_artifacts", "total"} <= set(job.timings)
    assert [j.job_id for j in client.jobs_for(job.requester)] == job_ids

    again = tmp_path / "again"
    fetched = cli("result", job.job_id, "--out", str(again), env=env)
    assert fetched.wait(timeout=60) == 0, fetched.stderr.read()
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in out.iterdir())

    status = cli("status", env=env)
    text, _ = status.communicate(timeout=60)
    assert status.returncode == 0 and "waiting: 0" in text

