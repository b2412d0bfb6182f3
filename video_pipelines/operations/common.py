"""One MP4 format for every output (H.264 yuv420p, AAC 48 kHz stereo, bitexact: the same inputs give the
same bytes), written to a temporary name and renamed (so `out` may be an input), within a timeout; and the
operations that are one such pass over one video: reframe, and lipSync offline (`replace_audio`)."""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.operations.ffmpeg import MediaInfo, check_timeout, probe, probe_audio, run_ffmpeg
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


REFRAME_MODES = ("crop", "pad", "blur")


def _reframe_size(width: int, height: int, across: int, down: int, mode: str) -> tuple[int, int]:
    source_wider = width * down > height * across
    if mode == "crop":
        even_w, even_h = width - width % 2, height - height % 2
        if source_wider:
            return min(even_w, even(height * across / down)), even_h
        return even_w, min(even_h, even(width * down / across))
    even_w, even_h = width + width % 2, height + height % 2
    if source_wider:
        return even_w, max(even_h, 2 * math.ceil(width * down / across / 2))
    return max(even_w, 2 * math.ceil(height * across / down / 2)), even_h


def reframe_video(
    video: Path, out: Path, *, aspect_ratio: str, mode: str = "crop", timeout: float | None = None
) -> None:
    """Change `video` to `aspect_ratio`: centre-crop it, pad it with black, or centre it on a blurred copy."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise MediaError(f"reframe: aspectRatio must be one of {', '.join(ASPECT_RATIOS)}, got {aspect_ratio!r}")
    if mode not in REFRAME_MODES:
        raise MediaError(f"reframe: mode must be one of {', '.join(REFRAME_MODES)}, got {mode!r}")
    check_timeout(timeout)
    info = probe(video)
    across, down = ASPECT_RATIOS[aspect_ratio]
    width, height = _reframe_size(info.width, info.height, across, down, mode)
    if mode == "crop":
        chain = f"[0:v:0]crop={width}:{height}:(iw-{width})/2:(ih-{height})/2,setsar=1,format=yuv420p[vout]"
    elif mode == "pad":
        chain = f"[0:v:0]pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p[vout]"
    else:
        sigma = max(2.0, min(width, height) / 30)
        chain = (
            "[0:v:0]split=2[bg][fg];"
            f"[bg]scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height},"
            f"gblur=sigma={sigma:.1f},eq=brightness=-0.08[blurred];"
            "[blurred][fg]overlay=(W-w)/2:(H-h)/2,setsar=1,format=yuv420p[vout]"
        )
    filter_video(
        video,
        out,
        info=info,
        video_chain=chain,
        description=f"reframe: {mode} of {video.name} to {aspect_ratio}",
        timeout=timeout,
    )


def replace_audio(video: Path, audio: Path, out: Path, *, timeout: float | None = None) -> None:
    """Replace `video`'s audio with `audio`, cut or padded to the video's length; H.264 yuv420p video is copied."""
    check_timeout(timeout)
    info = probe(video)
    probe_audio(audio)
    samples = round(info.duration * SAMPLE_RATE)
    chain = f"[1:a:0]asetpts=PTS-STARTPTS,{STEREO_48K},apad,atrim=end_sample={samples}[aout]"
    copy_video = info.video_codec == "h264" and info.pix_fmt == "yuv420p"
    with atomic_output(out) as partial:
        run_ffmpeg(
            [
                "-i", str(video), "-i", str(audio),
                "-filter_complex", chain,
                "-map", "0:v:0", "-map", "[aout]",
                *mp4_output(partial, copy_video=copy_video),
            ],
            description=f"lipSync: putting the audio of {audio.name} on {video.name}",
            timeout=timeout,
        )  # fmt: skip
