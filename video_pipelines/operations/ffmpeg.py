"""Run FFmpeg safely and read what `ffmpeg -i` prints about a file (imageio-ffmpeg ships no ffprobe)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg

from video_pipelines.errors import FFmpegError, MediaError

STDERR_TAIL_LINES = 15
_PROBE_TIMEOUT_S = 60.0
_THUMBNAIL_TIMEOUT_S = 60.0
_WAIT_SLICE = 0.2  # seconds per waitpid() slice; see _wait_interruptibly
_PR_SET_PDEATHSIG = 1


@functools.cache
def ffmpeg_exe() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


@functools.cache
def _prctl() -> Callable[..., int] | None:
    # Loaded in the parent: the child between fork and exec must not import or dlopen anything.
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


# Signals that interrupt a step (Dagster's SIGINT, and SIGTERM it treats alike) and the test's SIGALRM: held back
# while FFmpeg is spawned, so that none can raise between the child's creation and our handle on it.
_INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGALRM})


@contextlib.contextmanager
def _signals_deferred() -> Iterator[frozenset[signal.Signals]]:
    """Block the interrupts in this thread (only the main thread runs Python's handlers); yields those blocked
    here, which `_deliver` unblocks (a pending one is handled then), as leaving does in any case."""
    if threading.current_thread() is not threading.main_thread():
        yield frozenset()
        return
    blocked = _INTERRUPTS - signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        yield blocked
    finally:
        _deliver(blocked)


def _deliver(deferred: frozenset[signal.Signals]) -> None:
    if deferred:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, deferred)


def _die_with_parent(parent_pid: int, prctl: Callable[..., int] | None, deferred: frozenset[signal.Signals]) -> None:
    """Run in the child before exec. Best effort: if we die (even by SIGKILL) the kernel kills FFmpeg too.
    FFmpeg gets the signal mask its parent had before the spawn."""
    _deliver(deferred)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def _stderr_tail(raw: bytes, lines: int = STDERR_TAIL_LINES) -> str:
    text = raw.decode("utf-8", errors="replace")
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise MediaError(f"timeout must be a positive number of seconds, got {timeout}")


def run_ffmpeg(args: Sequence[str], *, description: str, timeout: float | None = None) -> None:
    """Run `ffmpeg <args>`, or raise `FFmpegError` naming `description`. FFmpeg never outlives the call
    (own session killed on a timeout or any exception, PR_SET_PDEATHSIG); stderr goes to a file, never
    a pipe a chatty FFmpeg could block on."""
    check_timeout(timeout)
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y", *args]
    with tempfile.TemporaryFile() as stderr_file, _signals_deferred() as deferred:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            start_new_session=True,
            preexec_fn=functools.partial(_die_with_parent, os.getpid(), _prctl(), deferred),
        )
        try:
            _deliver(deferred)  # an interrupt that came during the spawn is raised here, where FFmpeg is killed
            returncode = _wait_interruptibly(proc, timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            stderr_file.seek(0)
            raise FFmpegError(
                f"{description}: FFmpeg did not finish within {timeout:g} s and was killed",
                returncode=proc.returncode,
                stderr_tail=_stderr_tail(stderr_file.read()),
            ) from exc
        except BaseException:
            _kill_group(proc)
            raise
        if returncode != 0:
            stderr_file.seek(0)
            tail = _stderr_tail(stderr_file.read())
            raise FFmpegError(
                f"{description}: FFmpeg exited with code {returncode}", returncode=returncode, stderr_tail=tail
            )


def extract_speech_track(media: Path, out: Path, encoding: Sequence[str], *, timeout: float | None) -> Path:
    """`media`'s first audio track, mono, encoded by `encoding` into `out`; MediaError when it has none."""
    try:
        run_ffmpeg(
            ["-i", str(media), "-map", "0:a:0", "-vn", "-ac", "1", *encoding, str(out)],
            description=f"extracting the speech of {media.name}",
            timeout=timeout,
        )
    except MediaError as exc:
        if "matches no streams" in str(exc):
            raise MediaError(f"{media.name} has no audio track: there is no speech to transcribe") from None
        raise
    return out


def _wait_interruptibly(proc: subprocess.Popen[bytes], timeout: float | None) -> int:
    """`proc.wait(timeout)` in short slices: a signal (Dagster's SIGINT) delivered to another
    thread would otherwise wait for FFmpeg to exit before its handler runs."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout or 0.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.wait(timeout=_WAIT_SLICE if remaining is None else min(_WAIT_SLICE, remaining))


def escape_filter_value(value: str) -> str:
    """Escape `value` as one filter option value: FFmpeg unescapes twice (graph: ``\\ ' [ ] , ;``, then
    options: ``\\ ' :``) and trims surrounding whitespace, which is therefore refused."""
    if value != value.strip():
        raise MediaError(f"a filter option value cannot start or end with whitespace: {value!r}")
    option_level = re.sub(r"([\\':])", r"\\\1", value)
    return re.sub(r"([\\'\[\],;])", r"\\\1", option_level)


def escape_filter_path(path: Path) -> str:
    """Escape a file path (made absolute) for a filter option such as `filename=` or `fontfile=`."""
    return escape_filter_value(str(path.absolute()))


def fps_expression(fps: float) -> str:
    """The exact frame rate FFmpeg should use for a rate `probe` printed rounded (29.97 -> 30000/1001)."""
    for numerator in (24000, 30000, 48000, 60000, 120000):
        if abs(fps - numerator / 1001) < 0.006:
            return f"{numerator}/1001"
    if abs(fps - round(fps)) < 0.006:
        return str(round(fps))
    fraction = Fraction(fps).limit_denominator(1001)
    return f"{fraction.numerator}/{fraction.denominator}"


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` found in a media file: the first video stream and the first audio stream."""

    duration: float
    width: int
    height: int
    fps: float
    video_codec: str | None
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    pix_fmt: str | None
    size_bytes: int
    # The first subtitle track's language (ISO 639-2, "und" when untagged); None: no subtitle track.
    subtitle_language: str | None = None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


_DURATION_RE = re.compile(r"^\s*Duration:\s*(?:(\d+):(\d{2}):(\d{2}(?:\.\d+)?)|N/A)", re.MULTILINE)
_STREAM_RE = re.compile(r"^\s*Stream #\d+:\d+\S*: (Video|Audio): (.*)$", re.MULTILINE)
_SUBTITLE_RE = re.compile(r"^\s*Stream #\d+:\d+(?:\[\w+\])?(?:\((\w+)\))?: Subtitle: ", re.MULTILINE)
_SIZE_RE = re.compile(r"^(\d+)x(\d+)(?:\s|$)")
_RATE_RE = re.compile(r"^([\d.]+)(k?) (fps|tbr)$")
# Named layouts; "5.1" and the like are read as 5 + 1.
_CHANNEL_LAYOUTS = {"mono": 1, "stereo": 2, "quad": 4}
# A comma followed by a closing bracket before any opening one of the same kind is inside that bracket.
_TOP_LEVEL_COMMA = re.compile(r",(?![^()]*\))(?![^\[\]]*\])")


def _top_level_fields(description: str) -> list[str]:
    """The comma-separated fields of a stream line; a comma inside (...) or [...] does not separate."""
    return [field.strip() for field in _TOP_LEVEL_COMMA.split(description)]


def _channel_count(layout: str) -> int | None:
    base = layout.split("(")[0].strip()
    if base in _CHANNEL_LAYOUTS:
        return _CHANNEL_LAYOUTS[base]
    match = re.match(r"^(\d+)(?: channels|\.(\d+)$)", base)
    return int(match.group(1)) + int(match.group(2) or 0) if match else None


@dataclass(frozen=True)
class _VideoStream:
    codec: str
    pix_fmt: str | None
    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class _AudioStream:
    codec: str
    sample_rate: int | None
    channels: int | None


def _parse_video_stream(description: str) -> _VideoStream | None:
    fields = _top_level_fields(description)
    codec = fields[0].split()[0] if fields[0] else "unknown"
    pix_fmt: str | None = None
    width = height = 0
    rates: dict[str, float] = {}  # "fps" and "tbr"
    for index, field in enumerate(fields[1:], start=1):
        size = _SIZE_RE.match(field)
        if size and not width:
            width, height = int(size.group(1)), int(size.group(2))
            continue
        rate = _RATE_RE.match(field)
        if rate:
            rates[rate.group(3)] = float(rate.group(1)) * (1000 if rate.group(2) else 1)
            continue
        if index == 1 and not width:
            pix_fmt = field.split("(")[0].strip() or None
    if not width or not height:
        return None
    return _VideoStream(
        codec=codec, pix_fmt=pix_fmt, width=width, height=height, fps=rates.get("fps") or rates.get("tbr", 0.0)
    )


def _parse_audio_stream(description: str) -> _AudioStream:
    fields = _top_level_fields(description)
    codec = fields[0].split()[0] if fields[0] else "unknown"
    sample_rate: int | None = None
    channels: int | None = None
    for field in fields[1:]:
        hz = re.match(r"^(\d+) Hz$", field)
        if hz:
            sample_rate = int(hz.group(1))
        elif channels is None and sample_rate is not None:
            channels = _channel_count(field)
    return _AudioStream(codec=codec, sample_rate=sample_rate, channels=channels)


def _probe_streams(path: Path) -> tuple[float | None, _VideoStream | None, _AudioStream | None, str | None]:
    """The duration, first video stream, first audio stream and first subtitle track's language of `path`."""
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    try:
        completed = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{path}: FFmpeg could not read the file within {_PROBE_TIMEOUT_S:g} s") from exc
    stderr = completed.stderr.decode("utf-8", errors="replace")
    if "Input #0" not in stderr:
        lines = _stderr_tail(completed.stderr, 3).splitlines() or ["FFmpeg printed nothing"]
        raise MediaError(f"{path}: not a media file FFmpeg can read ({lines[-1]})")
    # With several inputs, only the first "Input #0" block matters; ffmpeg -i prints one.
    duration: float | None = None
    match = _DURATION_RE.search(stderr)
    if match and match.group(1) is not None:
        duration = int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))
    video: _VideoStream | None = None
    audio: _AudioStream | None = None
    for stream in _STREAM_RE.finditer(stderr):
        kind, description = stream.group(1), stream.group(2)
        if kind == "Video" and video is None and "(attached pic)" not in description:
            video = _parse_video_stream(description)
        elif kind == "Audio" and audio is None:
            audio = _parse_audio_stream(description)
    subtitle = _SUBTITLE_RE.search(stderr)
    return duration, video, audio, (subtitle.group(1) or "und") if subtitle else None


def probe(path: Path) -> MediaInfo:
    """Describe the video file at `path`; raise `MediaError` naming it if it is not a playable video."""
    duration, video, audio, subtitle_language = _probe_streams(path)
    if video is None:
        raise MediaError(f"{path}: has no video stream")
    if duration is None or duration <= 0:
        raise MediaError(f"{path}: has no duration (a still image or a broken file?)")
    if video.fps <= 0:
        raise MediaError(f"{path}: the video stream has no frame rate")
    return MediaInfo(
        duration=duration,
        width=video.width,
        height=video.height,
        fps=video.fps,
        video_codec=video.codec,
        audio_codec=audio.codec if audio else None,
        sample_rate=audio.sample_rate if audio else None,
        channels=audio.channels if audio else None,
        pix_fmt=video.pix_fmt,
        size_bytes=path.stat().st_size,
        subtitle_language=subtitle_language,
    )


def probe_audio(path: Path) -> float:
    """The duration of a media file (audio or video) that has an audio stream; `MediaError` if it has none."""
    duration, _video, audio, _language = _probe_streams(path)
    if audio is None:
        raise MediaError(f"{path}: has no audio stream")
    return duration or 0.0


def make_thumbnail(video: Path, out: Path, *, width: int = 320) -> Path:
    """Write a JPEG of `video`'s middle frame, `width` pixels wide, to `out`."""
    if width < 2:
        raise MediaError(f"thumbnail width must be at least 2 pixels, got {width}")
    middle = probe(video).duration / 2
    run_ffmpeg(
        [
            # -ss before -i seeks the input: FFmpeg decodes from the nearest keyframe, not the start.
            *("-ss", f"{middle:.3f}", "-i", str(video)),
            # -2: an even height, which the MJPEG encoder's yuvj420p needs.
            *("-frames:v", "1", "-vf", f"scale={width}:-2", "-q:v", "4"),
            *("-f", "image2", "-c:v", "mjpeg", str(out)),
        ],
        description=f"thumbnail of {video}",
        timeout=_THUMBNAIL_TIMEOUT_S,
    )
    return out
