"""Server-provided DPoP nonces without per-client state (RFC 9449 §8, §9; pure: time is an
argument).

A nonce is ``base64url(HMAC-SHA256(secret, label || context || slot)[:16])`` with ``slot =
floor(now / period)``: every client gets the same nonce in a slot, nothing is stored, and every
process that shares the secret issues and accepts the same nonces. A proof's nonce is accepted
when it is the one of the previous, current or next slot: a nonce handed out at the end of a
slot stays usable for at least one more period, and a worker whose clock runs a little ahead
does not make the others refuse its nonces. Without a configured secret, each process draws
its own: nonces are then valid only in the process that issued them.

A nonce only proves that a proof was made after the nonce was issued (RFC 9449 §11.2), which
bounds how long a proof made in advance can be used; it is not a secret and authenticates
nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets

from ._config import check_number
from ._errors import ConfigurationError
from ._jose import b64url_decode
from ._secret import Secret

#: A nonce lives one to two periods: five minutes keeps retries for a new nonce rare while
#: bounding how long a proof made in advance stays usable.
DEFAULT_NONCE_PERIOD = 300.0
#: HMAC-SHA256 keys should be as long as the hash (RFC 2104 §3); oidc-provider asks 32 bytes too.
MIN_SECRET_BYTES = 32
#: 128 bits of MAC: forging one takes 2^128 guesses.
_MAC_BYTES = 16
_NONCE_LENGTH = 22  # base64url of 16 bytes, unpadded
_LABEL = b"oauth_shield DPoP nonce v1\x00"


class NonceIssuer:
    """Issues and accepts the nonces of one resource server (or of all its processes).

    >>> nonces = NonceIssuer(b"0123456789abcdef0123456789abcdef")
    >>> nonces.accepts(nonces.current(1_800_000_000.0), 1_800_000_100.0)
    True
    """

    __slots__ = ("_context", "_key", "_memo", "period", "shared")

    def __init__(
        self,
        secret: Secret | str | bytes | None = None,
        *,
        period: float = DEFAULT_NONCE_PERIOD,
        context: str = "",
    ) -> None:
        self.period = check_number("dpop_nonce_period", period, 1, 86400)
        self.shared = secret is not None  # given, so possibly shared by several processes
        if secret is None:
            key = secrets.token_bytes(MIN_SECRET_BYTES)
        else:
            revealed = secret.reveal() if isinstance(secret, Secret) else secret
            key = revealed.encode() if isinstance(revealed, str) else revealed
            if not isinstance(key, bytes) or len(key) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"dpop_nonce_secret must be at least {MIN_SECRET_BYTES} bytes"
                )
        self._key = key
        # Resource servers sharing a secret still issue distinct nonces (RFC 9449 §9).
        self._context = context.encode() + b"\x00"
        self._memo: tuple[int, tuple[bytes, bytes, bytes]] = (-1, (b"", b"", b""))

    def current(self, now: float) -> str:
        """The nonce to hand out at ``now`` (the ``DPoP-Nonce`` header)."""
        return _b64url(self._macs(now)[1])

    def accepts(self, nonce: object, now: float) -> bool:
        """Whether ``nonce`` (a proof's ``nonce`` claim, any type) is valid at ``now``.

        Compared in constant time with each of the three valid MACs.
        """
        if type(nonce) is not str or len(nonce) != _NONCE_LENGTH or not nonce.isascii():
            return False
        raw = b64url_decode(nonce)
        if raw is None:
            return False
        return sum(hmac.compare_digest(raw, mac) for mac in self._macs(now)) > 0

    def _macs(self, now: float) -> tuple[bytes, bytes, bytes]:
        """The MACs of the previous, current and next slot, computed once per slot."""
        slot = math.floor(now / self.period) if math.isfinite(now) else 0
        memo_slot, macs = self._memo
        if memo_slot != slot:
            macs = (self._mac(slot - 1), self._mac(slot), self._mac(slot + 1))
            self._memo = (slot, macs)  # one tuple, swapped whole: safe across threads
        return macs

    def _mac(self, slot: int) -> bytes:
        message = _LABEL + self._context + (slot % 2**64).to_bytes(8, "big")
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def __repr__(self) -> str:
        return f"NonceIssuer(period={self.period:g}, shared={self.shared})"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
