"""split_folded: a WSGI server joins repeated Authorization headers with commas (RFC 9110
§5.3); the adapters take them apart again, so WSGI and ASGI see the same credentials."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield.http import split_folded

b64token = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,40}=*", fullmatch=True)
scheme = st.sampled_from(["Bearer", "bearer", "Basic", "DPoP", "Negotiate"])
credential = st.builds(lambda s, t: f"{s} {t}", scheme, b64token)


@given(st.lists(credential, min_size=1, max_size=4), st.sampled_from([",", ", ", " ,  "]))
def test_folded_credentials_come_apart(credentials: list[str], separator: str) -> None:
    assert split_folded(separator.join(credentials)) == credentials


@pytest.mark.parametrize(
    "value",
    [
        'Digest username="u", realm="a, Bearer b", nonce="n"',
        "Digest a = 1, b=2",
        'Custom p="x\\", Bearer y"',
    ],
)
def test_one_credential_with_commas_stays_whole(value: str) -> None:
    assert split_folded(value) == [value]


def test_a_comma_inside_a_bearer_token_is_a_second_credential() -> None:
    assert split_folded("Bearer a,b") == ["Bearer a", "b"]
