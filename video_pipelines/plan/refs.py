"""`{{node}}` and `{{node.field}}` references inside params.

A param whose whole value is one reference takes the referenced value with its type
(`"duration": "{{job1.duration}}"` becomes a number); a reference inside longer text is
replaced by the value's text (`"prompt": "a remix of {{job1}}"`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

REF_PATTERN = re.compile(r"\{\{\s*([^{}\s.]+)(?:\.([^{}\s]+))?\s*\}\}")

# The fields of a video result a reference may name, and a sample of each type used to
# type-check params before the real values exist.
RESULT_FIELD_SAMPLES: dict[str, Any] = {
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
    if isinstance(params, str):
        for match in REF_PATTERN.finditer(params):
            yield Reference(path or "params", match.group(1), match.group(2) or "url")
    elif isinstance(params, Mapping):
        for key, value in params.items():
            yield from find_references(value, f"{path}.{key}" if path else str(key))
    elif isinstance(params, list):
        for index, value in enumerate(params):
            yield from find_references(value, f"{path}[{index}]")


def substitute(params: Any, lookup: Callable[[str, str], Any]) -> Any:
    """`params` with every reference replaced by `lookup(node_id, field)`."""
    if isinstance(params, str):
        whole = REF_PATTERN.fullmatch(params.strip())
        if whole:
            return lookup(whole.group(1), whole.group(2) or "url")
        return REF_PATTERN.sub(lambda m: str(lookup(m.group(1), m.group(2) or "url")), params)
    if isinstance(params, Mapping):
        return {key: substitute(value, lookup) for key, value in params.items()}
    if isinstance(params, list):
        return [substitute(value, lookup) for value in params]
    return params


def with_samples(params: Any) -> Any:
    """`params` with references replaced by typed samples, to type-check them before execution."""
    return substitute(params, lambda _node, field: RESULT_FIELD_SAMPLES.get(field, ""))


def with_results(params: Any, results: Mapping[str, Mapping[str, Any]]) -> Any:
    """`params` with references replaced by the upstream results' values."""
    return substitute(params, lambda node, field: results[node][field])
