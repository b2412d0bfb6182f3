"""The result of a plan node: a stored, probed video (and, for subtitles, its caption files)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

from video_pipelines.vocabulary import RECOGNISED_RATIOS, WireRecord, has_ratio


def aspect_ratio_name(width: int, height: int) -> str:
    """`16:9` for 1280x720: a known ratio when the size `has_ratio` it, else the reduced fraction."""
    for name, shape in RECOGNISED_RATIOS.items():
        if has_ratio(width, height, shape):
            return name
    fraction = Fraction(width, height)
    return f"{fraction.numerator}:{fraction.denominator}"


@dataclass(frozen=True)
class Captions(WireRecord):
    """Where a video's subtitles are stored as sidecar files: SubRip and WebVTT."""

    srt: str
    vtt: str

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Captions:
        return cls(srt=str(wire["srt"]), vtt=str(wire["vtt"]))


_WIRE_NAMES = {"aspect_ratio": "aspectRatio", "size_bytes": "sizeBytes"}
_OPTIONAL = ("captions", "provider", "fallback_from")


@dataclass(frozen=True)
class VideoResult:
    url: str
    duration: float
    width: int
    height: int
    aspect_ratio: str
    size_bytes: int
    sha256: str
    status: str = "completed"
    # addSubtitles: the cues as sidecar files; on the wire only when there are some.
    captions: Captions | None = None
    # A node with `fallbacks`: the provider that made the video, and those it moved on from, in order (on the
    # wire only for such nodes, so every other result stays as it was).
    provider: str | None = None
    fallback_from: tuple[str, ...] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {_WIRE_NAMES.get(f.name, f.name): getattr(self, f.name) for f in fields(self) if f.name not in _OPTIONAL}
        if self.captions is not None:
            wire["captions"] = self.captions.to_wire()
        if self.fallback_from is not None:
            wire["provider"] = self.provider
            wire["fallbackFrom"] = list(self.fallback_from)
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> VideoResult:
        return cls(
            url=str(wire["url"]),
            duration=float(wire["duration"]),
            width=int(wire["width"]),
            height=int(wire["height"]),
            aspect_ratio=str(wire["aspectRatio"]),
            size_bytes=int(wire["sizeBytes"]),
            sha256=str(wire["sha256"]),
            status=str(wire.get("status", "completed")),
            captions=Captions.from_wire(wire["captions"]) if wire.get("captions") else None,
            provider=str(wire["provider"]) if wire.get("provider") else None,
            fallback_from=tuple(map(str, wire["fallbackFrom"])) if isinstance(wire.get("fallbackFrom"), list) else None,
        )
