"""Several issuers through one validator, against real providers: two oidc-provider
processes (two issuers, each with its own keys) configured in one validator, a third one
(the session's provider) not configured; in the validator directly and in every adapter.
Each provider counts the requests it gets, so "zero fetches" is what the issuer saw."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from oauth_shield import Reason, TokenValidator
from oauth_shield.testing import serve_asgi, serve_wsgi
from tests.adapters.apps import FRAMEWORKS
from tests.conftest import refused
from tests.provider import API_AUDIENCE, OIDCProvider

from .conftest import ShiftedClock, mint


def fetched(op: OIDCProvider) -> tuple[int, int]:
    stats = op.stats()
    return stats["discovery"], stats["jwks"]


async def test_one_validator_accepts_each_configured_issuer_and_refuses_another(
    fresh_pair: tuple[OIDCProvider, OIDCProvider], provider: OIDCProvider
) -> None:
    first, second = fresh_pair
    issuers = [first.issuer, second.issuer]
    tokens = mint(first, 20) + mint(second, 20, "client-es256")
    async with TokenValidator(issuer=issuers, audience=API_AUDIENCE) as validator:
        results = await asyncio.gather(*(validator.validate(token) for token in tokens))
        assert [r.claims["iss"] for r in results] == [first.issuer] * 20 + [second.issuer] * 20
        assert (fetched(first), fetched(second)) == ((1, 1), (1, 1))  # each once, at start

        # The session's provider is a real issuer, just not a configured one.
        provider.reset_stats()
        for token in mint(provider, 5) + mint(provider, 5, "client-es256"):
            await refused(validator, token, Reason.ISSUER_MISMATCH)
        assert fetched(provider) == (0, 0)
        assert (fetched(first), fetched(second)) == ((1, 1), (1, 1))


async def test_a_rotation_at_one_issuer_costs_only_its_key_set(
    fresh_pair: tuple[OIDCProvider, OIDCProvider], shifted_clock: ShiftedClock
) -> None:
    first, second = fresh_pair
    shifted_clock.freeze()
    options: dict[str, Any] = {"issuer": [first.issuer, second.issuer], "clock": shifted_clock}
    async with TokenValidator(audience=API_AUDIENCE, **options) as validator:
        await validator.validate(first.token())
        await validator.validate(second.token())
        shifted_clock.advance(1)
        second.rotate_keys()
        assert (await validator.validate(second.token())).claims["iss"] == second.issuer
        assert (fetched(first), fetched(second)) == ((1, 1), (1, 2))


# --- every adapter ----------------------------------------------------------------------------


@pytest.fixture
def apps(fresh_pair: tuple[OIDCProvider, OIDCProvider]) -> Iterator[dict[str, str]]:
    """Each framework's test app, its one validator configured with both issuers."""
    first, second = fresh_pair
    options = {"issuer": [first.issuer, second.issuer], "audience": API_AUDIENCE}
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(
                serve_wsgi(build(**options)) if name == "flask" else serve_asgi(build(**options))
            )
            for name, build in FRAMEWORKS.items()
        }


def test_every_adapter_accepts_both_issuers_through_one_validator(
    apps: dict[str, str],
    fresh_pair: tuple[OIDCProvider, OIDCProvider],
    provider: OIDCProvider,
) -> None:
    first, second = fresh_pair
    good = {
        first.issuer: first.token(scope="read"),
        second.issuer: second.token("client-es256", scope="read"),
    }
    foreign = provider.token(scope="read")
    provider.reset_stats()
    for name, url in apps.items():
        with httpx.Client(base_url=url) as client:
            for token in good.values():
                answer = client.get("/items", headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 200, (name, answer.text)
            refused_answer = client.get("/items", headers={"Authorization": f"Bearer {foreign}"})
            assert refused_answer.status_code == 401, name
            assert 'error="invalid_token"' in refused_answer.headers["WWW-Authenticate"]
    assert fetched(provider) == (0, 0)
