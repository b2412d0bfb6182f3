"""merge: concatenate videos with hard cuts, crossfades or fades through black."""

from __future__ import annotations

import math
import mmap
import tempfile
import time
from collections.abc import Sequence
from enum import StrEnum
from fractions import Fraction
from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.operations.common import SAMPLE_RATE, STEREO_48K, atomic_output, mp4_output
from video_pipelines.operations.ffmpeg import MediaInfo, check_timeout, fps_expression, probe, run_ffmpeg

TRANSITIONS = ("cut", "crossfade", "fade")
_XFADE = {"crossfade": "fade", "fade": "fadeblack"}


class MergeStrategy(StrEnum):
    """How `merge_videos` built its output."""

    STREAM_COPY = "stream-copy"
    RE_ENCODE = "re-encode"


def merge_videos(
    inputs: Sequence[Path],
    out: Path,
    *,
    transition: str = "cut",
    transition_duration: float = 0.5,
    timeout: float | None = None,
) -> MergeStrategy:
    """Concatenate `inputs` with hard cuts, crossfades or fades through black, fitted to the first one's
    size, rate and 48 kHz stereo; a `cut` of identically formatted H.264 copies the video packets."""
    paths = [Path(p) for p in inputs]
    if not paths:
        raise MediaError("merge: needs at least one input video")
    if transition not in TRANSITIONS:
        raise MediaError(f"merge: transition must be one of {', '.join(TRANSITIONS)}, got {transition!r}")
    check_timeout(timeout)
    infos = [probe(p) for p in paths]

    if (transition == "cut" or len(paths) == 1) and _stream_copy_compatible(paths, infos):
        _merge_stream_copy(paths, infos, out, timeout=timeout)
        return MergeStrategy.STREAM_COPY

    if transition != "cut" and len(paths) > 1:
        _check_transition_duration(transition_duration, paths, infos)
    _merge_re_encode(paths, infos, out, transition=transition, transition_duration=transition_duration, timeout=timeout)
    return MergeStrategy.RE_ENCODE


def _check_transition_duration(transition_duration: float, paths: Sequence[Path], infos: Sequence[MediaInfo]) -> None:
    if not (
        isinstance(transition_duration, int | float) and math.isfinite(transition_duration) and transition_duration > 0
    ):
        raise MediaError(f"merge: transitionDuration must be a positive number of seconds, got {transition_duration!r}")
    for path, info in zip(paths, infos, strict=True):
        if transition_duration >= info.duration:
            raise MediaError(
                f"merge: transitionDuration {transition_duration:g} s must be shorter than every input; "
                f"{path.name} lasts {info.duration:g} s"
            )


def _avc_config(path: Path) -> bytes | None:
    """The `avcC` box (H.264 SPS/PPS) of an MP4, or None; equal boxes mean packets can be concatenated."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        at = data.find(b"avcC")
        if at < 4:
            return None
        size = int.from_bytes(data[at - 4 : at], "big")
        if not 8 < size < 1 << 16 or at - 4 + size > len(data):
            return None
        return bytes(data[at - 4 : at - 4 + size])


def _stream_copy_compatible(paths: Sequence[Path], infos: Sequence[MediaInfo]) -> bool:
    """True when every input's video is H.264 yuv420p with the same size, rate and SPS/PPS as the first."""
    key = (infos[0].width, infos[0].height, infos[0].fps)
    if not all(i.video_codec == "h264" and i.pix_fmt == "yuv420p" and (i.width, i.height, i.fps) == key for i in infos):
        return False
    configs = {_avc_config(p) for p in paths}
    return len(configs) == 1 and None not in configs


def _segment_frames(infos: Sequence[MediaInfo], rate: Fraction) -> list[int]:
    return [max(1, round(info.duration * rate)) for info in infos]


def _segment_audio(info: MediaInfo, *, input_index: int, samples: int, label: str) -> str:
    """A chain giving exactly `samples` of 48 kHz stereo: the input's audio cut or padded, or silence."""
    if info.has_audio:
        source = f"[{input_index}:a:0]asetpts=PTS-STARTPTS,{STEREO_48K},apad"
    else:
        source = f"anullsrc=r={SAMPLE_RATE}:cl=stereo"
    return f"{source},atrim=end_sample={samples},asetpts=PTS-STARTPTS[{label}]"


def _input_args(paths: Sequence[Path]) -> list[str]:
    return [arg for path in paths for arg in ("-i", str(path))]


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.001, deadline - time.monotonic())


def _merge_stream_copy(paths: Sequence[Path], infos: Sequence[MediaInfo], out: Path, *, timeout: float | None) -> None:
    """Copy the video packets through the concat demuxer and re-encode the audio once: copied AAC keeps
    each file's 1024-sample priming (~21 ms late at every join)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    rate = Fraction(fps_expression(infos[0].fps))
    frames = _segment_frames(infos, rate)
    with tempfile.TemporaryDirectory(prefix="vp-merge-") as tmp, atomic_output(out) as partial:
        listing = ["ffconcat version 1.0\n"]
        for index, path in enumerate(paths):
            video_only = Path(tmp) / f"video{index}.mp4"
            run_ffmpeg(
                ["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "mp4", str(video_only)],
                description=f"merge: reading the video stream of {path.name}",
                timeout=_remaining(deadline),
            )
            quoted = str(video_only.absolute()).replace("'", "'\\''")
            listing += [f"file '{quoted}'\n", f"duration {float(frames[index] / rate):.6f}\n"]
        concat_list = Path(tmp) / "inputs.ffconcat"
        concat_list.write_text("".join(listing), encoding="utf-8")

        chains = [
            _segment_audio(
                info, input_index=index + 1, samples=round(frames[index] / rate * SAMPLE_RATE), label=f"a{index}"
            )
            for index, info in enumerate(infos)
        ]
        labels = "".join(f"[a{i}]" for i in range(len(infos)))
        chains.append(f"{labels}concat=n={len(infos)}:v=0:a=1[aout]")
        run_ffmpeg(
            [
                "-f", "concat", "-safe", "0", "-auto_convert", "0", "-i", str(concat_list), *_input_args(paths),
                "-filter_complex", ";".join(chains),
                "-map", "0:v:0", "-map", "[aout]",
                *mp4_output(partial, copy_video=True),
            ],
            description=f"merge: joining {len(paths)} videos by stream copy",
            timeout=_remaining(deadline),
        )  # fmt: skip


def _merge_re_encode(
    paths: Sequence[Path],
    infos: Sequence[MediaInfo],
    out: Path,
    *,
    transition: str,
    transition_duration: float,
    timeout: float | None,
) -> None:
    rate_expr = fps_expression(infos[0].fps)
    rate = Fraction(rate_expr)
    frames = _segment_frames(infos, rate)
    lengths = [count / rate for count in frames]
    chains = _segment_chains(infos, rate_expr=rate_expr, frames=frames, lengths=lengths)
    if transition == "cut" or len(paths) == 1:
        pairs = "".join(f"[v{i}][a{i}]" for i in range(len(paths)))
        chains.append(f"{pairs}concat=n={len(paths)}:v=1:a=1[vout][aout]")
    else:
        chains += _transition_chains(lengths, transition=transition, transition_duration=transition_duration)
    with atomic_output(out) as partial:
        run_ffmpeg(
            [
                *_input_args(paths),
                "-filter_complex", ";".join(chains),
                "-map", "[vout]", "-map", "[aout]",
                *mp4_output(partial),
            ],
            description=f"merge: joining {len(paths)} videos with transition {transition!r}",
            timeout=timeout,
        )  # fmt: skip


def _segment_chains(
    infos: Sequence[MediaInfo], *, rate_expr: str, frames: Sequence[int], lengths: Sequence[Fraction]
) -> list[str]:
    """Chains giving each input as [v<i>] and [a<i>]: the first input's size and rate, exactly `lengths` long."""
    first = infos[0]
    width, height = first.width - first.width % 2, first.height - first.height % 2
    chains: list[str] = []
    for index, info in enumerate(infos):
        chains.append(
            f"[{index}:v:0]setpts=PTS-STARTPTS,"
            f"scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,fps={rate_expr},format=yuv420p,"
            f"tpad=stop_mode=clone:stop_duration={float(lengths[index]):.6f},trim=end_frame={frames[index]},"
            f"setpts=PTS-STARTPTS[v{index}]"
        )
        samples = round(lengths[index] * SAMPLE_RATE)
        chains.append(_segment_audio(info, input_index=index, samples=samples, label=f"a{index}"))
    return chains


def _transition_chains(lengths: Sequence[Fraction], *, transition: str, transition_duration: float) -> list[str]:
    """Chains joining segments [v<i>][a<i>] into [vout][aout], each join overlapping by `transition_duration`."""
    overlap = Fraction(transition_duration).limit_denominator(1000)
    fade_samples = round(overlap * SAMPLE_RATE)
    count = len(lengths)
    chains: list[str] = []
    video_in, audio_in = "[v0]", "[a0]"
    elapsed = Fraction(0)
    for i in range(1, count):
        elapsed += lengths[i - 1]
        offset = elapsed - i * overlap
        video_out = "[vout]" if i == count - 1 else f"[vx{i}]"
        audio_out = "[aout]" if i == count - 1 else f"[ax{i}]"
        chains.append(
            f"{video_in}[v{i}]xfade=transition={_XFADE[transition]}:duration={float(overlap):.6f}"
            f":offset={float(offset):.6f}{video_out}"
        )
        chains.append(f"{audio_in}[a{i}]acrossfade=ns={fade_samples}:c1=tri:c2=tri{audio_out}")
        video_in, audio_in = video_out, audio_out
    return chains
