"""Queue commands: `stemscribe worker`, `submit`, `result` and `status`.

Exports: register.

`submit` goes through Redis exactly like a chat bot (same checks, same limits,
same job), so it is also the quickest way to test a deployment end to end.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path

from stemscribe.core.errors import UserError
from stemscribe.inputs import split_inputs

#: Seconds between two status reads while `submit --wait` waits.
WAIT_POLL_S = 0.5


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the worker, submit, result and status subcommands."""
    p = subparsers.add_parser(
        "worker", help="run a queue worker (loads the models once, then takes jobs)",
        description="Start a worker: it loads the models named by STEMSCRIBE_PRELOAD_MODELS, then runs "
                    "transcription jobs from Redis one after another until stopped. SIGTERM lets the "
                    "current job finish (or puts it back in the queue) before exiting.")
    p.add_argument("--burst", action="store_true", help="quit once the queues are empty")
    p.add_argument("--queues", default="short,default,separation",
                   help="queues to take jobs from, in order: short, default, separation (default: all). "
                        "A GPU machine can take only the stems jobs with --queues separation")
    p.add_argument("--max-jobs", type=int, help="exit after this many jobs (a supervisor restarts it fresh)")
    p.set_defaults(func=_cmd_worker)

    p = subparsers.add_parser(
        "submit", help="queue recordings like a chat bot would",
        description="Queue one recording (several with mode:multitrack) through Redis for a worker. "
                    "Option words like mode:piano stems:yes title:\"My Song\" may follow the files. "
                    "Prints the job id, or with --wait shows progress and writes the score files.")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_OPTION", help="audio files and optional key:value words")
    p.add_argument("--wait", action="store_true", help="wait for the job and write its files into --out")
    p.add_argument("--out", "-o", type=Path, help="output folder for --wait (created if missing)")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this many seconds")
    p.set_defaults(func=_cmd_submit)

    p = subparsers.add_parser("result", help="write the files of a finished job",
                              description="Fetch the files of a finished job into a folder.")
    p.add_argument("job_id", metavar="JOB", help="job id printed by submit")
    p.add_argument("--out", "-o", type=Path, required=True, help="output folder (created if missing)")
    p.set_defaults(func=_cmd_result)

    p = subparsers.add_parser("status", help="queue depth, workers and recent failures (or one job)",
                              description="Show how many jobs wait in each queue, which workers are alive "
                                          "and what they run, and the latest failures. With JOB, show that job.")
    p.add_argument("job_id", nargs="?", metavar="JOB", help="a job id to show instead")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_status)


def _requester():
    from stemscribe.worker.client import Requester

    return Requester(platform="cli", user_id=getpass.getuser(), chat_id="cli")


def _cmd_worker(args: argparse.Namespace, settings) -> int:
    from stemscribe.worker.main import run_worker

    from stemscribe.core.plan import QueueKind

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = [q for q in queues if q not in {k.value for k in QueueKind}]
    if unknown or not queues:
        print(f"stemscribe worker: unknown queue {', '.join(unknown) or '(none)'}; "
              f"use {', '.join(k.value for k in QueueKind)}", file=sys.stderr)
        return 2
    return run_worker(settings, queues=queues, burst=args.burst, max_jobs=args.max_jobs)


def _cmd_submit(args: argparse.Namespace, settings) -> int:
    from stemscribe.core.options import parse_options
    from stemscribe.worker.client import InputFile, JobClient

    if args.wait and args.out is None:
        print("stemscribe submit: --wait needs --out DIR", file=sys.stderr)
        return 2
    paths, words = split_inputs(args.inputs)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"No such file: {', '.join(missing)}.")
    options = parse_options(words)
    client = JobClient(settings)
    requester = _requester()
    submission = client.submit([InputFile(p.name, p.read_bytes()) for p in paths], options, requester)
    if not args.wait:
        print(submission.job_id)
        return 0
    print(f"queued {submission.job_id}, number {submission.position} in line", file=sys.stderr)
    try:
        status = _wait(client, submission.job_id, timeout_s=args.timeout)
    except KeyboardInterrupt:
        client.cancel(submission.job_id, requester)
        print(f"cancelled {submission.job_id}", file=sys.stderr)
        return 130
    if status is None:
        print(f"stemscribe: still running after {args.timeout:g} s; fetch later with "
              f"'stemscribe result {submission.job_id} --out DIR'", file=sys.stderr)
        return 1
    return _finish(client, status, args.out)


def _wait(client, job_id: str, *, timeout_s: float):
    """Print a line whenever the stage or whole percent changes; return the final status (None on timeout)."""
    deadline = time.monotonic() + timeout_s
    shown = None
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        status = client.status(job_id)
        line = (status.state, status.stage, int(status.percent), status.position)
        if line != shown:
            where = f"number {status.position} in line" if status.state == "queued" else status.stage
            print(f"[{time.monotonic() - t0:6.1f}s] {status.percent:5.1f}% {status.state}: {where}"
                  + (f" ({status.message})" if status.message else ""), file=sys.stderr)
            shown = line
        if status.state in ("finished", "failed", "cancelled"):
            return status
        time.sleep(WAIT_POLL_S)
    return None


def _finish(client, status, out_dir: Path) -> int:
    if status.state == "finished":
        written = _write_outputs(client, status.job_id, out_dir)
        from stemscribe.bots.common import summary_line

        print(summary_line(client.result(status.job_id).summary))
        print(f"Wrote {len(written)} files to {out_dir}/")
        return 0
    error = status.error or {}
    text = " ".join(str(x) for x in (error.get("message"), error.get("hint")) if x) or status.state
    print(f"stemscribe: job {status.job_id} {status.state}: {text}", file=sys.stderr)
    return 2 if error.get("user_error") else 1


def _write_outputs(client, job_id: str, out_dir: Path) -> list[Path]:
    output = client.result(job_id)
    written = []
    for artifact in output.artifacts:
        path = out_dir / artifact.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(client.fetch_artifact(job_id, artifact.name))
        written.append(path)
    return written


def _cmd_result(args: argparse.Namespace, settings) -> int:
    from stemscribe.worker.client import JobClient

    client = JobClient(settings)
    status = client.status(args.job_id)
    if status.state in ("queued", "started"):
        print(f"job {args.job_id} is {status.state} ({status.stage}, {status.percent:.0f}%); try again later",
              file=sys.stderr)
        return 1
    return _finish(client, status, args.out)


def _cmd_status(args: argparse.Namespace, settings) -> int:
    from dataclasses import asdict

    from stemscribe.worker.client import JobClient

    client = JobClient(settings)
    if args.job_id:
        status = asdict(client.status(args.job_id))
        status["requester"] = {k: v for k, v in status["requester"].items() if k != "reply"}
        print(json.dumps(status, indent=2) if args.json else
              "\n".join(f"{k}: {v}" for k, v in status.items() if v not in (None, {}, "")))
        return 0
    stats = client.queue_stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"waiting: {stats['waiting']}")
    for name, q in stats["queues"].items():
        print(f"  {name:<24} waiting {q['waiting']:>4}  running {q['started']:>3}  failed {q['failed']:>4}")
    print(f"workers: {len(stats['workers'])}")
    for w in stats["workers"]:
        beat = time.strftime("%H:%M:%S", time.localtime(w["last_heartbeat"])) if w["last_heartbeat"] else "-"
        print(f"  {w['name']:<30} {w['state']:<8} job {w['job_id'] or '-':<26} heartbeat {beat}  "
              f"queues {','.join(w['queues'])}")
    print(f"recent failures: {len(stats['recent_failures'])}")
    for f in stats["recent_failures"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["ended_at"])) if f["ended_at"] else "-"
        print(f"  {when}  {f['job_id']}  {f['queue']}  {f['error']}")
    return 0
