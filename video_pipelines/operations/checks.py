"""Media checks: is a node's video what the node asked for? (streams, duration, aspect_ratio, not_black, not_silent)

One FFmpeg pass decodes once (no B-frames, `SAMPLE_FPS`, thumbnail size): decoding is the cost (bench_checks.py).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from video_pipelines.errors import MediaError
from video_pipelines.operations.ffmpeg import MediaInfo, escape_filter_path, probe, run_ffmpeg
from video_pipelines.vocabulary import RECOGNISED_RATIOS, has_ratio

# Which checks fail their node when they fail, as a deployment sets it: "streams,duration", "all" or "none".
BLOCKING_CHECKS_ENV = "VIDEO_PIPELINES_BLOCKING_CHECKS"

SAMPLE_FPS = 4  # frames a second blackdetect looks at: a fade lasts longer than a quarter second
_THUMB_WIDTH = 64
_BLACK_PICTURE = 0.98  # share of a frame's pixels that must be black for the frame to count as black
_SILENCE_DB = -50
_SILENCE_MIN_SECONDS = 0.5
MOSTLY = 0.9  # black or silent for this share of the video or more: "the whole video"
_MIN_TOLERANCE_S = 0.25
_RELATIVE_TOLERANCE = 0.05
_ANALYSIS_TIMEOUT_S = 600.0


class CheckName(StrEnum):
    """The media checks, by the names the UI and `status` show."""

    STREAMS = "streams"
    DURATION = "duration"
    ASPECT_RATIO = "aspect_ratio"
    NOT_BLACK = "not_black"
    NOT_SILENT = "not_silent"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    CheckName.STREAMS: "The video has a video stream, and an audio stream where the node's video should have sound.",
    CheckName.DURATION: "The video lasts what the node asked for, within max(0.25 s, 5%).",
    CheckName.ASPECT_RATIO: "The frame has the aspect ratio the node asked for (or its input's).",
    CheckName.NOT_BLACK: f"The video is not black for {MOSTLY:.0%} or more of its length (FFmpeg blackdetect).",
    CheckName.NOT_SILENT: f"Where sound is expected, the audio is not silent (below {_SILENCE_DB} dB) for "
    f"{MOSTLY:.0%} or more of its length (FFmpeg silencedetect).",
}

DEFAULT_BLOCKING: frozenset[CheckName] = frozenset({CheckName.STREAMS})


def parse_blocking(text: str | None) -> frozenset[CheckName]:
    """The checks that block, from `VIDEO_PIPELINES_BLOCKING_CHECKS`'s syntax: unset or "" = default (streams),
    "none", "all", or names separated by commas."""
    if text is None or not text.strip():
        return DEFAULT_BLOCKING
    words = {word.strip().lower() for word in text.split(",") if word.strip()}
    if words == {"none"}:
        return frozenset()
    if words == {"all"}:
        return frozenset(CheckName)
    unknown = sorted(word for word in words if word not in CheckName.__members__.values())
    if unknown:
        raise MediaError(
            f"{BLOCKING_CHECKS_ENV}: unknown check(s) {', '.join(unknown)}; "
            f"expected 'all', 'none' or some of {', '.join(CheckName)}"
        )
    return frozenset(CheckName(word) for word in words)


@dataclass(frozen=True)
class MediaExpectations:
    """What a node's video should be; None where the node does not say (not checked)."""

    duration: float | None = None  # seconds
    aspect_ratio: str | None = None  # a name of RECOGNISED_RATIOS, e.g. "16:9"
    audio: bool = False  # whether it should have audible sound
    duration_tolerance: float | None = None  # seconds either side; default max(0.25 s, 5%)

    @property
    def tolerance(self) -> float:
        if self.duration_tolerance is not None:
            return self.duration_tolerance
        return max(_MIN_TOLERANCE_S, _RELATIVE_TOLERANCE * (self.duration or 0.0))


@dataclass(frozen=True)
class MediaFacts:
    """What a video is, as the checks need it."""

    duration: float
    width: int
    height: int
    has_audio: bool
    black_seconds: float  # how long it is black (sampled at SAMPLE_FPS)
    silent_seconds: float | None  # how long its audio is silent; None without audio
    seconds: float = 0.0  # what finding this out took


@dataclass(frozen=True)
class CheckOutcome:
    """One check on one node's video."""

    name: CheckName
    passed: bool
    blocking: bool
    message: str
    metadata: Mapping[str, float | int | str | bool] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name.value, "passed": self.passed, "blocking": self.blocking, "message": self.message}


class MediaChecksFailed(MediaError):
    """A node's video failed a blocking media check; `outcomes` holds every check's outcome."""

    def __init__(self, message: str, outcomes: Sequence[CheckOutcome]) -> None:
        super().__init__(message)
        self.outcomes = tuple(outcomes)


_METADATA_LINE = re.compile(r"^lavfi\.(black_start|black_end|silence_start|silence_end)=(-?[\d.]+)", re.MULTILINE)


def _covered(text: str, start_key: str, end_key: str, duration: float) -> float:
    """Seconds inside [start, end) intervals printed by a detector; an interval left open runs to the end."""
    total, opened = 0.0, None
    for key, value in _METADATA_LINE.findall(text):
        at = min(max(float(value), 0.0), duration)
        if key == start_key and opened is None:
            opened = at
        elif key == end_key and opened is not None:
            total += max(0.0, at - opened)
            opened = None
    if opened is not None:
        total += max(0.0, duration - opened)
    return min(total, duration)


def analyse(path: Path, *, info: MediaInfo | None = None, timeout: float | None = _ANALYSIS_TIMEOUT_S) -> MediaFacts:
    """Probe `path` (unless `info` is its probe already) and find, in one decoding pass, how long it is
    black and how long silent."""
    started = time.perf_counter()
    info = info if info is not None else probe(path)
    with tempfile.TemporaryDirectory(prefix="vp-checks-") as tmp:
        black_file, silence_file = Path(tmp) / "black.txt", Path(tmp) / "silence.txt"
        video = (
            f"fps={SAMPLE_FPS},scale={_THUMB_WIDTH}:-2,blackdetect=d=0:pic_th={_BLACK_PICTURE},"
            f"metadata=mode=print:file={escape_filter_path(black_file)}"
        )
        audio = (
            f"silencedetect=n={_SILENCE_DB}dB:d={_SILENCE_MIN_SECONDS},"
            f"ametadata=mode=print:file={escape_filter_path(silence_file)}"
        )
        run_ffmpeg(
            [
                # Decoding is the cost. Skipping B-frames (most of an x264 stream) and the loop filter (it only
                # smooths block edges) makes it 4x cheaper (bench_checks.py); the frames kept, I and P at least
                # every few frames, still show a black or a fade at the 4 fps blackdetect looks at.
                "-skip_frame:v", "bidir", "-skip_loop_filter:v", "all", "-i", str(path),
                "-map", "0:v:0", "-vf", video,
                *(["-map", "0:a:0", "-af", audio] if info.has_audio else []),
                "-f", "null", "-",
            ],
            description=f"media checks of {path.name}",
            timeout=timeout,
        )  # fmt: skip
        black_text = black_file.read_text() if black_file.exists() else ""
        silence_text = silence_file.read_text() if silence_file.exists() else ""
    return MediaFacts(
        duration=info.duration,
        width=info.width,
        height=info.height,
        has_audio=info.has_audio,
        black_seconds=round(_covered(black_text, "black_start", "black_end", info.duration), 3),
        silent_seconds=(
            round(_covered(silence_text, "silence_start", "silence_end", info.duration), 3) if info.has_audio else None
        ),
        seconds=round(time.perf_counter() - started, 3),
    )


_Metadata = dict[str, float | int | str | bool]
_Result = tuple[bool, str, _Metadata]


def _streams(facts: MediaFacts, expected: MediaExpectations, subject: str) -> _Result:
    metadata: _Metadata = {"has_audio": facts.has_audio, "audio_expected": expected.audio}
    if expected.audio and not facts.has_audio:
        return False, f"{subject} has no audio stream, but its video should have sound", metadata
    audio = "and an audio stream" if facts.has_audio else "and no audio stream (none expected)"
    return True, f"{subject} has a video stream {audio}", metadata


def _duration(facts: MediaFacts, expected: MediaExpectations, subject: str) -> _Result:
    metadata: _Metadata = {"duration": facts.duration}
    if expected.duration is None:
        return True, f"{subject} lasts {facts.duration:.2f} s (no duration to compare with)", metadata
    metadata |= {"expected_duration": expected.duration, "tolerance": expected.tolerance}
    off = facts.duration - expected.duration
    numbers = f"{facts.duration:.2f} s, expected {expected.duration:.2f} s ± {expected.tolerance:.2f} s"
    if abs(off) > expected.tolerance:
        numbers += f" ({'too short' if off < 0 else 'too long'} by {abs(off):.2f} s)"
    return abs(off) <= expected.tolerance, f"{subject} lasts {numbers}", metadata


def _aspect_ratio(facts: MediaFacts, expected: MediaExpectations, subject: str) -> _Result:
    size = f"{facts.width}x{facts.height}"
    metadata: _Metadata = {"width": facts.width, "height": facts.height, "expected": expected.aspect_ratio or ""}
    if expected.aspect_ratio is None:
        return True, f"{subject} is {size} (no aspect ratio to compare with)", metadata
    shape = RECOGNISED_RATIOS.get(expected.aspect_ratio)
    if shape is None:
        return True, f"{subject} is {size} (aspect ratio {expected.aspect_ratio} is not one this checks)", metadata
    if not has_ratio(facts.width, facts.height, shape):
        ratio = facts.width / facts.height
        expectation = f"expected {expected.aspect_ratio} ({shape[0] / shape[1]:.3f}:1)"
        return False, f"{subject} is {size} ({ratio:.3f}:1), {expectation}", metadata
    return True, f"{subject} is {size}, {expected.aspect_ratio} as expected", metadata


def _not_black(facts: MediaFacts, expected: MediaExpectations, subject: str) -> _Result:
    share = facts.black_seconds / facts.duration
    metadata: _Metadata = {"black_seconds": facts.black_seconds, "duration": facts.duration}
    numbers = f"black for {facts.black_seconds:.2f} s of {facts.duration:.2f} s ({share:.0%})"
    if share >= MOSTLY:
        return False, f"{subject} is {numbers}, at least {MOSTLY:.0%}", metadata
    return True, f"{subject} is {numbers}", metadata


def _not_silent(facts: MediaFacts, expected: MediaExpectations, subject: str) -> _Result:
    metadata: _Metadata = {"audio_expected": expected.audio, "duration": facts.duration}
    if not expected.audio:
        return True, f"{subject}: no sound expected, not checked", metadata
    if facts.silent_seconds is None:
        return False, f"{subject} has no audio to hear, but its video should have sound", metadata
    share = facts.silent_seconds / facts.duration
    metadata["silent_seconds"] = facts.silent_seconds
    seconds = f"{facts.silent_seconds:.2f} s of {facts.duration:.2f} s ({share:.0%})"
    numbers = f"silent (below {_SILENCE_DB} dB) for {seconds}"
    if share >= MOSTLY:
        return False, f"{subject} is {numbers}, at least {MOSTLY:.0%}", metadata
    return True, f"{subject} is {numbers}", metadata


_CHECKS = {
    CheckName.STREAMS: _streams,
    CheckName.DURATION: _duration,
    CheckName.ASPECT_RATIO: _aspect_ratio,
    CheckName.NOT_BLACK: _not_black,
    CheckName.NOT_SILENT: _not_silent,
}


def check_media(
    path: Path,
    expected: MediaExpectations,
    *,
    subject: str,
    blocking: Iterable[CheckName] = DEFAULT_BLOCKING,
    info: MediaInfo | None = None,
    timeout: float | None = _ANALYSIS_TIMEOUT_S,
) -> list[CheckOutcome]:
    """Analyse the video at `path` (`info`: its probe, if made already) and check it against `expected`: every
    check's outcome, in `CheckName` order; `subject` names the node in the messages."""
    facts = analyse(path, info=info, timeout=timeout)
    blocks = frozenset(blocking)
    outcomes = []
    for name, check in _CHECKS.items():
        passed, message, metadata = check(facts, expected, subject)
        # Only this check's numbers: status reads every evaluation of a run, and smaller events read faster.
        metadata["check_seconds"] = facts.seconds
        outcomes.append(CheckOutcome(name, passed, name in blocks, f"{name.value}: {message}", metadata))
    return outcomes


def blocking_failure(outcomes: Sequence[CheckOutcome]) -> MediaChecksFailed | None:
    """The error that fails the node, when a blocking check failed; its message names each such check."""
    failed = [outcome for outcome in outcomes if outcome.blocking and not outcome.passed]
    if not failed:
        return None
    plural = "s" if len(failed) > 1 else ""
    return MediaChecksFailed(
        f"blocking media check{plural} failed: " + "; ".join(outcome.message for outcome in failed), outcomes
    )
