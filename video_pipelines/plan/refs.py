"""`{{node}}` and `{{node.field}}` references: a whole-value reference keeps its type, one inside text its text."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from video_pipelines.plan.limits import walk

REF_PATTERN = re.compile(r"\{\{\s*([^{}\s.]+)(?:\.([^{}\s]+))?\s*\}\}")

# The fields of a video result a reference may name, and a sample of each type used to
# type-check params before the real values exist.
RESULT_FIELD_SAMPLES: dict[str, str | int | float] = {
    "url": "https://example.invalid/video.mp4",
    "duration": 1.0,
    "width": 2,
    "height": 2,
    "aspectRatio": "16:9",
    "sizeBytes": 1,
    "sha256": "0" * 64,
    "status": "completed",
}


@dataclass(frozen=True)
class Reference:
    path: str  # where in params, e.g. "prompt" or "cues[0].text"
    node_id: str
    field: str  # "url" when the reference names only the node

    @property
    def text(self) -> str:
        return "{{" + self.node_id + ("" if self.field == "url" else f".{self.field}") + "}}"


def find_references(params: Any, path: str = "") -> Iterator[Reference]:
    """Every reference in `params`, with the path of the value that holds it."""
    for where, value, _ in walk(params, path):
        if isinstance(value, str):
            for match in REF_PATTERN.finditer(value):
                yield Reference(where or "params", match.group(1), match.group(2) or "url")


def substitute(params: Any, lookup: Callable[[str, str], Any]) -> Any:
    """A copy of `params` with every reference replaced by `lookup(node_id, field)`, without recursion."""
    top: list[Any] = [params]
    stack: list[tuple[Any, list[Any] | dict[Any, Any], Any]] = [(params, top, 0)]
    while stack:
        value, holder, slot = stack.pop()
        if isinstance(value, Mapping):
            copied: dict[Any, Any] = dict(value)
            holder[slot] = copied
            stack.extend((item, copied, key) for key, item in value.items())
        elif isinstance(value, list):
            listed: list[Any] = list(value)
            holder[slot] = listed
            stack.extend((item, listed, index) for index, item in enumerate(value))
        elif isinstance(value, str):
            holder[slot] = _substituted(value, lookup)
    return top[0]


def _substituted(text: str, lookup: Callable[[str, str], Any]) -> Any:
    whole = REF_PATTERN.fullmatch(text.strip())
    if whole:
        return lookup(whole.group(1), whole.group(2) or "url")
    return REF_PATTERN.sub(lambda m: str(lookup(m.group(1), m.group(2) or "url")), text)


def with_samples(params: Any) -> Any:
    """`params` with references replaced by typed samples, to type-check them before execution."""
    return substitute(params, lambda _node, field: RESULT_FIELD_SAMPLES.get(field, ""))


def with_results(params: Any, results: Mapping[str, Mapping[str, Any]]) -> Any:
    """`params` with references replaced by the upstream results' values."""
    return substitute(params, lambda node, field: results[node][field])
