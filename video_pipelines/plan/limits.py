"""How large and how deep a plan may be, the same at every door (SPEC section 8, "Input limits").

Text is scanned before `json.loads`: json recurses (RecursionError near 1,000 levels) and refuses
integers over 4,300 digits with a bare ValueError; orjson caps depth at 1,024 and floats big integers.
NUL is refused: PostgreSQL text cannot store it.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from collections.abc import Iterator, Mapping
from itertools import accumulate
from typing import Any

from video_pipelines.errors import UsageError

MAX_NODES_ENV = "VIDEO_PIPELINES_MAX_NODES"
DEFAULT_MAX_NODES = 500
MAX_VALUE_DEPTH = 32
# A valid plan nests its params 3 levels down (plan, jobs, job): room for a params-depth problem
# to be reported as such (422) before the text itself is refused (400).
MAX_JSON_DEPTH = 64
# JSON numbers of a plan are durations, seeds and dollars: nothing real comes near 100 characters.
MAX_NUMBER_CHARS = 100
_TOO_MANY_DIGITS = 10**MAX_NUMBER_CHARS

# A JSON string, to the end of the text when it is not closed.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
# A string, a bracket or a run of number characters; the rest (`,`, `:`, spaces, literals) is skipped.
_JSON_TOKEN = re.compile(rf"{_JSON_STRING.pattern}|[\[{{]|[\]}}]|[-+.0-9eE]+", re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_NUMBER = re.compile(rf"[-+.0-9eE]{{{MAX_NUMBER_CHARS + 1},}}")
# Brackets as signed bytes: +1 opens, -1 closes; the running sum is the depth.
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def max_nodes(environ: Mapping[str, str] | None = None) -> int:
    """The most jobs a plan may have: `VIDEO_PIPELINES_MAX_NODES` (a whole number >= 1), default 500."""
    raw = (os.environ if environ is None else environ).get(MAX_NODES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_NODES
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"{MAX_NODES_ENV} must be a whole number of jobs (1 or more), got {raw!r}")
    return int(raw)


def check_json_text(text: str) -> None:
    """Raise json.JSONDecodeError where `text` nests too deep or has a number too long (at json's speed:
    strings cut out, depth a running sum in C; only a failing text is tokenised)."""
    outside = _JSON_STRING.sub(" ", text)
    steps = array("b", _NOT_BRACKET.sub("", outside).encode().translate(_BRACKET_STEPS))
    if max(accumulate(steps), default=0) > MAX_JSON_DEPTH or _LONG_NUMBER.search(outside):
        _raise_where_beyond(text)


def _raise_where_beyond(text: str) -> None:
    """The JSONDecodeError of the first limit `text` breaks (none for `1"a"2`-like text json refuses anyway)."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        first = match.group()[0]
        if first in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise json.JSONDecodeError(
                    f"arrays and objects nested deeper than {MAX_JSON_DEPTH} levels (the limit)", text, match.start()
                )
        elif first in "]}":
            depth -= 1
        elif first != '"' and match.end() - match.start() > MAX_NUMBER_CHARS:
            raise json.JSONDecodeError(
                f"a number longer than {MAX_NUMBER_CHARS} characters (the limit)", text, match.start()
            )


def loads_bounded(document: str | bytes) -> Any:
    text = document.decode(json.detect_encoding(document), "surrogatepass") if isinstance(document, bytes) else document
    check_json_text(text)
    return json.loads(text)


def walk(value: Any, path: str = "", *, max_depth: int | None = None) -> Iterator[tuple[str, Any, int]]:
    """(path, value, depth) of `value` and everything in it, in order, without recursion; `max_depth` not entered."""
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        where, current, depth = stack.pop()
        yield where, current, depth
        if depth == max_depth:
            continue
        if isinstance(current, Mapping):
            items = [(f"{where}.{key}" if where else str(key), item) for key, item in current.items()]
        elif isinstance(current, list):
            items = [(f"{where}[{index}]", item) for index, item in enumerate(current)]
        else:
            continue
        stack.extend((child, item, depth + 1) for child, item in reversed(items))


def value_problems(value: Any, where: str) -> list[str]:
    """What breaks this module's limits in the value of plan field `where` (e.g. `job1.params`)."""
    problems: list[str] = []
    for path, item, depth in walk(value, where, max_depth=MAX_VALUE_DEPTH):
        if isinstance(item, Mapping | list) and depth == MAX_VALUE_DEPTH:
            limit = MAX_VALUE_DEPTH
            return [f"{where}: nested more than {limit} levels deep (objects and lists); the limit is {limit}"]
        if isinstance(item, Mapping):
            problems.extend(
                f"{path}: the key {key!r} holds a NUL character (\\u0000), which no text of a plan may"
                for key in item
                if isinstance(key, str) and "\x00" in key
            )
        elif isinstance(item, str) and "\x00" in item:
            problems.append(f"{path}: holds a NUL character (\\u0000), which no text of a plan may")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= _TOO_MANY_DIGITS:
            problems.append(f"{path}: a number of more than {MAX_NUMBER_CHARS} digits (the limit)")
    return problems
