"""Subtitle cues from recognised words: at most `MAX_LINES` lines of `MAX_LINE_CHARS` (broadcast limits).

A cue ends at a sentence end, a pause, `MAX_CUE_SECONDS` or when full, and lasts at least `MIN_CUE_SECONDS`
(a lone "yes" is otherwise gone before it is read); its first word is capitalised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from video_pipelines.errors import MediaError
from video_pipelines.speech import Word

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_SECONDS = 6.0
MIN_CUE_SECONDS = 0.8
PAUSE_SECONDS = 0.7
_SENTENCE_ENDS = (".", "!", "?", "…", "\u3002", "\uff01", "\uff1f")  # and the CJK full stop, ! and ?


@dataclass(frozen=True)
class Cue:
    """One subtitle: `text` shown from `start` to `end`; `words` (from speech) are timed for karaoke."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise MediaError(f"subtitle cue {self.text!r}: start and end must be finite numbers")
        if self.start < 0:
            raise MediaError(f"subtitle cue {self.text!r}: start {self.start} is negative")
        if self.end <= self.start:
            raise MediaError(f"subtitle cue {self.text!r}: end {self.end} must be after start {self.start}")


def _lines(texts: Sequence[str], width: int) -> list[list[str]]:
    """`texts` wrapped greedily into lines of at most `width` characters (a longer word gets a line of its own)."""
    lines: list[list[str]] = []
    length = 0
    for text in texts:
        if lines and length + 1 + len(text) <= width:
            lines[-1].append(text)
            length += 1 + len(text)
        else:
            lines.append([text])
            length = len(text)
    return lines


def _layout(texts: Sequence[str], width: int) -> str:
    """The cue's text: one line when it fits, else two lines as even as the words allow."""
    if len(" ".join(texts)) <= width or len(texts) < 2:
        return " ".join(texts)
    wrapped = _lines(texts, width)
    if len(wrapped) != 2:
        return "\n".join(" ".join(line) for line in wrapped)
    best = min(range(1, len(texts)), key=lambda cut: max(len(" ".join(texts[:cut])), len(" ".join(texts[cut:]))))
    return " ".join(texts[:best]) + "\n" + " ".join(texts[best:])


def cues_from_words(words: Sequence[Word]) -> list[Cue]:
    """The cues that show `words` (in spoken order) as they are spoken; see the module docstring."""
    groups: list[list[Word]] = []
    for word in words:
        text = " ".join(word.text.split())
        if not text:
            continue
        word = Word(start=word.start, end=word.end, text=text)
        current = groups[-1] if groups else None
        if current is None or _ends_before(current, word):
            groups.append([word])
        else:
            current.append(word)
    cues: list[Cue] = []
    for index, group in enumerate(groups):
        shown = [Word(group[0].start, group[0].end, group[0].text[:1].upper() + group[0].text[1:]), *group[1:]]
        start, end = group[0].start, group[-1].end
        following = groups[index + 1][0].start if index + 1 < len(groups) else None
        end = max(end, start + MIN_CUE_SECONDS)
        if following is not None:
            end = max(min(end, following), group[-1].end)
        if end <= start:  # a word the recogniser gave no duration
            end = start + 0.01
        text = _layout([w.text for w in shown], MAX_LINE_CHARS)
        cues.append(Cue(start=round(start, 3), end=round(end, 3), text=text, words=tuple(shown)))
    return cues


def _ends_before(current: list[Word], word: Word) -> bool:
    last = current[-1]
    return (
        last.text.endswith(_SENTENCE_ENDS)
        or word.start - last.end > PAUSE_SECONDS
        or word.end - current[0].start > MAX_CUE_SECONDS
        or len(_lines([w.text for w in [*current, word]], MAX_LINE_CHARS)) > MAX_LINES
    )
