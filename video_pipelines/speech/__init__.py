"""Speech as timed words, and caption cues: plain data read by both the plan's validation and the operations."""

from __future__ import annotations

import math
from dataclasses import dataclass

from video_pipelines.errors import MediaError

__all__ = ["LOCAL_LANGUAGES", "REMOTE_TRANSCRIBERS", "Word", "base_language"]

# ISO 639-1 codes the local recogniser transcribes (its wheel's model is US English).
LOCAL_LANGUAGES = frozenset({"en"})
# The providers whose speech-to-text takes other languages.
REMOTE_TRANSCRIBERS = ("replicate", "fal")


def base_language(language: str) -> str:
    """The ISO 639-1 part of a language tag: `en` for `en-US`, `en_GB` or `EN`."""
    return language.replace("_", "-").split("-")[0].strip().lower()


@dataclass(frozen=True)
class Word:
    """One recognised word: `text` spoken from `start` to `end` seconds into the video."""

    start: float
    end: float
    text: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise MediaError(f"recognised word {self.text!r}: start and end must be finite numbers")
        if self.start < 0 or self.end < self.start:
            raise MediaError(f"recognised word {self.text!r}: bad times {self.start}..{self.end}")
