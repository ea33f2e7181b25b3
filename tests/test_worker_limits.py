"""Unit tests of worker limits, timeouts, artifact naming and the folder store (no Redis)."""

from __future__ import annotations

import time

import pytest

from stemscribe.core.errors import AudioTooLargeError, AudioTooLongError, EmptyAudioError, OptionsError
from stemscribe.core.options import Mode, Options
from stemscribe.worker import limits
from stemscribe.worker.artifacts import (FolderArtifactStore, artifact_kind, check_artifact_name,
                                         check_job_id)
from stemscribe.worker.limits import QueueKind

from stemscribe.settings import load_settings

SETTINGS = load_settings(env={}, max_input_bytes=1000, max_duration_s=600.0, max_duration_stems_s=300.0,
                         lilypond_timeout_s=120.0)


@pytest.mark.parametrize("durations, options, queue", [
    ([12.0], Options(), QueueKind.SHORT),                                   # a voice note
    ([60.0], Options(mode=Mode.SOLO), QueueKind.SHORT),                     # exactly the short limit
    ([61.0], Options(mode=Mode.SOLO), QueueKind.DEFAULT),                   # just over
    ([None], Options(), QueueKind.DEFAULT),                                 # unknown length: not promised short
    ([10.0], Options(stems=True), QueueKind.SEPARATION),                         # separation has its own queue
    ([10.0], Options(mode=Mode.STEMS), QueueKind.SEPARATION),
    ([30.0, 40.0], Options(mode=Mode.MULTITRACK), QueueKind.SHORT),         # each file short
])
def test_plan_job_picks_queue(durations, options, queue):
    assert limits.plan_job(durations, options, SETTINGS).queue is queue


def test_timeout_scales_with_duration_and_mode():
    solo = Options(mode=Mode.SOLO)
    short = limits.job_timeout_s(10.0, solo, SETTINGS)
    long = limits.job_timeout_s(300.0, solo, SETTINGS)
    stems = limits.job_timeout_s(300.0, Options(stems=True), SETTINGS)
    # base + LilyPond + per-second part: 240 + 120 + 4 * 10
    assert short == 400
    assert long == 240 + 120 + 4 * 300
    assert stems == 240 + 120 + 15 * 300
    # unknown duration counts as the longest allowed for the mode (stems cap is 300 s here)
    assert limits.job_timeout_s(None, Options(stems=True), SETTINGS) == stems
    assert limits.job_timeout_s(1e6, solo, SETTINGS) == limits.TIMEOUT_MAX_S
    # multitrack sums its files
    assert limits.plan_job([100.0, 100.0], Options(mode=Mode.MULTITRACK), SETTINGS).timeout_s == \
        limits.job_timeout_s(200.0, Options(mode=Mode.MULTITRACK), SETTINGS)


def test_check_files_messages():
    with pytest.raises(AudioTooLargeError, match=r"big.wav is 0.0 MB; this server takes files up to 0.0 MB"):
        limits.check_files([("big.wav", 1001)], Options(), SETTINGS)
    with pytest.raises(EmptyAudioError, match="empty"):
        limits.check_files([("a.ogg", 0)], Options(), SETTINGS)
    with pytest.raises(OptionsError, match="multitrack"):
        limits.check_files([("a.ogg", 10), ("b.ogg", 10)], Options(), SETTINGS)
    with pytest.raises(OptionsError, match="No recording"):
        limits.check_files([], Options(), SETTINGS)
    limits.check_files([("a.ogg", 10), ("b.ogg", 10)], Options(mode=Mode.MULTITRACK), SETTINGS)


def test_stems_have_their_own_duration_cap(tmp_path):
    import subprocess

    clip = tmp_path / "long.wav"
    # 400 s at 8 kHz mono is 6 MB and takes ffmpeg well under a second to write
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=400",
                    "-ar", "8000", "-ac", "1", str(clip)], check=True)
    big = load_settings(env={}, max_duration_s=600.0, max_duration_stems_s=300.0)
    assert limits.probe_files([clip], Options(mode=Mode.SOLO), big)[0] == pytest.approx(400.0, abs=0.1)
    with pytest.raises(AudioTooLongError, match="up to 5:00"):
        limits.probe_files([clip], Options(stems=True), big)


@pytest.mark.parametrize("seconds, text", [(1, "1 second"), (45, "45 seconds"), (600, "10 minutes"),
                                           (3600, "1 hour"), (7200, "2 hours"), (5400, "90 minutes")])
def test_human_duration(seconds, text):
    assert limits.human_duration(seconds) == text


@pytest.mark.parametrize("name", ["score.pdf", "stems/bass.opus", "input/0-clip.ogg", "a_b-c.1"])
def test_artifact_names_accepted(name):
    assert check_artifact_name(name) == name


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs.pdf", "stems/../x", "a/b/c", ".hidden", "", "sp ace.pdf",
                                  "a" * 101])
def test_artifact_names_refused(name):
    with pytest.raises(ValueError):
        check_artifact_name(name)


@pytest.mark.parametrize("job_id", ["../x", "short", "a/b" * 5, "x" * 65, "with space here"])
def test_job_ids_refused(job_id):
    with pytest.raises(ValueError):
        check_job_id(job_id)


def test_artifact_kinds():
    assert [artifact_kind(n) for n in ("score.pdf", "preview.png", "notes.mid", "stems/vocals.flac", "x.bin")] == \
        ["pdf", "preview", "performance-midi", "stem", "other"]


def test_folder_store_round_trip_and_expiry(tmp_path):
    store = FolderArtifactStore(tmp_path)
    store.put("job-aaaaaaaa", "score.pdf", b"%PDF", ttl_s=60)
    store.put("job-aaaaaaaa", "stems/bass.opus", b"stem", ttl_s=60)
    store.put("job-bbbbbbbb", "score.pdf", b"other", ttl_s=1)
    assert store.get("job-aaaaaaaa", "score.pdf") == b"%PDF"
    assert store.sizes("job-aaaaaaaa") == {"score.pdf": 4, "stems/bass.opus": 4}
    store.delete("job-aaaaaaaa", ["stems/bass.opus"])
    assert store.sizes("job-aaaaaaaa") == {"score.pdf": 4}
    time.sleep(1.1)
    with pytest.raises(KeyError):
        store.get("job-bbbbbbbb", "score.pdf")  # expired: refused and removed on read
    assert not (tmp_path / "job-bbbbbbbb").exists()
    store.put("job-cccccccc", "score.pdf", b"x", ttl_s=1)
    time.sleep(1.1)
    assert store.purge_expired() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job-aaaaaaaa"]
    with pytest.raises(ValueError):
        store.get("../job-aaaaaaaa", "score.pdf")


def test_log_lines_carry_the_job_id():
    import io
    import json
    import logging

    from stemscribe.worker.logs import configure_logging

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(load_settings(env={}, log_format="json"), worker="w1", stream=stream)
        logging.getLogger("stemscribe.test").info("hello %s", "there", extra={"job_id": "abc123"})
        logging.getLogger("stemscribe.test").warning("outside a job")
    finally:
        root.handlers[:], root.level = saved
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["message"], first["job_id"], first["worker"], first["level"]) == ("hello there", "abc123", "w1", "INFO")
    assert second["job_id"] == "-"
    with pytest.raises(ValueError):
        configure_logging(load_settings(env={}, log_format="xml"))
