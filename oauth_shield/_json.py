"""Strict JSON for everything that crosses a trust boundary (RFC 8259 §8.1, RFC 8725 §3.7).

Python's ``json`` is lenient where an attacker can exploit it: it sniffs UTF-16/32 from bytes,
lets the last of several duplicate members win, accepts ``NaN`` and ``Infinity``, turns
``1e999`` into ``inf`` and happily returns lone surrogates. This module closes each door.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from collections.abc import Callable
from typing import Any, cast

#: JWT headers and claims, key sets and metadata are shallow; 32 levels is far beyond any of them.
MAX_DEPTH = 32


class _Rejected(ValueError):
    pass


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Compared after unescaping, so "a" and "\u0061" count as the same name.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Rejected
    return obj


def _no_constant(name: str) -> Any:
    raise _Rejected


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Rejected
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_members, parse_constant=_no_constant, parse_float=_finite_float
)
# The C scanner behind json.loads, called directly: it skips two Python-level wrappers.
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
_WHITESPACE = " \t\n\r"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _within_depth(root: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        children = node.values() if isinstance(node, dict) else cast(list[object], node)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def parse_object(data: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any] | None:
    """Decode ``data`` as one strict JSON object, or return ``None`` if it is anything else.

    Returns instead of raising so that callers raise their own error outside any ``except``
    block: no decoder exception, which can hold the input, ever rides along as ``__context__``.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return None
    try:
        text = data.decode("utf-8")
        start = len(text) - len(text.lstrip(_WHITESPACE))
        obj, end = _scan(text, start)
    except (ValueError, RecursionError, StopIteration):
        return None
    if type(obj) is not dict or (end != len(text) and text[end:].strip(_WHITESPACE)):
        return None
    # Counting brackets is cheap and bounds the depth whenever there are few of them.
    if text.count("{") + text.count("[") > max_depth and not _within_depth(obj, max_depth):
        return None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and not _encodable(obj):
        return None
    return obj


def _encodable(obj: object) -> bool:
    """False if any string holds a lone surrogate (legal in JSON escapes, not in UTF-8)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
