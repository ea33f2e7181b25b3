"""Unit tests of worker artifact naming and the folder store (no Redis); job planning is tests/test_plan.py."""

from __future__ import annotations

import time

import pytest

from stemscribe.worker import limits
from stemscribe.worker.artifacts import (FolderArtifactStore, artifact_kind, check_artifact_name,
                                         check_job_id)

from stemscribe.settings import load_settings

SETTINGS = load_settings(env={}, max_input_bytes=1000, max_duration_s=600.0, max_duration_stems_s=300.0,
                         lilypond_timeout_s=120.0)


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
