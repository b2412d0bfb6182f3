"""Helpers that measure real media with the real FFmpeg binary."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

from video_pipelines.operations import ffmpeg_exe, run_ffmpeg


def ffmpeg(*args: str) -> None:
    run_ffmpeg(list(args), description="test fixture")


def ffmpeg_stdout(*args: str) -> bytes:
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def frame_rgb(path: Path, at: float) -> bytes:
    return ffmpeg_stdout("-ss", f"{at}", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")


def pcm_mono(path: Path) -> list[int]:
    raw = ffmpeg_stdout("-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "s16le", "-")
    return [int.from_bytes(raw[i : i + 2], "little", signed=True) for i in range(0, len(raw) - 1, 2)]


def dominant_frequency(samples: list[int], rate: int = 48000) -> float:
    """Frequency of a pure tone from its zero crossings."""
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / rate)


def make_tone(path: Path, frequency: int, duration: float) -> Path:
    """An MP3 holding a pure tone, as a stand-in for a voice track."""
    ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={duration}:sample_rate=48000",
        "-c:a", "libmp3lame", str(path),
    )  # fmt: skip
    return path


def local_path_of(url: str) -> Path:
    """The file behind a `file://` result URL."""
    assert url.startswith("file://"), url
    return Path(url.removeprefix("file://"))
