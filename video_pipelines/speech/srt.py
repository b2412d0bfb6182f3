"""SubRip (SRT) to cues and back, and cues as WebVTT. SRT has no escapes: `-->` in text gets a
U+2060 WORD JOINER after `--`, so no reader takes it for a timing line."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable, Sequence

from video_pipelines.errors import MediaError
from video_pipelines.speech.cues import Cue

WORD_JOINER = "\u2060"
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING_RE = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$")


def _seconds(hours: str | None, minutes: str, seconds: str, fraction: str, *, cue: str) -> float:
    if int(minutes) >= 60 or int(seconds) >= 60:
        raise MediaError(f"SRT cue {cue}: minutes and seconds must be below 60")
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction.ljust(3, "0")) / 1000


def parse_srt(text: str) -> list[Cue]:
    """SubRip text as cues, tolerating a BOM, CR(LF), blank lines, `.` before milliseconds and missing
    numbers; a block without timing continues the previous cue. `MediaError` names a bad timing line."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks = [list(block) for filled, block in itertools.groupby(lines, key=lambda line: bool(line.strip())) if filled]
    cues: list[Cue] = []
    texts: list[list[str]] = []
    for ordinal, block in enumerate(blocks, start=1):
        label = str(ordinal)
        index = 0
        if block[0].strip().isdigit() and len(block) > 1:
            label = block[0].strip()
            index = 1
        timing = block[index]
        if "-->" not in timing:
            if not texts or index:
                raise MediaError(f"SRT cue {label}: expected a timing line 'HH:MM:SS,mmm --> HH:MM:SS,mmm'")
            texts[-1].extend(["", *block])
            continue
        match = _TIMING_RE.match(timing)
        if match is None:
            raise MediaError(
                f"SRT cue {label}: bad timing line {timing.strip()!r}; expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm'"
            )
        groups = match.groups()
        start = _seconds(*groups[:4], cue=label)
        end = _seconds(*groups[4:], cue=label)
        if end <= start:
            raise MediaError(f"SRT cue {label}: end {timing.split('-->')[1].strip()} is not after the start")
        cues.append(Cue(start=start, end=end, text=""))
        texts.append(block[index + 1 :])
    return [Cue(start=cue.start, end=cue.end, text="\n".join(t)) for cue, t in zip(cues, texts, strict=True)]


def printable_lines(text: str) -> str:
    """`text` with `\\n` line ends and other control characters as spaces (some readers stop at NUL)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(" " if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text)


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _sidecar(cues: Sequence[Cue], blocks: list[str], separator: str, escape: Callable[[str], str]) -> str:
    """`cues` after the header `blocks`, numbered when there is no header (SRT); a cue's text printable and
    without blank lines (one would end the cue)."""
    numbering = not blocks
    for number, cue in enumerate(cues, start=1):
        lines = [line for line in printable_lines(cue.text).split("\n") if line.strip()] or [" "]
        numbered = [str(number)] if numbering else []
        timing = f"{_clock(cue.start, separator)} --> {_clock(cue.end, separator)}"
        blocks.append("\n".join([*numbered, timing, *(escape(line) for line in lines)]))
    return "\n\n".join(blocks) + "\n"


def to_srt(cues: Sequence[Cue]) -> str:
    """`cues` as SubRip text: numbered blocks, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, UTF-8 without BOM."""
    return _sidecar(cues, [], ",", lambda line: line.replace("-->", f"--{WORD_JOINER}>"))


def to_webvtt(cues: Sequence[Cue]) -> str:
    """`cues` as WebVTT; `&`, `<`, `>` escaped, which also keeps `-->` out."""
    return _sidecar(
        cues, ["WEBVTT"], ".", lambda line: line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    )
