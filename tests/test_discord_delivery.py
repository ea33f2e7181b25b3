"""Upload planning for Discord: order, the 10-file cap, the byte limit, what cannot be attached."""

from __future__ import annotations

from stemscribe.bots.discord.delivery import (
    format_bytes,
    plan_uploads,
    too_large_note,
    upload_name,
)

SCORE_FILES = [  # (artifact, size in bytes) as a job lists them, deliberately out of order
    ("score.mid", 30),
    ("result.json", 5),        # never sent
    ("score.pdf", 150),
    ("notes.mid", 30),
    ("score.ly", 20),          # never sent
    ("preview.png", 60),
    ("score.musicxml", 50),
]


def _names(plan) -> list[list[str]]:
    return [[p.artifact for p in group] for group in plan.messages]


def test_files_go_in_the_usual_order_in_one_message_when_they_fit():
    plan = plan_uploads(SCORE_FILES, limit_bytes=10_000, title="Song")
    assert _names(plan) == [["preview.png", "score.pdf", "score.musicxml", "score.mid", "notes.mid"]]
    assert plan.too_large == [] and too_large_note(plan) == ""
    assert plan.preview is not None and plan.preview.filename == "song-preview.png"


def test_byte_limit_splits_messages_and_names_what_fits_nowhere():
    plan = plan_uploads(SCORE_FILES, limit_bytes=100, title="Song")
    # preview 60 | musicxml 50 + score.mid 30 = 80 | notes.mid 30 (80 + 30 > 100); the 150-byte PDF fits nowhere
    assert _names(plan) == [["preview.png"], ["score.musicxml", "score.mid"], ["notes.mid"]]
    assert [p.artifact for p in plan.too_large] == ["score.pdf"]
    assert too_large_note(plan).startswith("Could not attach Score (PDF) (150 bytes): uploads here are limited "
                                           "to 100 bytes.")


def test_ten_files_per_message_with_stems_after_the_score():
    stems = [(f"stems/{name}.opus", 1000) for name in ("vocals", "bass", "drums", "guitar", "piano", "other",
                                                        "strings", "winds", "brass", "synth", "choir", "organ")]
    plan = plan_uploads(SCORE_FILES + stems, limit_bytes=10**9, title="Song")
    assert [len(group) for group in plan.messages] == [10, 7]
    flat = [p.artifact for group in plan.messages for p in group]
    assert flat[:5] == ["preview.png", "score.pdf", "score.musicxml", "score.mid", "notes.mid"]
    assert flat[5:] == sorted(name for name, _ in stems)
    assert plan.messages[1][-1].filename == "song-winds.opus"


def test_preview_too_large_for_the_embed():
    plan = plan_uploads([("preview.png", 500), ("score.pdf", 50)], limit_bytes=100, title="x")
    assert plan.preview is None and _names(plan) == [["score.pdf"]]


def test_upload_names_are_safe_and_readable():
    assert upload_name("score.pdf", 'Autumn Leaves / "live" ♪') == "autumn-leaves-live.pdf"
    assert upload_name("notes.mid", "Reel") == "reel-performance.mid"
    assert upload_name("stems/bass.flac", "") == "score-bass.flac"
    assert format_bytes(10 * 1024 * 1024) == "10.0 MB" and format_bytes(2048) == "2 KB"
