"""Reading and writing audio files with ffmpeg: what a chat user sends becomes float32 samples.

Exports: AudioInfo, Audio, probe, check_limits, decode, encode, format_clock, ENCODE_FORMATS.

Every input goes through ffprobe first (cheap: a few milliseconds, nothing decoded),
so size and duration limits are enforced before any real work. Decoding then streams
ffmpeg's float32 output through a pipe, capped with ``-t`` so that a file whose
header lies about its length (or has none, like a browser-recorded WebM) still
cannot make us decode more than the limit.

ffmpeg and ffprobe only ever open the given local file (``-protocol_whitelist file``)
with one of the container formats a chat user plausibly sends (``-format_whitelist``):
this keeps playlist formats (HLS, concat, ...) that would make ffmpeg read other
files or URLs out of reach.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import defaults
from .plan import format_clock, format_size
from .errors import (
    AudioTooLargeError,
    AudioTooLongError,
    DecodeError,
    EmptyAudioError,
    SilentAudioError,
    UnsupportedFormatError,
)

#: Demuxers we let ffmpeg use. "mov" covers mp4/m4a/mov/3gp, "matroska" covers mkv/webm,
#: "ogg" covers Opus voice notes and Vorbis.
_FORMAT_WHITELIST = "ogg,mp3,mov,aac,wav,w64,flac,matroska,aiff,caf,asf,avi,amr,wv,mpegts,mpeg,flv"
_INPUT_GUARDS = ["-protocol_whitelist", "file", "-format_whitelist", _FORMAT_WHITELIST]
#: Leading bytes of containers that are audio (or video with sound). When ffprobe
#: cannot read a file that starts like this, it is a damaged recording, not a wrong file.
_AUDIO_MAGIC = (b"OggS", b"RIFF", b"fLaC", b"ID3", b"\x1a\x45\xdf\xa3", b"FORM", b"caff", b"wvpk", b"#!AMR")
_FORMAT_NAMES = "voice notes (OGG/Opus), MP3, M4A/AAC, WAV, FLAC, WebM, or a video with sound (MP4, MOV, MKV)"
#: Decoding may end a little short of the header's duration (encoder padding, rounding).
_SHORTFALL_TOLERANCE_S = 0.5
#: Output formats of encode(): ffmpeg codec arguments and container.
ENCODE_FORMATS: dict[str, list[str]] = {
    "opus": ["-c:a", "libopus", "-b:a", "96k", "-ar", "48000", "-f", "ogg"],
    "flac": ["-c:a", "flac", "-f", "flac"],
    "wav": ["-c:a", "pcm_s16le", "-f", "wav"],
}
_READ_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says about a file, without decoding it.

    ``duration_s`` is None when the container does not say (live-recorded WebM);
    the other audio fields are None/0 when there is no audio stream (``has_audio``).
    """

    path: Path
    duration_s: float | None
    channels: int
    sample_rate: int
    codec: str | None
    format_name: str
    size_bytes: int
    has_audio: bool
    title: str | None = None
    composer: str | None = None


@dataclass(frozen=True)
class Audio:
    """Decoded audio: float32 samples of shape (channels, n) in -1..1 at ``sample_rate`` Hz.

    ``title`` and ``composer`` are the file's own tags (ID3, Vorbis comments, MP4 atoms), if any.
    """

    samples: np.ndarray
    sample_rate: int
    name: str = ""
    title: str | None = None
    composer: str | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim != 2:
            raise ValueError(f"samples must be (channels, n), got shape {self.samples.shape}")
        if self.samples.dtype != np.float32:
            object.__setattr__(self, "samples", self.samples.astype(np.float32))
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.samples.shape[1] / self.sample_rate

    @property
    def peak_dbfs(self) -> float:
        """Highest absolute sample in dB relative to full scale (-inf for digital silence)."""
        if self.samples.size == 0:
            return -math.inf
        peak = float(np.max(np.abs(self.samples)))
        return 20.0 * math.log10(peak) if peak > 0 else -math.inf

    def mono(self) -> "Audio":
        """The channel average as a one-channel Audio (self when already mono)."""
        if self.channels == 1:
            return self
        return replace(self, samples=self.samples.mean(axis=0, keepdims=True, dtype=np.float32))

    def resample(self, sample_rate: int) -> "Audio":
        """This audio at another sample rate (soxr high quality; self when the rate matches).

        Args:
            sample_rate: target rate in Hz.

        Returns:
            A new Audio of about ``duration_s * sample_rate`` samples per channel.
        """
        if sample_rate == self.sample_rate:
            return self
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        try:
            import soxr

            # soxr wants (n, channels); contiguous copies keep it from striding slowly.
            out = soxr.resample(np.ascontiguousarray(self.samples.T), self.sample_rate, sample_rate, quality="HQ")
            out = np.ascontiguousarray(out.T, dtype=np.float32)
        except ImportError:
            from scipy.signal import resample_poly

            g = math.gcd(self.sample_rate, sample_rate)
            out = resample_poly(self.samples, sample_rate // g, self.sample_rate // g, axis=1).astype(np.float32)
        return replace(self, samples=out, sample_rate=sample_rate)


def _short_report(stderr: str, *, max_chars: int = 240) -> str:
    """The last distinct lines ffmpeg printed, trimmed for a chat message."""
    lines: list[str] = []
    for line in stderr.splitlines():
        line = line.strip()
        # ffmpeg prefixes lines with "[codec @ 0x55...]"; the address is noise.
        if line.startswith("[") and "@ 0x" in line and "]" in line:
            line = line[line.index("]") + 1 :].strip()
        if line and line not in lines:
            lines.append(line)
    text = "; ".join(lines[-3:])
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _looks_like_audio(path: Path) -> bool:
    """Whether the first bytes are those of an audio/video container (MP4 has 'ftyp' at 4)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp":
        return True
    # MPEG audio without an ID3 tag starts with a frame sync; ADTS AAC likewise.
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None


def probe(path: str | os.PathLike, *, timeout_s: float = defaults.FFMPEG_PROBE_TIMEOUT_S) -> AudioInfo:
    """Read a file's container header with ffprobe (no decoding; milliseconds).

    Args:
        path: the file.
        timeout_s: wall-clock limit for ffprobe.

    Returns:
        AudioInfo; ``has_audio`` is False for a video without a sound track.

    Raises:
        FileNotFoundError: the path does not exist (a caller bug, not a user error).
        EmptyAudioError: the file is 0 bytes.
        UnsupportedFormatError: not audio or video at all (a PDF, an image, text).
        DecodeError: it starts like audio but ffprobe cannot read it (truncated header).
    """
    path = Path(path)
    size = _file_size(path)
    if size == 0:
        raise EmptyAudioError(f"{path.name} is empty (0 bytes).", hint="Send the recording again; the upload may have failed.")
    cmd = ["ffprobe", "-v", "error", *_INPUT_GUARDS, "-show_entries",
           "format=format_name,duration:format_tags:stream=codec_type,codec_name,channels,sample_rate,duration"
           ":stream_tags",
           "-of", "json", "--", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"{path.name} could not be read: the file header took too long to parse.",
                          hint="Try exporting it again as MP3, WAV or FLAC.") from None
    info = json.loads(proc.stdout or "{}") if proc.returncode == 0 else {}
    fmt = info.get("format")
    if not fmt:
        if _looks_like_audio(path):
            raise DecodeError(f"{path.name} looks like audio but cannot be read ({_short_report(proc.stderr) or 'unreadable header'}).",
                              hint="The file may be cut off or damaged; send it again or export it anew.")
        raise UnsupportedFormatError(f"{path.name} is not an audio file I can read.", hint=f"Send {_FORMAT_NAMES}.")
    audio_streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    stream = audio_streams[0] if audio_streams else {}
    return AudioInfo(
        path=path,
        duration_s=_positive_float(fmt.get("duration")) or _positive_float(stream.get("duration")),
        channels=int(stream.get("channels") or 0),
        sample_rate=int(stream.get("sample_rate") or 0),
        codec=stream.get("codec_name"),
        format_name=str(fmt.get("format_name", "")),
        size_bytes=size,
        has_audio=bool(audio_streams),
        title=_tag(fmt, stream, "title"),
        composer=_tag(fmt, stream, "composer"),
    )


#: Longest tag text taken over (a score title or composer line).
MAX_TAG_CHARS = 120


def _tag(fmt: dict, stream: dict, name: str) -> str | None:
    """A container or stream tag (any letter case), as one clean line of text, or None."""
    for tags in (fmt.get("tags") or {}, stream.get("tags") or {}):
        for key, value in tags.items():
            if key.lower() == name and isinstance(value, str):
                text = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
                if text:
                    return text[:MAX_TAG_CHARS].rstrip()
    return None


def _positive_float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _too_long(name: str, duration_s: float, max_duration_s: float, *, at_least: bool = False) -> AudioTooLongError:
    length = f"is longer than {format_clock(max_duration_s)}" if at_least else f"is {format_clock(duration_s)} long"
    return AudioTooLongError(f"{name} {length}; this server takes up to {format_clock(max_duration_s)} per recording.",
                             hint="Trim it or send a shorter section.")


def _too_large(name: str, size_bytes: int, max_bytes: int) -> AudioTooLargeError:
    return AudioTooLargeError(f"{name} is {format_size(size_bytes)}; this server takes files up to {format_size(max_bytes)}.",
                              hint="Send a compressed version (MP3, OGG or M4A) or a shorter section.")


def _too_short(name: str, duration_s: float, min_duration_s: float) -> EmptyAudioError:
    return EmptyAudioError(f"{name} is only {duration_s:.1f} s long; I need at least {min_duration_s:g} s of music.",
                           hint="Send a longer recording.")


def check_limits(info: AudioInfo, *, max_duration_s: float = defaults.MAX_DURATION_S,
                 max_bytes: int = defaults.MAX_INPUT_BYTES, min_duration_s: float = defaults.MIN_DURATION_S) -> None:
    """Apply the cheap checks to a probed file: size, sound track, duration.

    Args:
        info: what probe() returned.
        max_duration_s: longest accepted recording.
        max_bytes: largest accepted file.
        min_duration_s: shortest accepted recording.

    Raises:
        AudioTooLargeError, UnsupportedFormatError (no sound track), AudioTooLongError,
        EmptyAudioError (shorter than min_duration_s). A missing duration passes; decode() caps it.
    """
    name = info.path.name
    if info.size_bytes > max_bytes:
        raise _too_large(name, info.size_bytes, max_bytes)
    if not info.has_audio:
        raise UnsupportedFormatError(f"{name} has no sound track.", hint=f"Send {_FORMAT_NAMES}.")
    if info.duration_s is not None:
        if info.duration_s > max_duration_s + defaults.DURATION_GRACE_S:
            raise _too_long(name, info.duration_s, max_duration_s)
        if info.duration_s < min_duration_s:
            raise _too_short(name, info.duration_s, min_duration_s)


def decode(path: str | os.PathLike, *, sample_rate: int = 44100, mono: bool = False,
           max_duration_s: float = defaults.MAX_DURATION_S, max_bytes: int = defaults.MAX_INPUT_BYTES,
           min_duration_s: float = defaults.MIN_DURATION_S, silence_peak_dbfs: float = defaults.SILENCE_PEAK_DBFS,
           timeout_s: float = defaults.FFMPEG_DECODE_TIMEOUT_S) -> Audio:
    """Decode an audio file (or the sound of a video) to float32 samples.

    Limits are checked in cost order: file size (stat), then the probed duration,
    and ffmpeg's output is capped just past ``max_duration_s`` in case the header lies.

    Args:
        path: the file as received from the user.
        sample_rate: output rate in Hz (ffmpeg resamples).
        mono: mix down to one channel; otherwise 1 or 2 channels (surround is folded to stereo).
        max_duration_s: longest accepted recording.
        max_bytes: largest accepted file.
        min_duration_s: shortest accepted recording.
        silence_peak_dbfs: a peak below this counts as silence.
        timeout_s: wall-clock limit for ffmpeg.

    Returns:
        Audio with ``name`` set to the file name without its extension.

    Raises:
        FileNotFoundError: the path does not exist (caller bug).
        AudioTooLargeError, UnsupportedFormatError, DecodeError, EmptyAudioError,
        AudioTooLongError, SilentAudioError: see core.errors; messages name the file and the limit.
    """
    path = Path(path)
    size = _file_size(path)
    if size > max_bytes:
        raise _too_large(path.name, size, max_bytes)
    info = probe(path)
    check_limits(info, max_duration_s=max_duration_s, max_bytes=max_bytes, min_duration_s=min_duration_s)
    channels = 1 if mono else min(max(info.channels, 1), 2)
    cap_s = max_duration_s + defaults.DURATION_GRACE_S + 0.01
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *_INPUT_GUARDS, "-i", str(path),
           "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", str(channels), "-ar", str(sample_rate),
           "-t", f"{cap_s:.3f}", "-f", "f32le", "-c:a", "pcm_f32le", "pipe:1"]
    samples, stderr, returncode = _run_decoder(cmd, channels, info, sample_rate, cap_s, timeout_s, path.name)
    name = path.name
    if returncode != 0:
        raise DecodeError(f"{name} could not be decoded ({_short_report(stderr) or f'ffmpeg exit {returncode}'}).",
                          hint="The file may be damaged; send it again or export it as MP3, WAV or FLAC.")
    audio = Audio(samples, sample_rate, path.stem, title=info.title, composer=info.composer)
    if audio.samples.shape[1] == 0:
        raise EmptyAudioError(f"{name} contains no audio samples.", hint="Send the recording again; it may be empty or cut off.")
    expected_s = min(info.duration_s, cap_s) if info.duration_s else None
    if expected_s and audio.duration_s < 0.9 * expected_s - _SHORTFALL_TOLERANCE_S:
        said = f" ffmpeg reported: {_short_report(stderr)}." if stderr.strip() else ""
        raise DecodeError(f"{name} seems cut off: it should be {format_clock(expected_s)} long, "
                          f"but only {audio.duration_s:.1f} s could be read.{said}",
                          hint="Send the complete file again.")
    if audio.duration_s > max_duration_s + defaults.DURATION_GRACE_S:
        raise _too_long(name, audio.duration_s, max_duration_s, at_least=True)
    if audio.duration_s < min_duration_s:
        raise _too_short(name, audio.duration_s, min_duration_s)
    if audio.peak_dbfs < silence_peak_dbfs:
        level = "digital silence" if audio.peak_dbfs == -math.inf else f"{audio.peak_dbfs:.0f} dBFS at its loudest"
        raise SilentAudioError(f"{name} is silent ({level}; I need sound above {silence_peak_dbfs:g} dBFS).",
                               hint="Check that the microphone was on and that the right file was sent.")
    return audio


def _run_decoder(cmd: list[str], channels: int, info: AudioInfo, sample_rate: int, cap_s: float,
                 timeout_s: float, name: str) -> tuple[np.ndarray, str, int]:
    """Run ffmpeg, reading its float32 pipe into one preallocated buffer.

    Returns (samples (channels, n), stderr text, return code). Raises DecodeError on timeout.
    """
    frame_bytes = 4 * channels
    expected_s = min(info.duration_s or 60.0, cap_s)
    buffer = bytearray(int(expected_s * sample_rate + sample_rate) * frame_bytes)
    filled = 0
    with tempfile.TemporaryFile() as errfile:
        # stderr goes to a file: a corrupt input can print a lot, and a full stderr pipe
        # would stall ffmpeg while we block on stdout.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, stdin=subprocess.DEVNULL)
        try:
            view = memoryview(buffer)
            while True:
                if filled == len(buffer):
                    buffer.extend(bytes(len(buffer)))
                    view = memoryview(buffer)
                got = proc.stdout.readinto(view[filled : filled + _READ_CHUNK_BYTES])  # type: ignore[union-attr]
                if not got:
                    break
                filled += got
            view.release()
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise DecodeError(f"{name} took too long to decode.", hint="Send it as MP3, WAV or FLAC.") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        errfile.seek(0)
        stderr = errfile.read(64 * 1024).decode("utf-8", "replace")
    usable = filled - filled % frame_bytes
    samples = np.frombuffer(buffer, dtype=np.float32, count=usable // 4).reshape(-1, channels).T
    return np.ascontiguousarray(samples), stderr, proc.returncode


def encode(audio: Audio, path: str | os.PathLike, fmt: str, *, timeout_s: float = defaults.FFMPEG_DECODE_TIMEOUT_S) -> Path:
    """Write audio to a file that plays in Discord and Telegram.

    Args:
        audio: what to write (clipped to -1..1 by the encoder).
        path: destination; written to a temporary name first, then renamed.
        fmt: "opus" (OGG/Opus, 96 kbit/s, 48 kHz), "flac", or "wav" (16-bit PCM).
        timeout_s: wall-clock limit for ffmpeg.

    Returns:
        The path written.

    Raises:
        ValueError: unknown fmt or empty audio (caller bugs).
        RuntimeError: ffmpeg failed (a bug or a full disk); the message quotes ffmpeg.
    """
    if fmt not in ENCODE_FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; use one of {', '.join(ENCODE_FORMATS)}")
    if audio.samples.shape[1] == 0:
        raise ValueError("cannot encode empty audio")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", "-f", "f32le", "-ar", str(audio.sample_rate),
           "-ac", str(audio.channels), "-i", "pipe:0", *ENCODE_FORMATS[fmt], str(tmp)]
    interleaved = np.ascontiguousarray(audio.samples.T, dtype="<f4")
    try:
        proc = subprocess.run(cmd, input=memoryview(interleaved).cast("B"), capture_output=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not write {path.name}: {_short_report(proc.stderr.decode('utf-8', 'replace'))}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
