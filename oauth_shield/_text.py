"""Configured values as text: list settings given as one string, and values quoted in messages.

Below ``_config`` so that the modules that check one kind of setting (claim paths, issuers)
quote and split values exactly as ``_config`` does, without importing it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._errors import ConfigurationError

#: A configured value is quoted in a message up to this length: enough to recognise it.
MAX_SHOWN = 120

# Userinfo ends at the last "@": a password may hold "@", "/", "?" or "#" (unencoded, as
# users write them); masking too much of a URL that is only quoted is the safe error.
_USERINFO = re.compile(r"//.*@", re.DOTALL)
_LIST_SEPARATORS = re.compile(r"[\s,]+")


def without_credentials(url: str) -> str:
    """``url`` without its userinfo and query, either of which may hold a secret."""
    url = _USERINFO.sub("//***@", url)
    return url[: url.index("?")] + "?..." if "?" in url else url


def shown(value: object) -> str:
    """``value`` as a message may quote it: a string without credentials or query (they may be
    secret), escaped and bounded; any other value by its type."""
    if not isinstance(value, str):
        return f"(a {type(value).__name__})"
    text = without_credentials(value)
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + "..."
    return repr(text)


def split_list(text: str) -> list[str]:
    """A list setting given as one string: items separated by commas and/or whitespace.

    The same rule for a keyword argument and an ``OAUTH_SHIELD_*`` key, so that
    ``audience="a b"`` means what ``OAUTH_SHIELD_AUDIENCE="a b"`` means. Audiences, algorithm
    names and field names never contain spaces; an audience with a comma (legal in a URI) can
    be given as one item of a list.
    """
    return [item for item in _LIST_SEPARATORS.split(text) if item]


def json_setting(text: str, field: str, kind: type, what: str) -> Any:
    """A setting given as JSON text (an ``OAUTH_SHIELD_*`` string): parsed, of type ``kind``,
    or a :class:`ConfigurationError` naming ``field`` and ``what`` it should be."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, kind):
        raise ConfigurationError(f"{field} is not {what}: {shown(text)}", field=field)
    return parsed
