"""Strict JSON at trust boundaries (oauth_shield._json)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield._json import MAX_DEPTH, parse_object


def nested_objects(levels: int, leaf: bytes = b"1") -> bytes:
    """``levels`` objects inside each other, the root included."""
    return b'{"a":' * levels + leaf + b"}" * levels


def nested_arrays(levels: int) -> bytes:
    """One root object holding ``levels - 1`` nested arrays."""
    return b'{"a":' + b"[" * (levels - 1) + b"1" + b"]" * (levels - 1) + b"}"


REJECTED = {
    # duplicate member names, compared after unescaping (RFC 8725 §3.7)
    "duplicate": b'{"a":1,"a":2}',
    "duplicate-escaped-name": b'{"a":1,"\\u0061":2}',
    "duplicate-both-escaped": b'{"\\u0061":1,"\\u0061":2}',
    "duplicate-nested": b'{"x":{"b":1,"b":2}}',
    "duplicate-in-array": b'{"x":[{"b":1,"b":2}]}',
    # non-finite and overflowing numbers
    "nan": b'{"a":NaN}',
    "infinity": b'{"a":Infinity}',
    "minus-infinity": b'{"a":-Infinity}',
    "1e999": b'{"a":1e999}',
    "-1e999": b'{"a":-1e999}',
    "huge-int": b'{"a":' + b"9" * 5000 + b"}",
    "huge-negative-int": b'{"a":-' + b"1" * 4400 + b"}",
    # encodings other than UTF-8 (RFC 8259 §8.1)
    "utf8-bom": b'\xef\xbb\xbf{"a":1}',
    "utf16-bom": '{"a":1}'.encode("utf-16"),
    "utf16-le": '{"a":1}'.encode("utf-16-le"),
    "utf16-be": '{"a":1}'.encode("utf-16-be"),
    "utf32-bom": '{"a":1}'.encode("utf-32"),
    "utf32-le": '{"a":1}'.encode("utf-32-le"),
    "utf32-be": '{"a":1}'.encode("utf-32-be"),
    "bom-after-whitespace": b' \xef\xbb\xbf{"a":1}',
    "invalid-utf8": b'{"a":"\xff"}',
    "truncated-utf8": b'{"a":"\xc3"}',
    "overlong-utf8": b'{"a":"\xc0\xaf"}',
    "cesu8-surrogate": b'{"a":"\xed\xa0\x80"}',
    "cesu8-pair": b'{"a":"\xed\xa0\xbd\xed\xb8\x80"}',
    # escaped lone surrogates (legal JSON, not Unicode)
    "lone-high-surrogate": b'{"a":"\\ud800"}',
    "lone-low-surrogate": b'{"a":"\\udc00"}',
    "lone-surrogate-uppercase": b'{"a":"\\uDBFF"}',
    "reversed-pair": b'{"a":"\\ude00\\ud83d"}',
    "high-then-text": b'{"a":"\\ud83dx"}',
    "lone-surrogate-in-name": b'{"\\ud800":1}',
    "lone-surrogate-nested": b'{"a":[{"b":"\\udfff"}]}',
    # depth
    "objects-beyond-max-depth": nested_objects(MAX_DEPTH + 1),
    "arrays-beyond-max-depth": nested_arrays(MAX_DEPTH + 1),
    "very-deep-objects": nested_objects(100_000),
    "very-deep-arrays": nested_arrays(100_000),
    "unclosed-deep": b"[" * 100_000,
    # framing
    "trailing-data": b'{"a":1}x',
    "two-objects": b'{"a":1}{"b":2}',
    "trailing-nul": b'{"a":1}\x00',
    "trailing-comma": b'{"a":1,}',
    "form-feed-whitespace": b'\x0c{"a":1}',
    "nbsp-whitespace": b'\xc2\xa0{"a":1}',
    "comment": b'{"a":1/*x*/}',
    "single-quotes": b"{'a':1}",
    "leading-zero": b'{"a":01}',
    "raw-control-char": b'{"a":"x\x01y"}',
    "raw-newline-in-string": b'{"a":"x\ny"}',
    "raw-tab-in-string": b'{"a":"x\ty"}',
    "empty": b"",
    "whitespace-only": b" \n",
    # top levels that are not objects
    "array": b"[]",
    "string": b'"a"',
    "number": b"1",
    "null": b"null",
    "true": b"true",
}

ACCEPTED: dict[str, tuple[bytes, dict[str, Any]]] = {
    "empty-object": (b"{}", {}),
    "surrounding-whitespace": (b' \t\r\n{"a":1} \t\r\n', {"a": 1}),
    "escaped-surrogate-pair": (b'{"a":"\\ud83d\\ude00"}', {"a": "\U0001f600"}),
    "escaped-pair-uppercase": (b'{"a":"\\uD83D\\uDE00"}', {"a": "\U0001f600"}),
    "raw-utf8": ('{"a":"caf\u00e9 \U0001f600"}'.encode(), {"a": "caf\u00e9 \U0001f600"}),
    "escaped-backslash-not-surrogate": (b'{"a":"\\\\ud800"}', {"a": "\\ud800"}),
    "different-names": (b'{"a":1,"A":2,"\\u0062":3}', {"a": 1, "A": 2, "b": 3}),
    "same-name-different-objects": (b'{"x":{"a":1},"y":{"a":2}}', {"x": {"a": 1}, "y": {"a": 2}}),
    "large-finite-float": (b'{"a":1e308}', {"a": 1e308}),
    "negative-zero": (b'{"a":-0}', {"a": 0}),
    "literals": (b'{"t":true,"f":false,"n":null}', {"t": True, "f": False, "n": None}),
    "objects-at-max-depth": (nested_objects(MAX_DEPTH), json.loads(nested_objects(MAX_DEPTH))),
    "arrays-at-max-depth": (nested_arrays(MAX_DEPTH), json.loads(nested_arrays(MAX_DEPTH))),
    "brackets-in-strings-are-not-depth": (
        b'{"a":"' + b"[{" * 100 + b'"}',
        {"a": "[{" * 100},
    ),
}


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
def test_rejected(data: bytes) -> None:
    assert parse_object(data) is None


@pytest.mark.parametrize(("data", "expected"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted(data: bytes, expected: dict[str, Any]) -> None:
    assert parse_object(data) == expected


def test_max_depth_is_a_parameter() -> None:
    assert parse_object(nested_objects(3), max_depth=3) is not None
    assert parse_object(nested_objects(4), max_depth=3) is None


def test_python_json_is_lenient_where_parse_object_is_not() -> None:
    # The cases above matter because the standard library would take them.
    assert json.loads(REJECTED["duplicate"]) == {"a": 2}
    assert json.loads(REJECTED["utf16-bom"]) == {"a": 1}
    assert json.loads(REJECTED["lone-high-surrogate"]) == {"a": "\ud800"}


@given(st.binary())
def test_never_raises_for_bytes(data: bytes) -> None:
    result = parse_object(data)
    assert result is None or type(result) is dict


_JSONISH = st.text(alphabet='{}[]":,0123456789.eE+-\\u tnrfalsNIyd8 \x00\xe9')


@given(st.text() | _JSONISH)
def test_never_raises_for_text(text: str) -> None:
    result = parse_object(text.encode("utf-8"))
    assert result is None or type(result) is dict


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), _VALUES))
def test_round_trip(document: dict[str, Any]) -> None:
    assert parse_object(json.dumps(document).encode()) == document
    assert parse_object(json.dumps(document, ensure_ascii=False).encode()) == document
