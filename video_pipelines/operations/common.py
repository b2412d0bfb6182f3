"""One MP4 format for every output (H.264 yuv420p, AAC 48 kHz stereo, bitexact: the same inputs give the
same bytes), written to a temporary name and renamed (so `out` may be an input), within a timeout."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.operations.ffmpeg import MediaInfo, run_ffmpeg
from video_pipelines.vocabulary import ASPECT_RATIOS

FONT_FILE = Path(__file__).parent / "fonts" / "DejaVuSans.ttf"
SAMPLE_RATE = 48_000

_ENCODE_VIDEO = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
_ENCODE_AUDIO = ["-c:a", "aac", "-b:a", "128k", "-ar", str(SAMPLE_RATE), "-ac", "2"]
_DETERMINISTIC_MP4 = [
    "-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
    "-flags:a", "+bitexact", "-movflags", "+faststart", "-f", "mp4",
]  # fmt: skip
STEREO_48K = f"aresample={SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"


def mp4_output(partial: Path, *, copy_video: bool = False) -> list[str]:
    """FFmpeg output args writing `partial` in the shared format; `copy_video` keeps the input's video packets."""
    video = ["-c:v", "copy"] if copy_video else _ENCODE_VIDEO
    return [*video, *_ENCODE_AUDIO, *_DETERMINISTIC_MP4, str(partial)]


def even(value: float) -> int:
    """`value` rounded to the nearest even number of pixels, at least 2 (H.264 yuv420p needs even sides)."""
    return max(2, 2 * round(value / 2))


def dimensions_for(aspect_ratio: str, short_side: int) -> tuple[int, int]:
    """(width, height) of a frame with `aspect_ratio` whose smaller side is `short_side`; both even."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise MediaError(f"unknown aspect ratio {aspect_ratio!r}; expected one of {', '.join(ASPECT_RATIOS)}")
    if short_side < 2 or short_side % 2:
        raise MediaError(f"short_side must be an even number of pixels >= 2, got {short_side}")
    across, down = ASPECT_RATIOS[aspect_ratio]
    if across >= down:
        return even(short_side * across / down), short_side
    return short_side, even(short_side * down / across)


@contextlib.contextmanager
def atomic_output(out: Path) -> Iterator[Path]:
    """A temporary path next to `out` to write to; it replaces `out` only if the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:12]}.partial.mp4")
    try:
        yield partial
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


def _audio_for(info: MediaInfo, *, input_index: int) -> tuple[list[str], list[str]]:
    """Filters and output args for AAC 48 kHz stereo: copied when already so, else re-encoded; silence if none."""
    if info.has_audio and (info.audio_codec, info.sample_rate, info.channels) == ("aac", SAMPLE_RATE, 2):
        return [], ["-map", f"{input_index}:a:0", "-c:a", "copy"]
    if info.has_audio:
        return [], ["-map", f"{input_index}:a:0", *_ENCODE_AUDIO]
    samples = round(info.duration * SAMPLE_RATE)
    chain = f"anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=end_sample={samples}[aout]"
    return [chain], ["-map", "[aout]", *_ENCODE_AUDIO]


def filter_video(
    video: Path, out: Path, *, info: MediaInfo, video_chain: str, description: str, timeout: float | None
) -> None:
    """Run `video_chain` ([0:v:0] ... [vout]) on `video`, keeping its audio (or adding silence)."""
    audio_chains, audio_args = _audio_for(info, input_index=0)
    with atomic_output(out) as partial:
        run_ffmpeg(
            [
                "-i", str(video),
                "-filter_complex", ";".join([video_chain, *audio_chains]),
                "-map", "[vout]", *audio_args,
                *_ENCODE_VIDEO, *_DETERMINISTIC_MP4,
                str(partial),
            ],
            description=description,
            timeout=timeout,
        )  # fmt: skip
