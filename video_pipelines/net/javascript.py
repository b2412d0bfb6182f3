"""JSON as JavaScript writes it: `js_json(value)` is what `JSON.stringify(JSON.parse(it))` gives back, to the byte.

A receiver in JavaScript that parses a body and stringifies it again (`express.json()`, then an HMAC over
`JSON.stringify(req.body)`, as the seed SDK's backend does) gets back the bytes we signed. So:

- no spaces; text as UTF-8, escaping only what JSON.stringify escapes (`"`, `\\`, control characters, lone
  surrogates), so `é` stays `é` and U+2028 stays raw;
- numbers in ECMAScript's Number::toString form: the shortest digits that round-trip (Python's `repr` finds
  the same ones), `8.0` as `8`, exponents from 1e21 up and below 1e-6 (`1e+21`, `1e-7`), `-0` as `0`; an
  integer past 2**53 as the double JavaScript parses it to;
- object keys in their order, except that array-index keys ("0" to "4294967294") come first in ascending
  order, as JavaScript objects keep them.

Not an RFC 8785 (JCS) library: JCS writes numbers as JavaScript does, but sorts every object's keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from json.encoder import encode_basestring as _quoted
from typing import Final

# Integers JavaScript holds exactly; past them, JSON.parse rounds to a double.
_SAFE_INTEGER: Final = 2**53
_MAX_ARRAY_INDEX: Final = 2**32 - 2
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def js_json(value: object) -> str:
    """`value` (None, bool, int, float, str, lists/tuples, str-keyed mappings) as JSON.stringify writes it;
    ValueError for NaN and infinities (JSON has none), TypeError for anything else."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def js_json_bytes(value: object) -> bytes:
    """`js_json(value)` in UTF-8: a body to send and sign."""
    return js_json(value).encode("utf-8")


def js_number(value: float) -> str:
    """ECMAScript's Number::toString(value) for a finite float."""
    if not math.isfinite(value):
        raise ValueError(f"JSON has no {value}: give a finite number")
    if value == 0:
        return "0"  # and -0.0 too
    text = float.__repr__(value)
    if "e" not in text:
        # 1e-4 <= |value| < 1e16: Python's repr is JavaScript's, but for the '.0' of whole numbers.
        return text.removesuffix(".0")
    sign = "-" if value < 0 else ""
    # value = int(digits) x 10**(n - k): k digits, the decimal point n places after the first.
    decimals = Decimal(text.lstrip("-")).normalize().as_tuple()
    digits = "".join(map(str, decimals.digits))
    k = len(digits)
    n = int(decimals.exponent) + k
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if -6 < n <= 0:
        return f"{sign}0.{'0' * -n}{digits}"
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{mantissa}e{'+' if n > 0 else '-'}{abs(n - 1)}"


def _string(text: str) -> str:
    written = _quoted(text)
    if text.isascii() or _SURROGATE.search(text) is None:
        return written
    # Python writes surrogates raw. A pair becomes its character, as in a JavaScript string; a lone one is escaped,
    # as JSON.stringify does.
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _SURROGATE.sub(lambda lone: f"\\u{ord(lone.group()):04x}", _quoted(joined))


def _is_array_index(key: str) -> bool:
    return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) <= _MAX_ARRAY_INDEX


def _items(mapping: Mapping[object, object]) -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    indexed = False
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys are text, got {key!r}")
        indexed = indexed or key[:1].isdigit()
        items.append((key, item))
    if not indexed or not any(_is_array_index(key) for key, _ in items):
        return items
    indexes = sorted((item for item in items if _is_array_index(item[0])), key=lambda item: int(item[0]))
    return indexes + [item for item in items if not _is_array_index(item[0])]


def _integer(value: int) -> str:
    if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
        return int.__repr__(value)
    try:
        return js_number(float(value))
    except OverflowError:
        raise ValueError(f"{value} is past the largest double: JavaScript would read it as Infinity") from None


def _write(value: object, parts: list[str]) -> None:
    if isinstance(value, str):
        parts.append(_string(value))
    elif value is None or isinstance(value, bool):
        parts.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, float):
        parts.append(js_number(value))
    elif isinstance(value, int):
        parts.append(_integer(value))
    elif isinstance(value, Mapping):
        separator = "{"
        for key, item in _items(value):
            parts += (separator, _string(key), ":")
            _write(item, parts)
            separator = ","
        parts.append("}" if separator == "," else "{}")
    elif isinstance(value, list | tuple):
        separator = "["
        for item in value:
            parts.append(separator)
            _write(item, parts)
            separator = ","
        parts.append("]" if separator == "," else "[]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON: give text, numbers, booleans, None, lists or mappings")
