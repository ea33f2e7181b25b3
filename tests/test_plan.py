"""Job planning (core.plan): one size formatter, one limit check, one queue/timeout decision.

Every front end (Telegram's and Discord's early checks, the job API's admission,
the pipeline) asks core.plan, so a limit reads the same wherever it was caught.
"""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest

from stemscribe.core import defaults
from stemscribe.core.errors import AudioTooLargeError, AudioTooLongError, EmptyAudioError, OptionsError
from stemscribe.core.options import Mode, Options
from stemscribe.core.plan import (InputFacts, Limits, QueueKind, auto_separation_refusal, check_inputs,
                                  format_size, job_timeout_s, plan_job, separates)

LIMITS = Limits(max_duration_s=600.0, max_duration_stems_s=300.0, max_input_bytes=1000, lilypond_timeout_s=120.0)
MB = defaults.MEGABYTE_BYTES


def _files(*durations):
    return [InputFacts(f"f{i}.ogg", 10, d) for i, d in enumerate(durations)]


@pytest.mark.parametrize("durations, options, queue", [
    ([12.0], Options(), QueueKind.SHORT),                               # a voice note, auto: decided later
    ([60.0], Options(mode=Mode.SOLO), QueueKind.SHORT),                 # exactly the short limit
    ([61.0], Options(mode=Mode.SOLO), QueueKind.DEFAULT),               # just over
    ([None], Options(), QueueKind.DEFAULT),                             # unknown length: not promised short
    ([10.0], Options(stems=True), QueueKind.SEPARATION),                # separation has its own queue
    ([10.0], Options(mode=Mode.STEMS), QueueKind.SEPARATION),
    ([30.0, 40.0], Options(mode=Mode.MULTITRACK), QueueKind.SHORT),     # each file short
    ([30.0, 40.0], Options(mode=Mode.MULTITRACK, stems=True), QueueKind.SHORT),  # nothing to separate
])
def test_plan_picks_the_queue(durations, options, queue):
    assert plan_job(_files(*durations), options, LIMITS).queue is queue


def test_separation_is_known_before_decoding_except_for_auto():
    assert separates(Options(mode=Mode.STEMS), 1) is True
    assert separates(Options(stems=True), 1) is True
    assert separates(Options(), 1) is None               # auto decides after listening
    assert separates(Options(mode=Mode.SOLO), 1) is False
    assert separates(Options(mode=Mode.MULTITRACK, stems=True), 3) is False
    assert plan_job(_files(10.0), Options(), LIMITS).separates is None


def test_timeout_scales_with_duration_and_budgets_auto_as_separation():
    solo = dict(separating=False, limits=LIMITS)
    # base + LilyPond + per-second part: 240 + 120 + 4 * 10
    assert job_timeout_s(10.0, **solo) == 400
    assert job_timeout_s(300.0, separating=True, limits=LIMITS) == 240 + 120 + 15 * 300
    assert job_timeout_s(300.0, separating=None, limits=LIMITS) == 240 + 120 + 15 * 300
    # unknown length counts as the cap for the mode (stems cap is 300 s here)
    assert job_timeout_s(None, separating=True, limits=LIMITS) == 240 + 120 + 15 * 300
    assert job_timeout_s(1e6, **solo) == defaults.JOB_TIMEOUT_MAX_S
    # multitrack sums its files
    assert plan_job(_files(100.0, 100.0), Options(mode=Mode.MULTITRACK), LIMITS).timeout_s == \
        job_timeout_s(200.0, **solo)


def test_input_checks_in_the_order_a_user_wants_them():
    with pytest.raises(OptionsError, match="No recording"):
        check_inputs([], Options(), LIMITS)
    with pytest.raises(OptionsError, match="mode:solo takes one recording"):
        check_inputs(_files(1, 1), Options(mode=Mode.SOLO), LIMITS)
    with pytest.raises(OptionsError, match="needs two or more"):
        check_inputs(_files(1), Options(mode=Mode.MULTITRACK), LIMITS)
    with pytest.raises(OptionsError, match="up to 8"):
        check_inputs(_files(*[1] * 9), Options(mode=Mode.MULTITRACK), LIMITS)
    with pytest.raises(EmptyAudioError, match="a.ogg is empty"):
        check_inputs([InputFacts("a.ogg", 0)], Options(), LIMITS)
    with pytest.raises(AudioTooLargeError, match="big.wav is 1001 bytes; this server takes files up to 1000 bytes"):
        check_inputs([InputFacts("big.wav", 1001)], Options(), LIMITS)
    check_inputs(_files(1, 1), Options(), LIMITS)  # auto with several files is multitrack


def test_stems_have_their_own_duration_cap():
    long = [InputFacts("long.ogg", 10, 400.0)]
    check_inputs(long, Options(mode=Mode.SOLO), LIMITS)
    check_inputs(long, Options(), LIMITS)  # auto is held to the stems cap only once it chooses separation
    with pytest.raises(AudioTooLongError, match="long.ogg is 6:40 long; I accept up to 5:00 when separating stems"):
        check_inputs(long, Options(stems=True), LIMITS)
    assert auto_separation_refusal(290.0, LIMITS) is None
    assert "longer than the 5:00 this server separates" in auto_separation_refusal(400.0, LIMITS)


def test_a_platform_download_limit_is_named_when_it_is_the_stricter_one():
    limits = Limits(max_input_bytes=100 * MB)
    with pytest.raises(AudioTooLargeError, match=r"Telegram lets bots download files up to 20 MB, and v.ogg is 25.3 MB"):
        check_inputs([InputFacts("v.ogg", int(25.3 * MB))], Options(), limits,
                     download_limit_bytes=20 * MB, download_limit_owner="Telegram")
    # a server limit below the platform's is the one that speaks
    with pytest.raises(AudioTooLargeError, match="this server takes files up to 10 MB"):
        check_inputs([InputFacts("v.ogg", 15 * MB)], Options(), Limits(max_input_bytes=10 * MB),
                     download_limit_bytes=20 * MB, download_limit_owner="Telegram")


@pytest.mark.parametrize("size, text", [(512, "512 bytes"), (2048, "2 KB"), (20 * MB, "20 MB"),
                                        (int(25.3 * MB), "25.3 MB"), (100 * MB, "100 MB")])
def test_one_size_formatter(size, text):
    assert format_size(size) == text


def _settings(**overrides):
    values = dict(max_duration_s=600.0, max_duration_stems_s=300.0, max_input_bytes=30 * MB,
                  lilypond_timeout_s=120.0, telegram_local_mode=False)
    values.update(overrides)
    return SimpleNamespace(**values)


def test_every_front_end_says_the_same_about_a_file_that_is_too_large(tmp_path):
    """Telegram's check, Discord's check, the job API and the decoder: one message, one formatter."""
    from stemscribe.bots.discord.cog import check_attachments
    from stemscribe.bots.telegram.media import Recording, check_recording
    from stemscribe.core.audio import probe, check_limits
    from stemscribe.worker.limits import probe_facts

    settings = _settings(max_input_bytes=1 * MB)
    limits = Limits.from_settings(settings)
    size = int(1.5 * MB)
    expected = "song.wav is 1.5 MB; this server takes files up to 1 MB."

    with pytest.raises(AudioTooLargeError) as telegram:
        check_recording(Recording("audio", "id", "song.wav", size, 10.0), Options(), settings)
    attachment = SimpleNamespace(filename="song.wav", size=size, content_type="audio/wav")
    with pytest.raises(AudioTooLargeError) as discord:
        check_attachments([attachment], Options(), limits)
    clip = tmp_path / "song.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anoisesrc=duration=9:amplitude=0.1",
                    "-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le", str(clip)], check=True)
    assert probe(clip).size_bytes > 1 * MB
    with pytest.raises(AudioTooLargeError) as worker:
        probe_facts([clip], ["song.wav"], limits)
    with pytest.raises(AudioTooLargeError) as decoder:
        check_limits(probe(clip), max_bytes=limits.max_input_bytes)
    assert telegram.value.message == discord.value.message == expected
    for error in (worker.value, decoder.value):
        assert error.message.startswith("song.wav is ") and error.message.endswith("this server takes files up to 1 MB.")
    assert telegram.value.hint == discord.value.hint == worker.value.hint == decoder.value.hint


def test_every_front_end_holds_stems_to_the_stems_cap():
    from stemscribe.bots.discord.cog import check_attachments
    from stemscribe.bots.telegram.media import Recording, check_recording

    settings = _settings()
    with pytest.raises(AudioTooLongError, match="when separating stems"):
        check_recording(Recording("voice", "id", "v.ogg", 1000, 400.0), Options(stems=True), settings)
    check_recording(Recording("voice", "id", "v.ogg", 1000, 400.0), Options(), settings)
    with pytest.raises(OptionsError, match="mode:piano takes one recording"):
        check_attachments([SimpleNamespace(filename=f"{i}.ogg", size=10, content_type="audio/ogg") for i in range(2)],
                          Options(mode=Mode.PIANO), Limits.from_settings(settings))


# ---------------------------------------------------------------- auto resolving to separation in the pipeline

BAND_REASON = "it sounds like a band with drums, so each instrument gets its own staff"


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    from helpers.synth import melody_notes, render_notes, write_audio

    path = tmp_path_factory.mktemp("clips") / "band.wav"
    return write_audio(path, render_notes(melody_notes(pitches=(60, 64, 67, 72, 67, 64))))


class _Moved(Exception):
    pass


def _pretend_auto_hears_a_band(monkeypatch):
    from stemscribe.core import pipeline

    monkeypatch.setattr(pipeline, "choose_mode", lambda options, *a, **k: (Mode.STEMS, BAND_REASON))


def test_auto_separation_calls_the_queue_hook_before_separating(short_clip, tmp_path, monkeypatch):
    from stemscribe.core.pipeline import run

    _pretend_auto_hears_a_band(monkeypatch)
    calls = []

    def hook():
        calls.append("moved")
        raise _Moved

    with pytest.raises(_Moved):
        run([short_clip], tmp_path, Options(), limits=Limits(max_duration_stems_s=600.0), before_auto_separation=hook)
    assert calls == ["moved"]


@pytest.mark.slow
def test_an_auto_job_over_the_stems_cap_is_reduced_to_piano_and_says_why(short_clip, tmp_path, monkeypatch):
    from stemscribe.core.pipeline import run

    _pretend_auto_hears_a_band(monkeypatch)

    def hook():
        raise AssertionError("a recording over the stems cap must not move to separation")

    result = run([short_clip], tmp_path, Options(), limits=Limits(max_duration_stems_s=2.0), before_auto_separation=hook)
    assert result["mode"] == "piano" and result["stems"] == []
    assert "longer than the 0:02 this server separates into stems" in result["mode_reason"]
    assert result["mode_reason"].startswith("it sounds like a band with drums, but at 0:0")
