"""generateVideo offline: a deterministic clip rendered from the prompt and a seed."""

from __future__ import annotations

import colorsys
import hashlib
import math
import tempfile
import textwrap
from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.operations.common import FONT_FILE, SAMPLE_RATE, STEREO_48K, atomic_output, mp4_output
from video_pipelines.operations.ffmpeg import check_timeout, escape_filter_path, run_ffmpeg
from video_pipelines.speech.srt import printable_lines

_MAX_DURATION_S = 3600.0


def _wrap_prompt(prompt: str, *, width: int, height: int, font_size: int) -> str:
    columns = max(6, int(width * 0.85 / (font_size * 0.6)))
    max_lines = max(1, int(height * 0.8 / (font_size * 1.25)))
    lines = [line for paragraph in prompt.split("\n") for line in textwrap.wrap(paragraph, columns) or [""]]
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: columns - 1].rstrip() + "\u2026"
    return "\n".join(lines)


def _check_whole(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MediaError(f"generate: {name} must be an integer from {low} to {high}, got {value!r}")


def _seed_colors(seed: int) -> str:
    """Three gradient colours from `seed` (the filter's own "random" colours ignore its seed)."""
    digest = hashlib.sha256(f"video-pipelines-colours:{seed}".encode()).digest()
    colours = []
    for index in range(3):
        hue = digest[index] / 256
        saturation = 0.55 + digest[index + 3] / 255 * 0.35
        value = 0.45 + digest[index + 6] / 255 * 0.3
        red, green, blue = (round(c * 255) for c in colorsys.hsv_to_rgb(hue, saturation, value))
        colours.append(f"c{index}=0x{red:02x}{green:02x}{blue:02x}")
    return ":".join([*colours, "nb_colors=3"])


def generate_clip(
    out: Path,
    *,
    prompt: str,
    duration: float,
    width: int,
    height: int,
    seed: int,
    fps: int = 25,
    timeout: float | None = None,
) -> None:
    """Render a clip of `duration` seconds: a moving gradient chosen by `seed`, the prompt written on
    it, and a tone whose pitch comes from `seed`. The same arguments always give the same bytes."""
    cleaned = printable_lines(prompt).strip() if isinstance(prompt, str) else ""
    if not cleaned:
        raise MediaError("generate: prompt must be a non-empty string")
    if not (isinstance(duration, int | float) and math.isfinite(duration) and 0 < duration <= _MAX_DURATION_S):
        raise MediaError(
            f"generate: duration must be a number of seconds in (0, {_MAX_DURATION_S:g}], got {duration!r}"
        )
    for name, value in (("width", width), ("height", height)):
        _check_whole(name, value, 16, 7680)
        if value % 2:
            raise MediaError(f"generate: {name} must be even for H.264 yuv420p, got {value}")
    _check_whole("fps", fps, 1, 120)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise MediaError(f"generate: seed must be an integer, got {seed!r}")
    check_timeout(timeout)

    frames = max(1, round(duration * fps))
    samples = frames * SAMPLE_RATE // fps
    seed32 = seed % 2**32
    # Two octaves of semitones from A3: audible, distinct per seed, never near the 1 kHz test tone.
    frequency = round(220 * 2 ** ((seed32 % 24) / 12), 2)
    gradient_type = ("linear", "radial", "circular")[seed32 % 3]
    font_size = max(10, round(min(width, height) / 10))
    text = _wrap_prompt(cleaned, width=width, height=height, font_size=font_size)

    with tempfile.TemporaryDirectory(prefix="vp-generate-") as tmp, atomic_output(out) as partial:
        textfile = Path(tmp) / "prompt.txt"
        textfile.write_text(text, encoding="utf-8")
        video = (
            f"gradients=s={width}x{height}:r={fps}:seed={seed32}:{_seed_colors(seed32)}"
            f":type={gradient_type}:speed=0.03,"
            f"drawtext=fontfile={escape_filter_path(FONT_FILE)}:textfile={escape_filter_path(textfile)}"
            f":expansion=none:fontsize={font_size}:fontcolor=white:borderw={max(1, font_size // 10)}"
            ":bordercolor=black:text_align=C:x=(w-text_w)/2:y=(h-text_h)/2,"
            f"format=yuv420p,trim=end_frame={frames}[v]"
        )
        audio = f"sine=frequency={frequency}:sample_rate={SAMPLE_RATE},{STEREO_48K},atrim=end_sample={samples}[a]"
        run_ffmpeg(
            [
                "-filter_complex", f"{video};{audio}",
                "-map", "[v]", "-map", "[a]",
                *mp4_output(partial),
            ],
            description=f"generate: rendering the {duration:g} s clip for seed {seed}",
            timeout=timeout,
        )  # fmt: skip
