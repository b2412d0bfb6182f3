"""How large and how deep a plan may be, the same at every door (SPEC section 8, "Input limits").

- A plan has at most `VIDEO_PIPELINES_MAX_NODES` jobs (`max_nodes`, default 500).
- Every value of a plan (a job's `params`, the plan's `webhook`, ...) nests at most
  `MAX_VALUE_DEPTH` (32) levels of objects and lists; no text of it (value or key) holds a
  NUL character, which PostgreSQL's text cannot store; no integer has more than
  `MAX_NUMBER_CHARS` digits. `value_problems` finds all of these in one iterative walk
  that never goes below the deepest level allowed, so a plan 100,000 levels deep (given as
  Python values) is refused, never recursed into.
- Plan text (the HTTP API's body, a plan file) is scanned before `json.loads` reads it
  (`loads_bounded`): arrays and objects nested deeper than `MAX_JSON_DEPTH`, or a number
  longer than `MAX_NUMBER_CHARS`, are a `json.JSONDecodeError` saying where, as malformed
  JSON is.

Why a scan of our own in front of the standard library's json rather than another parser:
json recurses (a RecursionError past about 1,000 levels) and raises a plain ValueError for
an integer of more than 4,300 digits; orjson stops only at a fixed depth of 1,024 and reads
a large integer as a float, changing its value. One linear pass over the text outside its
strings bounds both, at about the cost of json's own pass, and json, whose answers the rest
of the package relies on, reads the text only once it is bounded.
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
    """Raise json.JSONDecodeError where `text` nests deeper than MAX_JSON_DEPTH or has a number too long.

    At the speed of json itself: the strings are cut out and the depth is a running sum in C
    (`itertools.accumulate`); only a text that breaks a limit is read token by token, for where.
    """
    outside = _JSON_STRING.sub(" ", text)
    steps = array("b", _NOT_BRACKET.sub("", outside).encode().translate(_BRACKET_STEPS))
    if max(accumulate(steps), default=0) > MAX_JSON_DEPTH or _LONG_NUMBER.search(outside):
        _raise_where_beyond(text)


def _raise_where_beyond(text: str) -> None:
    """The JSONDecodeError of the first limit `text` breaks, read token by token.

    Raises nothing when only cutting the strings out made it look so (`1"a"2` in invalid JSON): json refuses it.
    """
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
    """`json.loads(document)` once `check_json_text` passed; bytes are decoded as json.loads decodes them.

    Raises json.JSONDecodeError (malformed, too deep, a number too long) or UnicodeDecodeError.
    """
    text = document.decode(json.detect_encoding(document), "surrogatepass") if isinstance(document, bytes) else document
    check_json_text(text)
    return json.loads(text)


def walk(value: Any, path: str = "", *, max_depth: int | None = None) -> Iterator[tuple[str, Any, int]]:
    """(path, value, depth) of `value` and of everything in it, in document order, without recursion.

    Paths read `prompt`, `cues[0].text` (below `path` when given); depth is the number of
    objects and lists around a value (0 for `value` itself). Objects and lists at `max_depth`
    are yielded but not entered.
    """
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
    """What is wrong with the value of the plan field `where` (e.g. `job1.params`) as to this module's limits.

    Nothing below the deepest level allowed is looked at: a value nested too deep is refused for that.
    """
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
