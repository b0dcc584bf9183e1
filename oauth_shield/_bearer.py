"""Bearer credentials as RFC 6750 defines them (pure)."""

from __future__ import annotations

import re

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def is_b64token(value: str) -> bool:
    """Whether ``value`` could be a bearer token at all (RFC 6750 §2.1 ``b64token``)."""
    return _B64TOKEN.fullmatch(value) is not None
