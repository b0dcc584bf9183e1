"""An identity provider as a resource server meets it: documents at URLs, tokens as it signs
them. Each test module builds its provider's metadata, key set and tokens in the shapes that
provider documents (the module's docstring says where), and validates them through the
preset of ``oauth_shield.providers``."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from oauth_shield import AuthError, Reason, TokenValidator
from oauth_shield.testing import SigningKey
from tests.conftest import NOW, FrozenClock


class Site(httpx.MockTransport):
    """Serves JSON ``documents`` by URL (without query); counts every request by URL."""

    def __init__(self, documents: dict[str, Any]) -> None:
        self.documents = documents
        self.seen: Counter[str] = Counter()
        super().__init__(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url.copy_with(query=None))
        self.seen[url] += 1
        if url not in self.documents:
            return httpx.Response(404, json={"error": "not_found"})
        return httpx.Response(200, json=self.documents[url])


def public(key: SigningKey, **members: Any) -> dict[str, Any]:
    """The public JWK of ``key`` with ``members`` (a provider's own: x5t, x5c...); a member
    set to ``None`` is left out (Entra publishes no ``alg``)."""
    jwk = {name: key.jwk[name] for name in ("kty", "n", "e", "crv", "x", "y") if name in key.jwk}
    jwk |= {"kid": key.kid, "use": "sig", "alg": key.alg, **members}
    return {name: value for name, value in jwk.items() if value is not None}


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey("RS256", kid="preset-rs256")


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    """Another RSA key: an encryption key in a key set, a stranger's signing key."""
    return SigningKey("RS256", kid="preset-other")


Build = Callable[..., TokenValidator]


@pytest.fixture
async def build(clock: FrozenClock) -> AsyncIterator[Build]:
    """``build(options, site, **more)``: a validator from a preset's options, on ``site``."""
    made: list[TokenValidator] = []

    def make(options: dict[str, Any], site: Site, **more: Any) -> TokenValidator:
        validator = TokenValidator(**{**options, **more}, transport=site, clock=clock)
        made.append(validator)
        return validator

    yield make
    for validator in made:
        await validator.aclose()


async def reason_for(validator: TokenValidator, token: str, scopes: Any = None) -> Reason | None:
    """Validate; ``None`` if accepted, else the refusal's reason (only AuthError may escape)."""
    try:
        await validator.validate(token, scopes)
    except AuthError as error:
        return error.reason
    return None


def times(**changes: Any) -> dict[str, Any]:
    """iat/nbf/exp around the frozen clock's now, as providers set them."""
    now = int(NOW)
    return {"iat": now - 60, "nbf": now - 60, "exp": now + 3540, **changes}
