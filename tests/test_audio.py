"""Tests of core.audio: every accepted format decodes, every rejected input raises the right error.

Fixtures are made at test time with ffmpeg and numpy (a second or two each, all tiny).
"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from stemscribe.core import audio as audio_module
from stemscribe.core.audio import Audio, decode, encode, format_clock, probe
from stemscribe.core.errors import (
    AudioTooLargeError,
    AudioTooLongError,
    DecodeError,
    EmptyAudioError,
    SilentAudioError,
    UnsupportedFormatError,
)

TONE_S = 1.5


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """One small file per accepted container: a 1.5 s stereo 440 Hz tone at -6 dBFS, 44.1 kHz."""
    d = tmp_path_factory.mktemp("media")
    wave = "0.5*sin(2*PI*440*t)"
    tone = ["-f", "lavfi", "-i", f"aevalsrc={wave}|{wave}:s=44100:d={TONE_S}"]
    video = ["-f", "lavfi", "-i", f"testsrc=duration={TONE_S}:size=32x32:rate=10"]
    files = {
        "voice.ogg": ["-c:a", "libopus", "-b:a", "32k"],  # a Telegram voice note
        "song.mp3": ["-c:a", "libmp3lame"],
        "memo.m4a": ["-c:a", "aac"],
        "take.wav": [],
        "take.flac": [],
        "browser.webm": ["-c:a", "libopus"],
    }
    out: dict[str, Path] = {}
    for name, codec in files.items():
        out[name] = d / name
        ffmpeg(*tone, *codec, str(out[name]))
    for name, codecs in {"clip.mp4": ["-c:v", "mpeg4", "-c:a", "aac"], "clip.mov": ["-c:v", "mpeg4", "-c:a", "aac"],
                         "clip.mkv": ["-c:v", "mpeg4", "-c:a", "libopus"], "clip.webm": ["-c:v", "libvpx", "-c:a", "libopus"]}.items():
        out[name] = d / name
        ffmpeg(*video, *tone, "-map", "0:v", "-map", "1:a", *codecs, "-shortest", str(out[name]))
    return out


@pytest.mark.parametrize("name", ["voice.ogg", "song.mp3", "memo.m4a", "take.wav", "take.flac", "browser.webm",
                                  "clip.mp4", "clip.mov", "clip.mkv", "clip.webm"])
def test_each_accepted_format_decodes_with_right_length_and_rate(media, name):
    audio = decode(media[name])
    assert audio.sample_rate == 44100
    assert audio.channels == 2
    assert audio.samples.dtype == np.float32
    # AAC and Opus add a few ms of encoder delay/padding; everything else is exact.
    assert audio.duration_s == pytest.approx(TONE_S, abs=0.05)
    assert audio.peak_dbfs == pytest.approx(-6.0, abs=1.0)
    assert audio.name == Path(name).stem


def test_decode_mono_at_analysis_rate(media):
    audio = decode(media["voice.ogg"], sample_rate=22050, mono=True)
    assert audio.samples.shape[0] == 1
    assert audio.sample_rate == 22050
    assert audio.samples.shape[1] == pytest.approx(TONE_S * 22050, abs=0.05 * 22050)


def test_probe_reports_header_fields(media):
    info = probe(media["voice.ogg"])
    assert info.has_audio and info.codec == "opus" and info.channels == 2
    assert info.format_name == "ogg"
    assert info.duration_s == pytest.approx(TONE_S, abs=0.05)
    assert info.size_bytes == media["voice.ogg"].stat().st_size


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "voice.ogg"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match=r"voice\.ogg is empty \(0 bytes\)"):
        decode(path)


@pytest.mark.parametrize("name, content", [
    ("score.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"),
    ("notes.txt", b"C D E F G A B c\n" * 20),
    # An HLS playlist would make ffmpeg read other files; it must not even be opened.
    ("list.m3u8", b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n"),
])
def test_non_audio_files_are_unsupported(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsupportedFormatError, match="not an audio file") as err:
        decode(path)
    assert "MP3" in str(err.value)  # the hint says what to send instead


def test_image_is_unsupported(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.jpg"
    Image.new("RGB", (16, 16), "red").save(path)
    with pytest.raises(UnsupportedFormatError):
        decode(path)


def test_video_without_sound_is_unsupported(tmp_path):
    path = tmp_path / "silent-film.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=1:size=32x32:rate=10", "-c:v", "mpeg4", str(path))
    with pytest.raises(UnsupportedFormatError, match="has no sound track"):
        decode(path)


@pytest.mark.parametrize("name", ["take.flac", "memo.m4a", "song.mp3", "browser.webm"])
def test_truncated_files_raise_decode_error(media, tmp_path, name):
    data = media[name].read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError) as err:
        decode(path)
    assert name in err.value.message
    assert err.value.hint  # tells the user what to do


def test_decode_error_quotes_ffmpeg(media, tmp_path):
    data = media["take.flac"].read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="ffmpeg reported: .*(invalid|Invalid)"):
        decode(path)


def test_corrupt_header_is_a_decode_error_not_unsupported(media, tmp_path):
    data = bytearray(media["memo.m4a"].read_bytes())
    path = tmp_path / "memo.m4a"
    path.write_bytes(bytes(data[:64]))  # 'ftyp' survives, the rest does not
    with pytest.raises(DecodeError, match="looks like audio"):
        decode(path)


def test_silence_is_rejected(tmp_path):
    path = tmp_path / "nothing.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=sample_rate=8000:channel_layout=mono", "-t", "2", str(path))
    with pytest.raises(SilentAudioError, match=r"nothing\.wav is silent \(digital silence; .*-60 dBFS"):
        decode(path)


def test_near_silence_reports_its_level(tmp_path):
    path = tmp_path / "hiss.wav"
    # 0.000316 of full scale is -70 dBFS.
    ffmpeg("-f", "lavfi", "-i", "aevalsrc=0.000316*sin(2*PI*440*t):s=8000:d=1", "-c:a", "pcm_f32le", str(path))
    with pytest.raises(SilentAudioError, match="-70 dBFS at its loudest"):
        decode(path)


def test_too_large_is_rejected_before_probing(media, monkeypatch):
    def no_probe(*args, **kwargs):
        raise AssertionError("probe must not run for an oversized file")

    monkeypatch.setattr(audio_module, "probe", no_probe)
    with pytest.raises(AudioTooLargeError, match=r"take\.wav is 258 KB; this server takes files up to 98 KB"):
        decode(media["take.wav"], max_bytes=100_000)


def test_too_long_is_rejected_from_the_header_without_decoding(tmp_path, monkeypatch):
    # 12:31 of near-silent FLAC at 8 kHz: ~100 kB, made in well under a second.
    path = tmp_path / "rehearsal.flac"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:sample_rate=8000:duration=751", "-af", "volume=-30dB", str(path))

    def no_decoder(*args, **kwargs):
        raise AssertionError("the whole file must not be decoded")

    monkeypatch.setattr(audio_module, "_run_decoder", no_decoder)
    started = time.perf_counter()
    with pytest.raises(AudioTooLongError) as err:
        decode(path)
    assert time.perf_counter() - started < 2.0
    assert "rehearsal.flac is 12:31 long; this server takes up to 10:00" in err.value.message
    assert err.value.hint


def test_too_long_without_a_duration_header_stops_at_the_cap(tmp_path, monkeypatch):
    # WebM written to a pipe has no duration (like a browser MediaRecorder upload).
    path = tmp_path / "live.webm"
    with open(path, "wb") as out:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=330:duration=8",
                        "-c:a", "libopus", "-f", "webm", "pipe:1"], check=True, stdout=out)
    assert probe(path).duration_s is None
    commands: list[list[str]] = []
    real_run = audio_module._run_decoder

    def spy(cmd, *args, **kwargs):
        commands.append(cmd)
        samples, stderr, rc = real_run(cmd, *args, **kwargs)
        commands.append([str(samples.shape[1])])
        return samples, stderr, rc

    monkeypatch.setattr(audio_module, "_run_decoder", spy)
    with pytest.raises(AudioTooLongError, match="live.webm is longer than 0:02"):
        decode(path, max_duration_s=2.0)
    cmd, (decoded,) = commands
    assert float(cmd[cmd.index("-t") + 1]) < 3.0
    assert int(decoded) < 3.0 * 44100  # ffmpeg stopped at the cap, not at 8 s
    # The same file within the limit decodes in full.
    assert decode(path, max_duration_s=10.0).duration_s == pytest.approx(8.0, abs=0.05)


def test_too_short_is_rejected(tmp_path):
    path = tmp_path / "blip.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.2", str(path))
    with pytest.raises(EmptyAudioError, match=r"blip\.wav is only 0\.2 s long; I need at least 0\.5 s"):
        decode(path)


def test_missing_file_is_a_caller_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        decode(tmp_path / "nope.wav")


@pytest.mark.parametrize("fmt, codec, rate", [("opus", "opus", 48000), ("flac", "flac", 44100), ("wav", "pcm_s16le", 44100)])
def test_encode_round_trip(tmp_path, fmt, codec, rate):
    t = np.arange(44100) / 44100
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    path = encode(Audio(stereo, 44100, "bass"), tmp_path / f"bass.{fmt}", fmt)
    info = probe(path)
    assert (info.codec, info.sample_rate, info.channels) == (codec, rate, 2)
    back = decode(path)
    assert back.duration_s == pytest.approx(1.0, abs=0.03)
    assert back.peak_dbfs == pytest.approx(-6.0, abs=0.5)
    assert not list(tmp_path.glob(".*partial"))


def test_encode_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown audio format 'mp3'"):
        encode(Audio(np.zeros((1, 10), np.float32), 8000), tmp_path / "x.mp3", "mp3")


def test_audio_helpers():
    t = np.arange(48000) / 48000
    left = np.sin(2 * np.pi * 100 * t)
    audio = Audio(np.stack([left, -left]).astype(np.float64) * 0.5, 48000, "x")  # float64 is converted
    assert audio.samples.dtype == np.float32
    assert audio.duration_s == 1.0
    assert audio.peak_dbfs == pytest.approx(20 * math.log10(0.5), abs=0.01)
    assert np.allclose(audio.mono().samples, 0.0)  # opposite channels cancel
    down = audio.resample(16000)
    assert down.samples.shape == (2, 16000) and down.sample_rate == 16000
    # A 100 Hz sine survives resampling with its amplitude.
    assert np.max(np.abs(down.samples[0, 1000:-1000])) == pytest.approx(0.5, abs=0.01)
    assert audio.resample(48000) is audio
    assert Audio(np.zeros((1, 5), np.float32), 8000).peak_dbfs == -math.inf
    with pytest.raises(ValueError):
        Audio(np.zeros(5, np.float32), 8000)


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (59.6, "1:00"), (751, "12:31"), (600, "10:00"), (3725, "1:02:05")])
def test_format_clock(seconds, text):
    assert format_clock(seconds) == text
