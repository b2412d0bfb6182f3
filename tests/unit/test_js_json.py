"""JSON as JavaScript writes it, checked against fixed vectors and against Node itself (tests/node/stringify.mjs):
thousands of doubles from random bits and random documents must come back from JSON.stringify byte for byte."""

from __future__ import annotations

import json
import math
import random
import struct
import subprocess
from typing import Any

import pytest

from video_pipelines.net.javascript import js_json, js_json_bytes, js_number

from ..node import HERE, node_executable

# ECMAScript's Number::toString, with RFC 8785's appendix B vectors (JCS writes numbers as JavaScript does).
NUMBERS = [
    (8.0, "8"),
    (-0.0, "0"),
    (-1.5, "-1.5"),
    (0.1 + 0.2, "0.30000000000000004"),
    (1e20, "100000000000000000000"),
    (1e21, "1e+21"),
    (1e-6, "0.000001"),
    (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"),
    (123e-20, "1.23e-18"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (9.999999999999997e22, "9.999999999999997e+22"),
    (1e23, "1e+23"),
    (999999999999999700000.0, "999999999999999700000"),
    (999999999999999900000.0, "999999999999999900000"),
    (9.999999999999997e-7, "9.999999999999997e-7"),
    (333333333.3333332, "333333333.3333332"),
    (333333333.33333343, "333333333.33333343"),
    (9007199254740991.0, "9007199254740991"),
    (-9007199254740992.0, "-9007199254740992"),
    (295147905179352830000.0, "295147905179352830000"),
]


@pytest.mark.parametrize(("number", "written"), NUMBERS)
def test_numbers_as_javascript_writes_them(number: float, written: str) -> None:
    assert js_number(number) == written == js_json(number)


def test_integers_past_2_53_are_the_double_javascript_parses_them_to() -> None:
    assert js_json([0, -7, 2**53, 2**53 + 1, 2**60, -(2**64)]) == (
        "[0,-7,9007199254740992,9007199254740992,1152921504606847000,-18446744073709552000]"
    )
    with pytest.raises(ValueError, match="Infinity"):
        js_json(10**400)


def test_text_is_utf8_escaping_only_what_json_stringify_escapes() -> None:
    text = 'é « Zoë » 日本語 😀 \u2028\u2029 \x00\x01\x1f\x7f "\\/ </script>'
    written = js_json(text)
    assert written == '"é « Zoë » 日本語 😀 \u2028\u2029 \\u0000\\u0001\\u001f\x7f \\"\\\\/ </script>"'
    assert js_json_bytes(text) == written.encode("utf-8")
    # A lone surrogate is escaped (well-formed JSON.stringify); a pair held as two code points is its character.
    assert js_json("a\ud800b\udfff") == '"a\\ud800b\\udfff"'
    assert js_json("\ud83d\ude00") == '"😀"'


def test_keys_keep_their_order_except_array_indexes_first_ascending() -> None:
    keys = {"b": 1, "2": 2, "a": 3, "10": 4, "1": 5, "01": 6, "-1": 7, "4294967295": 8, "4294967294": 9, "\u0661": 10}
    assert js_json(keys) == ('{"1":5,"2":2,"10":4,"4294967294":9,"b":1,"a":3,"01":6,"-1":7,"4294967295":8,"\u0661":10}')
    assert js_json({"z": {"y": [1.0, None, True, False, (), {}]}}) == '{"z":{"y":[1,null,true,false,[],{}]}}'


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (math.nan, ValueError, "finite"),
        ([math.inf], ValueError, "finite"),
        ({1: "a"}, TypeError, "keys are text"),
        ({"a": {1, 2}}, TypeError, "set is not JSON"),
        (b"bytes", TypeError, "bytes is not JSON"),
    ],
)
def test_what_json_cannot_hold_is_refused(value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        js_json(value)


# --- against Node ------------------------------------------------------------------------------------------------

SEED = 20261207


def _random_double(rng: random.Random) -> float:
    while True:
        (number,) = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))
        if math.isfinite(number):
            return float(number)


def _random_text(rng: random.Random) -> str:
    pools = [
        "abc09 _-",
        '"\\/\b\f\n\r\t\x00\x1f\x7f',
        "éüß«»—",
        "日本語",
        "😀🎬",
        "\u2028\u2029\ufeff",
        "\ud800\udbff\udc00",
    ]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randrange(0, 12)))


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([rng.randrange(-(10**6), 10**6), rng.getrandbits(70) - 2**69, float(rng.randrange(1000))])
    if kind == 2:
        return _random_double(rng)
    if kind == 3:
        return round(rng.uniform(-1e4, 1e4), rng.randrange(0, 6)) * 10.0 ** rng.randrange(-12, 24)
    if kind in (4, 5):
        return _random_text(rng)
    if kind in (6, 7):
        keys = [rng.choice([_random_text(rng), str(rng.randrange(0, 40)), f"0{rng.randrange(9)}"]) for _ in range(5)]
        return {key: _random_value(rng, depth + 1) for key in keys}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]


def test_thousands_of_doubles_and_documents_come_back_from_node_byte_for_byte() -> None:
    rng = random.Random(SEED)
    doubles = [_random_double(rng) for _ in range(20000)] + [number for number, _ in NUMBERS]
    doubles += [rng.randrange(1, 10**6) / 10 ** rng.randrange(0, 12) for _ in range(5000)]
    documents = [js_json(_random_value(rng)) for _ in range(2000)]
    given = {"bits": [struct.pack(">d", number).hex() for number in doubles], "texts": documents}
    done = subprocess.run(
        [node_executable(), str(HERE / "stringify.mjs")],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        check=True,
        encoding="utf-8",
    )
    node = json.loads(done.stdout)
    ours = js_json(doubles)
    mismatched = [
        (number, mine, theirs)
        for number, mine, theirs in zip(doubles, ours[1:-1].split(","), node["numbers"][1:-1].split(","), strict=True)
        if mine != theirs
    ]
    assert mismatched == []
    assert [theirs for theirs in node["texts"] if theirs not in documents] == []
    assert node["texts"] == documents
