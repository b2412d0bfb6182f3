"""Subtitle cues from recognised words: sentences, then cues of at most `MAX_LINES` lines of `MAX_LINE_CHARS`
(broadcast limits).

Recognisers such as the local one give lower-case words without punctuation. `sentences` ends a sentence with a
full stop at a pause of `SENTENCE_PAUSE_SECONDS` or more and after the last word, and starts each in upper case
(and English "I"); where a transcriber punctuates itself, only a pause that ends a cue (`PAUSE_SECONDS`) adds a
stop. The words are otherwise as heard.
A cue ends at a sentence end, a pause, `MAX_CUE_SECONDS` or when full, and lasts at least `MIN_CUE_SECONDS`
(a lone "yes" is otherwise gone before it is read).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from video_pipelines.errors import MediaError
from video_pipelines.speech import Word, base_language

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_SECONDS = 6.0
MIN_CUE_SECONDS = 0.8
PAUSE_SECONDS = 0.7
# Silence between sentences, as the local recogniser times festival's HTS voice: 0.14-0.32 s after a sentence,
# at most 0.08 s at a comma.
SENTENCE_PAUSE_SECONDS = 0.12
_SENTENCE_ENDS = (".", "!", "?", "…", "\u3002", "\uff01", "\uff1f")  # and the CJK full stop, ! and ?
_CLAUSE_ENDS = ",;:\u3001\uff0c"  # and the CJK commas
_CLOSERS = "\"'\u201d\u2019"  # English quotes close after a sentence's end mark: `said "hello."`
_CJK = re.compile("[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")  # kana and ideographs: a stop is 。
_ENGLISH_I = re.compile("i(?:['\u2019](?:m|d|ll|ve))?[,;:]?")


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


def _ends_sentence(text: str) -> bool:
    return text.rstrip(_CLOSERS).endswith(_SENTENCE_ENDS)


def _full_stop(text: str) -> str:
    """`text` ending its sentence: a full stop before any closing quote, in place of a comma."""
    if _ends_sentence(text):
        return text
    body = text.rstrip(_CLOSERS)
    closers = text[len(body) :]
    body = body.rstrip(_CLAUSE_ENDS)
    if not body:
        return text
    return body + ("\u3002" if _CJK.match(body[-1]) else ".") + closers


def _capitalised(text: str) -> str:
    """`text` with its first letter in upper case (after an opening quote, say); a number is left alone."""
    for index, character in enumerate(text):
        if character.isalpha():
            return text[:index] + character.upper() + text[index + 1 :]
        if character.isdigit():
            break
    return text


def sentences(words: Sequence[Word], language: str | None = None) -> list[Word]:
    """`words` (in spoken order, empty ones left out) as sentences; see the module docstring."""
    spoken = [Word(word.start, word.end, " ".join(word.text.split())) for word in words if word.text.split()]
    punctuated = any(word.text.rstrip(_CLOSERS).endswith((*_SENTENCE_ENDS, *_CLAUSE_ENDS)) for word in spoken)
    english = language is not None and base_language(language) == "en"
    pause = PAUSE_SECONDS if punctuated else SENTENCE_PAUSE_SECONDS
    texts: list[str] = []
    for index, word in enumerate(spoken):
        following = spoken[index + 1] if index + 1 < len(spoken) else None
        text = word.text
        if index == 0 or _ends_sentence(texts[-1]) or (english and _ENGLISH_I.fullmatch(text)):
            text = _capitalised(text)
        if following is None or following.start - word.end >= pause:
            text = _full_stop(text)
        texts.append(text)
    return [Word(word.start, word.end, text) for word, text in zip(spoken, texts, strict=True)]


def cues_from_words(words: Sequence[Word], language: str | None = None) -> list[Cue]:
    """The cues that show `words` (in spoken order, in `language`) as they are spoken; see the module docstring."""
    groups: list[list[Word]] = []
    for word in sentences(words, language):
        current = groups[-1] if groups else None
        if current is None or _ends_before(current, word):
            groups.append([word])
        else:
            current.append(word)
    cues: list[Cue] = []
    for index, group in enumerate(groups):
        start, end = group[0].start, group[-1].end
        following = groups[index + 1][0].start if index + 1 < len(groups) else None
        end = max(end, start + MIN_CUE_SECONDS)
        if following is not None:
            end = max(min(end, following), group[-1].end)
        if end <= start:  # a word the recogniser gave no duration
            end = start + 0.01
        text = _layout([w.text for w in group], MAX_LINE_CHARS)
        cues.append(Cue(start=round(start, 3), end=round(end, 3), text=text, words=tuple(group)))
    return cues


def _ends_before(current: list[Word], word: Word) -> bool:
    last = current[-1]
    return (
        _ends_sentence(last.text)
        or word.start - last.end > PAUSE_SECONDS
        or word.end - current[0].start > MAX_CUE_SECONDS
        or len(_lines([w.text for w in [*current, word]], MAX_LINE_CHARS)) > MAX_LINES
    )
