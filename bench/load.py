"""Load check of the job queue: simulated chat users against real worker processes.

Run: .venv/bin/python bench/load.py [--jobs 50] [--users 10] [--workers 2] [--clip-seconds 2 10 30]
                                   [--fake-seconds S]

Starts a private redis-server (AOF on) unless --redis-url is given, starts
--workers `stemscribe worker` processes (models loaded once each, one torch
thread each), then lets --users simulated users send --jobs synthesized melodies in total
through JobClient, exactly as the bots do; with several --clip-seconds each
job's length is drawn from them (seeded), so short and long jobs mix. A user who is told
"you already have 2 recordings in progress" waits a second and sends again, as
a person would; any other refusal is final. At the end every job must be
accounted for: finished, failed with a reported error, or cleanly refused;
a job in none of these states is "lost" and makes the run fail (exit 1).

Prints throughput, queue wait (enqueue -> start) p50/p95/max, run time per job
(also per clip length), and refusals by reason; --json-out writes the same as JSON.
With --fake-seconds the workers run a stand-in pipeline of that length instead
of the real one (measures the queue itself).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stemscribe.core.errors import LimitError, TooManyJobsError  # noqa: E402
from stemscribe.core.options import Options  # noqa: E402
from stemscribe.settings import load_settings  # noqa: E402
from stemscribe.worker.client import InputFile, JobClient, Requester  # noqa: E402

#: Seconds a refused user waits before sending again.
RESUBMIT_DELAY_S = 1.0
_MELODY = (60, 62, 64, 65, 67, 65, 64, 62, 60)


def melody_wav(seconds: float, *, sample_rate: int = 16000, max_note_s: float = 0.4) -> bytes:
    """A sine melody (a C major scale fragment, repeated to fill ``seconds``) as mono 16-bit WAV bytes."""
    count = max(len(_MELODY), int(round(seconds / max_note_s)))
    n = int(seconds / count * sample_rate)
    t = np.arange(n) / sample_rate
    tones = [0.4 * np.sin(2 * np.pi * 440.0 * 2 ** ((_MELODY[k % len(_MELODY)] - 69) / 12) * t) * np.hanning(n)
             for k in range(count)]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.concatenate(tones) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, int(np.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


class Users:
    """Simulated users sending jobs; records every attempt and outcome (thread-safe)."""

    def __init__(self, client: JobClient, clips: Sequence[tuple[float, bytes]], *, users: int, jobs: int,
                 mean_gap_s: float, deadline: float, seed: int) -> None:
        self.client, self.deadline = client, deadline
        draw = random.Random(seed)
        #: (seconds, WAV bytes) of each job, drawn once so every run sends the same mix.
        self.clip_of = [clips[draw.randrange(len(clips))] for _ in range(jobs)]
        self.plan = [[] for _ in range(users)]
        for i in range(jobs):
            self.plan[i % users].append(i)
        self.mean_gap_s = mean_gap_s
        self.seed = seed
        self.lock = threading.Lock()
        self.submitted: dict[str, dict] = {}
        self.refused: list[dict] = []
        self.refusals = Counter()

    def run_user(self, index: int) -> None:
        rng = random.Random(self.seed + index)
        requester = Requester("bench", f"user-{index}", f"chat-{index % 3}")
        for job_no in self.plan[index]:
            time.sleep(rng.expovariate(1.0 / self.mean_gap_s))
            first_try = time.time()
            while True:
                try:
                    sub = self.client.submit([InputFile(f"melody-{job_no}.wav", self.clip_of[job_no][1])],
                                             Options(), requester)
                except TooManyJobsError:
                    with self.lock:
                        self.refusals["TooManyJobsError (resubmitted)"] += 1
                    if time.time() > self.deadline:
                        self._refuse(job_no, "TooManyJobsError")
                        break
                    time.sleep(RESUBMIT_DELAY_S)
                    continue
                except LimitError as exc:
                    self._refuse(job_no, type(exc).__name__)
                    break
                with self.lock:
                    self.submitted[sub.job_id] = {"job": job_no, "user": index, "first_try": first_try,
                                                  "clip_s": self.clip_of[job_no][0]}
                break

    def _refuse(self, job_no: int, reason: str) -> None:
        with self.lock:
            self.refused.append({"job": job_no, "reason": reason})
            self.refusals[reason + " (final)"] += 1


def start_workers(count: int, redis_url: str, log_dir: Path, fake_seconds: float | None) -> list[subprocess.Popen]:
    env = {**os.environ, "STEMSCRIBE_REDIS_URL": redis_url, "STEMSCRIBE_TORCH_THREADS": "1",
           "STEMSCRIBE_PRELOAD_MODELS": "basic-pitch", "STEMSCRIBE_LOG_FORMAT": "json",
           "OMP_NUM_THREADS": "1"}
    if fake_seconds is not None:
        env["FAKE_PIPELINE_SECONDS"] = str(fake_seconds)
        cmd = [sys.executable, str(REPO / "tests" / "helpers" / "worker_proc.py")]
    else:
        cmd = [sys.executable, "-m", "stemscribe", "worker"]
    procs = []
    for i in range(count):
        with open(log_dir / f"worker-{i}.log", "wb") as log:
            procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def report(users: Users, client: JobClient, jobs: int, started: float) -> dict:
    statuses = {job_id: client.status(job_id) for job_id in users.submitted}
    done = [s for s in statuses.values() if s.state == "finished"]
    failed = [s for s in statuses.values() if s.state in ("failed", "cancelled")]
    lost = jobs - len(done) - len(failed) - len(users.refused)
    waits = [s.started_at - s.enqueued_at for s in done]
    runs = [s.ended_at - s.started_at for s in done]
    end_to_end = [s.ended_at - users.submitted[s.job_id]["first_try"] for s in done]
    span = (max(s.ended_at for s in done) - started) if done else 0.0
    by_length: dict[float, list[float]] = {}
    for s in done:
        by_length.setdefault(users.submitted[s.job_id]["clip_s"], []).append(s.ended_at - s.started_at)
    return {
        "jobs": jobs, "finished": len(done), "failed": len(failed), "refused": len(users.refused), "lost": lost,
        "failures": Counter((s.error or {}).get("type", "?") for s in failed),
        "refusals": dict(users.refusals),
        "wall_s": round(span, 1),
        "throughput_jobs_per_min": round(60 * len(done) / span, 2) if span else 0.0,
        "wait_s": {"p50": round(percentile(waits, 50), 2), "p95": round(percentile(waits, 95), 2),
                   "max": round(max(waits), 2)} if waits else {},
        "run_s": {"p50": round(percentile(runs, 50), 2), "p95": round(percentile(runs, 95), 2)} if runs else {},
        "run_s_by_clip_s": {f"{length:g}": {"jobs": len(r), "p50": round(percentile(r, 50), 2),
                                            "p95": round(percentile(r, 95), 2)}
                            for length, r in sorted(by_length.items())},
        "end_to_end_s": {"p50": round(percentile(end_to_end, 50), 2),
                         "p95": round(percentile(end_to_end, 95), 2)} if end_to_end else {},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clip-seconds", type=float, nargs="+", default=[2.0],
                        help="length(s) of the synthesized melodies; each job draws one")
    parser.add_argument("--mean-gap-s", type=float, default=3.0, help="mean pause between one user's uploads")
    parser.add_argument("--fake-seconds", type=float, help="run a stand-in pipeline of this length")
    parser.add_argument("--redis-url", help="use this Redis instead of starting a private one (it is flushed!)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json-out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    server = None
    if args.redis_url is None:
        sys.path.insert(0, str(REPO / "tests"))
        from helpers.redis_server import RedisServer

        server = RedisServer().start()
    redis_url = args.redis_url or server.url
    log_dir = Path(tempfile.mkdtemp(prefix="stemscribe-load-"))
    procs: list[subprocess.Popen] = []
    try:
        settings = load_settings(env={}, redis_url=redis_url)
        client = JobClient(settings)
        client.redis.flushdb()
        procs = start_workers(args.workers, redis_url, log_dir, args.fake_seconds)
        ready_by = time.monotonic() + 300
        while len(client.queue_stats()["workers"]) < args.workers:  # models load before a worker registers
            if time.monotonic() > ready_by or any(p.poll() is not None for p in procs):
                print(f"workers did not start; logs in {log_dir}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        started = time.time()
        deadline = started + args.timeout
        clips = [(seconds, melody_wav(seconds)) for seconds in args.clip_seconds]
        users = Users(client, clips, users=args.users, jobs=args.jobs,
                      mean_gap_s=args.mean_gap_s, deadline=deadline, seed=args.seed)
        threads = [threading.Thread(target=users.run_user, args=(i,)) for i in range(args.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        while time.time() < deadline:
            states = [client.status(j).state for j in list(users.submitted)]
            if all(s in ("finished", "failed", "cancelled") for s in states):
                break
            time.sleep(1.0)
        result = report(users, client, args.jobs, started)
    finally:
        stop_workers(procs)
        if server is not None:
            server.close()
    result.update({"users": args.users, "workers": args.workers, "clip_s": args.clip_seconds,
                   "pipeline": f"fake {args.fake_seconds} s" if args.fake_seconds is not None else "real",
                   "logs": str(log_dir)})
    print(json.dumps(result, indent=2, default=dict))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2, default=dict))
    return 0 if result["lost"] == 0 and result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
