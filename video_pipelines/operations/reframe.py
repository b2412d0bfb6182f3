"""reframe: change a video's aspect ratio by cropping, padding, or centring it on a blurred copy."""

from __future__ import annotations

import math
from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.operations.common import even, filter_video
from video_pipelines.operations.ffmpeg import check_timeout, probe
from video_pipelines.vocabulary import ASPECT_RATIOS

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
