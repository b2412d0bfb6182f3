"""The video operations of a plan, each writing one H.264 + AAC MP4 with FFmpeg.

Every output is H.264 (yuv420p) with AAC at 48 kHz stereo, `+faststart`, and no creation
times or source metadata in the container (bitexact flags, `-map_metadata -1`), so the same
inputs and the same FFmpeg build give the same bytes. `timeout` bounds the whole call.
Outputs are written to a temporary name next to `out` and renamed into place only when
FFmpeg succeeded, so `out` is never a half-written file (and `out` may be one of the inputs).
"""

from __future__ import annotations

import colorsys
import contextlib
import hashlib
import math
import mmap
import shutil
import tempfile
import textwrap
import time
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from enum import StrEnum
from fractions import Fraction
from pathlib import Path

from video_pipelines.errors import MediaError
from video_pipelines.operations.ffmpeg import (
    MediaInfo,
    escape_filter_path,
    fps_expression,
    probe,
    probe_audio,
    run_ffmpeg,
)
from video_pipelines.operations.subtitles import POSITIONS, Cue, build_ass

__all__ = [
    "ASPECT_RATIOS",
    "REFRAME_MODES",
    "TRANSITIONS",
    "MergeStrategy",
    "burn_subtitles",
    "dimensions_for",
    "generate_clip",
    "merge_videos",
    "reframe_video",
    "replace_audio",
]

FONTS_DIR = Path(__file__).parent / "fonts"
FONT_FILE = FONTS_DIR / "DejaVuSans.ttf"
SAMPLE_RATE = 48_000
ASPECT_RATIOS: dict[str, tuple[int, int]] = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:5": (4, 5)}
TRANSITIONS = ("cut", "crossfade", "fade")
REFRAME_MODES = ("crop", "pad", "blur")
_XFADE = {"crossfade": "fade", "fade": "fadeblack"}
_MAX_DURATION_S = 3600.0

_ENCODE_VIDEO = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
_ENCODE_AUDIO = ["-c:a", "aac", "-b:a", "128k", "-ar", str(SAMPLE_RATE), "-ac", "2"]
_DETERMINISTIC_MP4 = [
    "-map_metadata", "-1",
    "-map_chapters", "-1",
    "-fflags", "+bitexact",
    "-flags:v", "+bitexact",
    "-flags:a", "+bitexact",
    "-movflags", "+faststart",
    "-f", "mp4",
]  # fmt: skip
_STEREO_48K = f"aresample={SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"


class MergeStrategy(StrEnum):
    """How `merge_videos` built its output."""

    STREAM_COPY = "stream-copy"
    RE_ENCODE = "re-encode"


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def dimensions_for(aspect_ratio: str, short_side: int) -> tuple[int, int]:
    """(width, height) of a frame with `aspect_ratio` whose smaller side is `short_side`; both even."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}; expected one of {', '.join(ASPECT_RATIOS)}")
    if short_side < 2 or short_side % 2:
        raise ValueError(f"short_side must be an even number of pixels >= 2, got {short_side}")
    across, down = ASPECT_RATIOS[aspect_ratio]
    if across >= down:
        return _even(short_side * across / down), short_side
    return short_side, _even(short_side * down / across)


@contextlib.contextmanager
def _atomic_output(out: Path) -> Iterator[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:12]}.partial.mp4")
    try:
        yield partial
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise MediaError(f"timeout must be a positive number of seconds, got {timeout}")


def _is_target_audio(info: MediaInfo) -> bool:
    return info.audio_codec == "aac" and info.sample_rate == SAMPLE_RATE and info.channels == 2


def _audio_for(info: MediaInfo, *, input_index: int) -> tuple[list[str], list[str]]:
    """Filter chains and output args that give the output `info`'s audio as AAC 48 kHz stereo.

    Audio already in that format is copied; other audio is re-encoded; a silent input gets
    silence as long as the video.
    """
    if info.has_audio and _is_target_audio(info):
        return [], ["-map", f"{input_index}:a:0", "-c:a", "copy"]
    if info.has_audio:
        return [], ["-map", f"{input_index}:a:0", *_ENCODE_AUDIO]
    samples = round(info.duration * SAMPLE_RATE)
    chain = f"anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=end_sample={samples}[aout]"
    return [chain], ["-map", "[aout]", *_ENCODE_AUDIO]


def _clean_prompt(prompt: str) -> str:
    text = prompt.replace("\r\n", "\n").replace("\r", "\n")
    # Control characters and lone surrogates become spaces; format characters (ZWJ, bidi marks) stay.
    return "".join(" " if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text).strip()


def _wrap_prompt(prompt: str, *, width: int, height: int, font_size: int) -> str:
    columns = max(6, int(width * 0.85 / (font_size * 0.6)))
    max_lines = max(1, int(height * 0.8 / (font_size * 1.25)))
    lines: list[str] = []
    for paragraph in prompt.split("\n"):
        lines.extend(textwrap.wrap(paragraph, columns) or [""])
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: columns - 1].rstrip() + "\u2026"
    return "\n".join(lines)


def _check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 16 or value > 7680:
            raise MediaError(f"generate: {name} must be an integer from 16 to 7680, got {value!r}")
        if value % 2:
            raise MediaError(f"generate: {name} must be even for H.264 yuv420p, got {value}")


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
    cleaned = _clean_prompt(prompt) if isinstance(prompt, str) else ""
    if not cleaned:
        raise MediaError("generate: prompt must be a non-empty string")
    if not (isinstance(duration, int | float) and math.isfinite(duration) and 0 < duration <= _MAX_DURATION_S):
        raise MediaError(
            f"generate: duration must be a number of seconds in (0, {_MAX_DURATION_S:g}], got {duration!r}"
        )
    _check_size(width, height)
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 120:
        raise MediaError(f"generate: fps must be an integer from 1 to 120, got {fps!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise MediaError(f"generate: seed must be an integer, got {seed!r}")
    _check_timeout(timeout)

    frames = max(1, round(duration * fps))
    samples = frames * SAMPLE_RATE // fps
    seed32 = seed % 2**32
    # Two octaves of semitones from A3: audible, distinct per seed, never near the 1 kHz test tone.
    frequency = round(220 * 2 ** ((seed32 % 24) / 12), 2)
    gradient_type = ("linear", "radial", "circular")[seed32 % 3]
    font_size = max(10, round(min(width, height) / 10))
    text = _wrap_prompt(cleaned, width=width, height=height, font_size=font_size)

    with tempfile.TemporaryDirectory(prefix="vp-generate-") as tmp, _atomic_output(out) as partial:
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
        audio = f"sine=frequency={frequency}:sample_rate={SAMPLE_RATE},{_STEREO_48K},atrim=end_sample={samples}[a]"
        run_ffmpeg(
            [
                "-filter_complex", f"{video};{audio}",
                "-map", "[v]", "-map", "[a]",
                *_ENCODE_VIDEO, *_ENCODE_AUDIO, *_DETERMINISTIC_MP4,
                str(partial),
            ],
            description=f"generate: rendering the {duration:g} s clip for seed {seed}",
            timeout=timeout,
        )  # fmt: skip


def _concat_list_line(path: Path) -> str:
    quoted = str(path.absolute()).replace("'", "'\\''")
    return f"file '{quoted}'\n"


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
        source = f"[{input_index}:a:0]asetpts=PTS-STARTPTS,{_STEREO_48K},apad"
    else:
        source = f"anullsrc=r={SAMPLE_RATE}:cl=stereo"
    return f"{source},atrim=end_sample={samples},asetpts=PTS-STARTPTS[{label}]"


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.001, deadline - time.monotonic())


def merge_videos(
    inputs: Sequence[Path],
    out: Path,
    *,
    transition: str = "cut",
    transition_duration: float = 0.5,
    timeout: float | None = None,
) -> MergeStrategy:
    """Concatenate `inputs` in order, with hard cuts, crossfades or fades through black.

    Inputs are normalised to the first one's size and frame rate (scaled with the aspect
    ratio kept, then padded), with audio resampled to 48 kHz stereo and cut or padded with
    silence to each input's video length (silence for an input without audio). A `cut` of
    inputs whose H.264 video is already identical in format copies the video packets
    (`MergeStrategy.STREAM_COPY`); anything else is re-encoded. Returns the strategy used.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise MediaError("merge: needs at least one input video")
    if transition not in TRANSITIONS:
        raise MediaError(f"merge: transition must be one of {', '.join(TRANSITIONS)}, got {transition!r}")
    _check_timeout(timeout)
    infos = [probe(p) for p in paths]

    if (transition == "cut" or len(paths) == 1) and _stream_copy_compatible(paths, infos):
        _merge_stream_copy(paths, infos, out, timeout=timeout)
        return MergeStrategy.STREAM_COPY

    if transition != "cut" and len(paths) > 1:
        if not (
            isinstance(transition_duration, int | float)
            and math.isfinite(transition_duration)
            and transition_duration > 0
        ):
            raise MediaError(
                f"merge: transitionDuration must be a positive number of seconds, got {transition_duration!r}"
            )
        for path, info in zip(paths, infos, strict=True):
            if transition_duration >= info.duration:
                raise MediaError(
                    f"merge: transitionDuration {transition_duration:g} s must be shorter than every input; "
                    f"{path.name} lasts {info.duration:g} s"
                )
    _merge_re_encode(paths, infos, out, transition=transition, transition_duration=transition_duration, timeout=timeout)
    return MergeStrategy.RE_ENCODE


def _merge_stream_copy(paths: Sequence[Path], infos: Sequence[MediaInfo], out: Path, *, timeout: float | None) -> None:
    """Copy the video packets through the concat demuxer and rebuild the audio to match.

    Copying AAC across files would keep each file's 1024-sample encoder priming, putting the
    audio ~21 ms later at every join; the audio is small, so it is decoded, fitted to each
    segment's video length and encoded once. The concat demuxer also offsets every file by
    its earliest stream (that same negative audio priming), so it reads video-only remuxes.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    rate = Fraction(fps_expression(infos[0].fps))
    frames = _segment_frames(infos, rate)
    with tempfile.TemporaryDirectory(prefix="vp-merge-") as tmp, _atomic_output(out) as partial:
        listing = ["ffconcat version 1.0\n"]
        for index, path in enumerate(paths):
            video_only = Path(tmp) / f"video{index}.mp4"
            run_ffmpeg(
                ["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "mp4", str(video_only)],
                description=f"merge: reading the video stream of {path.name}",
                timeout=_remaining(deadline),
            )
            listing += [_concat_list_line(video_only), f"duration {float(frames[index] / rate):.6f}\n"]
        concat_list = Path(tmp) / "inputs.ffconcat"
        concat_list.write_text("".join(listing), encoding="utf-8")

        chains = [
            _segment_audio(
                info,
                input_index=index + 1,
                samples=round(frames[index] / rate * SAMPLE_RATE),
                label=f"a{index}",
            )
            for index, info in enumerate(infos)
        ]
        labels = "".join(f"[a{i}]" for i in range(len(infos)))
        chains.append(f"{labels}concat=n={len(infos)}:v=0:a=1[aout]")
        sources: list[str] = []
        for path in paths:
            sources += ["-i", str(path)]
        run_ffmpeg(
            [
                "-f", "concat", "-safe", "0", "-auto_convert", "0", "-i", str(concat_list), *sources,
                "-filter_complex", ";".join(chains),
                "-map", "0:v:0", "-map", "[aout]", "-c:v", "copy",
                *_ENCODE_AUDIO, *_DETERMINISTIC_MP4, str(partial),
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
    first = infos[0]
    width, height = first.width - first.width % 2, first.height - first.height % 2
    rate_expr = fps_expression(first.fps)
    rate = Fraction(rate_expr)
    frames = _segment_frames(infos, rate)
    lengths = [count / rate for count in frames]
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

    count = len(paths)
    if transition == "cut" or count == 1:
        pairs = "".join(f"[v{i}][a{i}]" for i in range(count))
        chains.append(f"{pairs}concat=n={count}:v=1:a=1[vout][aout]")
    else:
        overlap = Fraction(transition_duration).limit_denominator(1000)
        fade_samples = round(overlap * SAMPLE_RATE)
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

    sources: list[str] = []
    for path in paths:
        sources += ["-i", str(path)]
    with _atomic_output(out) as partial:
        run_ffmpeg(
            [
                *sources,
                "-filter_complex", ";".join(chains),
                "-map", "[vout]", "-map", "[aout]",
                *_ENCODE_VIDEO, *_ENCODE_AUDIO, *_DETERMINISTIC_MP4,
                str(partial),
            ],
            description=f"merge: joining {count} videos with transition {transition!r}",
            timeout=timeout,
        )  # fmt: skip


def replace_audio(video: Path, audio: Path, out: Path, *, timeout: float | None = None) -> None:
    """Replace the audio of `video` with `audio`, cut or padded with silence to the video's length.

    The video stream is copied when it is already H.264 yuv420p, re-encoded otherwise.
    """
    _check_timeout(timeout)
    info = probe(video)
    probe_audio(audio)
    samples = round(info.duration * SAMPLE_RATE)
    chain = f"[1:a:0]asetpts=PTS-STARTPTS,{_STEREO_48K},apad,atrim=end_sample={samples}[aout]"
    copy_video = info.video_codec == "h264" and info.pix_fmt == "yuv420p"
    video_args = ["-c:v", "copy"] if copy_video else _ENCODE_VIDEO
    with _atomic_output(out) as partial:
        run_ffmpeg(
            [
                "-i", str(video), "-i", str(audio),
                "-filter_complex", chain,
                "-map", "0:v:0", "-map", "[aout]",
                *video_args, *_ENCODE_AUDIO, *_DETERMINISTIC_MP4,
                str(partial),
            ],
            description=f"lipSync: putting the audio of {audio.name} on {video.name}",
            timeout=timeout,
        )  # fmt: skip


def _filter_video(
    video: Path,
    out: Path,
    *,
    info: MediaInfo,
    video_chain: str,
    description: str,
    timeout: float | None,
) -> None:
    """Run `video_chain` ([0:v:0] ... [vout]) on `video`, keeping its audio (or adding silence)."""
    audio_chains, audio_args = _audio_for(info, input_index=0)
    with _atomic_output(out) as partial:
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


def burn_subtitles(
    video: Path,
    out: Path,
    *,
    cues: Sequence[Cue],
    font_size: int | None = None,
    position: str = "bottom",
    timeout: float | None = None,
) -> None:
    """Burn `cues` into `video` with libass (bundled DejaVu Sans); the audio is kept."""
    if not cues:
        raise MediaError("addSubtitles: there are no subtitle cues to burn")
    if position not in POSITIONS:
        raise MediaError(f"addSubtitles: position must be one of {', '.join(POSITIONS)}, got {position!r}")
    _check_timeout(timeout)
    info = probe(video)
    width, height = info.width - info.width % 2, info.height - info.height % 2
    script = build_ass(cues, width=width, height=height, font_size=font_size, position=position)
    with tempfile.TemporaryDirectory(prefix="vp-subtitles-") as tmp:
        ass_file = Path(tmp) / "subtitles.ass"
        ass_file.write_text(script, encoding="utf-8")
        # A folder holding only the font: libass tries to load every file in fontsdir.
        fonts = Path(tmp) / "fonts"
        fonts.mkdir()
        try:
            (fonts / FONT_FILE.name).symlink_to(FONT_FILE.absolute())
        except OSError:
            shutil.copyfile(FONT_FILE, fonts / FONT_FILE.name)
        chain = (
            f"[0:v:0]crop={width}:{height}:0:0,setsar=1,"
            f"ass=filename={escape_filter_path(ass_file)}:fontsdir={escape_filter_path(fonts)},"
            "format=yuv420p[vout]"
        )
        _filter_video(
            video,
            out,
            info=info,
            video_chain=chain,
            description=f"addSubtitles: burning {len(cues)} cues into {video.name}",
            timeout=timeout,
        )


def _reframe_size(width: int, height: int, across: int, down: int, mode: str) -> tuple[int, int]:
    source_wider = width * down > height * across
    if mode == "crop":
        even_w, even_h = width - width % 2, height - height % 2
        if source_wider:
            return min(even_w, _even(height * across / down)), even_h
        return even_w, min(even_h, _even(width * down / across))
    even_w, even_h = width + width % 2, height + height % 2
    if source_wider:
        return even_w, max(even_h, 2 * math.ceil(width * down / across / 2))
    return max(even_w, 2 * math.ceil(height * across / down / 2)), even_h


def reframe_video(
    video: Path,
    out: Path,
    *,
    aspect_ratio: str,
    mode: str = "crop",
    timeout: float | None = None,
) -> None:
    """Change `video` to `aspect_ratio`: centre-crop it, pad it with black, or centre it on a blurred copy."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise MediaError(f"reframe: aspectRatio must be one of {', '.join(ASPECT_RATIOS)}, got {aspect_ratio!r}")
    if mode not in REFRAME_MODES:
        raise MediaError(f"reframe: mode must be one of {', '.join(REFRAME_MODES)}, got {mode!r}")
    _check_timeout(timeout)
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
    _filter_video(
        video,
        out,
        info=info,
        video_chain=chain,
        description=f"reframe: {mode} of {video.name} to {aspect_ratio}",
        timeout=timeout,
    )
