"""The request URL and its normal form, for DPoP's htu (oauth_shield._urls)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield._urls import MAX_URL_LENGTH, normalize_url, request_url

# --- normalize_url: RFC 3986 §6.2.2 and §6.2.3 ----------------------------------------------

SAME = [
    # (spelling, normal form)
    ("https://api.test/items", "https://api.test/items"),
    ("HTTPS://API.Test/items", "https://api.test/items"),  # scheme and host case
    ("https://api.test:443/items", "https://api.test/items"),  # default port
    ("http://api.test:80/items", "http://api.test/items"),
    ("https://api.test:0443/items", "https://api.test/items"),  # a port is a number
    ("https://api.test:/items", "https://api.test/items"),  # empty port (§3.2.3)
    ("https://api.test", "https://api.test/"),  # empty path is "/"
    ("https://api.test?x=1", "https://api.test/"),
    ("https://api.test/items?page=2#top", "https://api.test/items"),  # query and fragment
    ("https://api.test/items#frag?not-a-query", "https://api.test/items"),
    ("https://api.test/%7Euser", "https://api.test/~user"),  # unreserved decoded
    ("https://api.test/%41%2d%5F%2e%30", "https://api.test/A-_.0"),
    ("https://api.test/a%2fb", "https://api.test/a%2Fb"),  # reserved kept, hex upper case
    ("https://api.test/caf%c3%a9", "https://api.test/caf%C3%A9"),
    ("https://api.test/a/./b", "https://api.test/a/b"),  # dot segments (§5.2.4)
    ("https://api.test/a/b/../c", "https://api.test/a/c"),
    ("https://api.test/a/b/..", "https://api.test/a/"),
    ("https://api.test/a/b/.", "https://api.test/a/b/"),
    ("https://api.test/../../a", "https://api.test/a"),
    ("https://api.test/a//../b", "https://api.test/a/b"),
    ("https://api.test/a/%2E%2E/b", "https://api.test/b"),  # encoded dots are dots
    ("https://api.test/a/.%2e/b", "https://api.test/b"),
    ("https://api.test/a/..b/c", "https://api.test/a/..b/c"),  # not a dot segment
    ("https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"),
    ("https://[::1]:8443/x", "https://[::1]:8443/x"),
    ("https://api.test/{a}|b", "https://api.test/%7Ba%7D%7Cb"),  # as a browser encodes them
]

DIFFERENT = [
    # (a, b): distinct resources, whatever the spelling
    ("https://api.test/items", "https://api.test/items/"),  # trailing slash
    ("https://api.test/items", "https://api.test/Items"),  # path case
    ("https://api.test/items", "http://api.test/items"),  # scheme
    ("https://api.test/items", "https://api.test:8443/items"),  # port
    ("https://api.test:80/items", "https://api.test/items"),  # http's port on https
    ("https://api.test/items", "https://api.test./items"),  # trailing dot in the host
    ("https://api.test/a/b", "https://api.test/a%2Fb"),  # an encoded slash is not a slash
    ("https://api.test/items", "https://api.test.evil/items"),
    ("https://api.test/items", "https://evil.test/items"),
    ("https://api.test/a%20b", "https://api.test/a+b"),
]

NOT_URLS = [
    "",
    "/items",
    "api.test/items",
    "//api.test/items",
    "ftp://api.test/items",
    "javascript://api.test/%0aalert(1)",
    "https://user@api.test/items",  # RFC 9110 §4.2.4: no userinfo
    "https://user:pw@api.test/items",
    "https://api.test@evil.test/items",
    "https:///items",  # no host
    "https://api.test:99999/items",
    "https://api.test:x/items",
    "https://api.test:443:443/items",
    "https://api%2etest/items",
    "https://[::1/items",
    "https://[::1]x/items",
    "https://api.test/a b",  # whitespace and controls: urlsplit would drop some silently
    "https://api.test/a\tb",
    "https://api.test/a\nb",
    " https://api.test/items",
    "https://api.test/items\r",
    "https://api.test/%zz",
    "https://api.test/%4",
    "https://api.test/café",
    "https://bücher.test/items",
    "https://api.test/" + "a" * MAX_URL_LENGTH,
]


@pytest.mark.parametrize(("spelling", "normal"), SAME)
def test_spellings_of_one_url(spelling: str, normal: str) -> None:
    assert normalize_url(spelling) == normal
    assert normalize_url(normal) == normal


@pytest.mark.parametrize(("first", "second"), DIFFERENT)
def test_different_urls_stay_different(first: str, second: str) -> None:
    assert normalize_url(first) is not None
    assert normalize_url(first) != normalize_url(second)


@pytest.mark.parametrize("text", NOT_URLS)
def test_what_is_not_an_http_url(text: str) -> None:
    assert normalize_url(text) is None


@pytest.mark.parametrize("value", [None, b"https://api.test/", 42, ["https://api.test/"]])
def test_only_text(value: Any) -> None:
    assert normalize_url(value) is None


_SEGMENT = st.text(
    alphabet=st.sampled_from("abcAB09-._~!$&'()*+,;=:@%/"), min_size=0, max_size=12
).map(lambda s: s.replace("%", "%25"))


@given(st.sampled_from(["http", "HTTPS", "https"]), st.sampled_from(["a.test", "A.Test"]), _SEGMENT)
def test_normal_forms_are_fixed_points(scheme: str, host: str, path: str) -> None:
    first = normalize_url(f"{scheme}://{host}/{path}")
    assert first is not None
    assert normalize_url(first) == first
    assert "/./" not in first and "/../" not in first


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
def test_encoding_unreserved_characters_changes_nothing(text: str) -> None:
    plain = "https://api.test/" + quote(text, safe="/")
    encoded = "https://api.test/" + quote(text, safe="/").replace("-", "%2d").replace("~", "%7E")
    assert normalize_url(plain) == normalize_url(encoded)


@given(st.text(max_size=60))
def test_never_raises(text: str) -> None:
    result = normalize_url(text)
    assert result is None or result.startswith(("http://", "https://"))


# --- request_url: where the client sent the request -------------------------------------------


def url(**kw: Any) -> str | None:
    kw.setdefault("scheme", "http")
    kw.setdefault("host", "api.test")
    kw.setdefault("path", b"/items")
    return request_url(**kw)


def test_from_the_host_header_and_the_connection() -> None:
    assert url() == "http://api.test/items"
    assert url(scheme="https", host="API.test:443", path=b"/a/../items?x=1") == (
        "https://api.test/items"
    )
    assert url(path="/items") == "http://api.test/items"
    assert url(path=b"/caf\xc3\xa9") == "http://api.test/caf%C3%A9"  # raw bytes, as sent
    assert url(path="/caf\xc3\xa9") == "http://api.test/caf%C3%A9"  # WSGI: bytes as Latin-1
    assert url(path=b"/a%2fb") == "http://api.test/a%2Fb"


@pytest.mark.parametrize(
    "host", [None, "", "api.test/evil", "evil.test?", "evil@api.test", "api.test#", "a b", "é.test"]
)
def test_a_host_that_cannot_be_placed(host: str | None) -> None:
    assert url(host=host) is None


def test_forwarded_headers_are_ignored_unless_trusted() -> None:
    spoofed = [
        ("X-Forwarded-Host", "evil.test"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "8443"),
        ("X-Forwarded-Prefix", "/evil"),
        ("Forwarded", "host=evil.test;proto=https"),
    ]
    assert url(headers=spoofed) == "http://api.test/items"


def test_x_forwarded_from_the_trusted_proxy() -> None:
    headers = [
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"public.test"),
        (b"x-forwarded-prefix", b"/api/"),
    ]
    assert url(headers=headers, forwarded="x-forwarded") == "https://public.test/api/items"
    port = [("X-Forwarded-Host", "public.test"), ("X-Forwarded-Port", "8443")]
    assert url(headers=port, forwarded="x-forwarded") == "http://public.test:8443/items"
    assert url(headers=[], forwarded="x-forwarded") == "http://api.test/items"


def test_only_the_value_the_trusted_proxy_appended_counts() -> None:
    # A client sent its own X-Forwarded-Host; the proxy appended the real one (on another
    # line or after a comma). With one trusted hop, the rightmost value wins.
    for headers in (
        [("X-Forwarded-Host", "evil.test"), ("X-Forwarded-Host", "public.test")],
        [("X-Forwarded-Host", "evil.test, public.test")],
    ):
        assert url(headers=headers, forwarded="x-forwarded") == "http://public.test/items"
    two = [("X-Forwarded-Host", "evil.test, public.test, inner.test")]
    assert url(headers=two, forwarded="x-forwarded", hops=2) == "http://public.test/items"
    # Fewer values than trusted proxies: none of them is trusted (Werkzeug's ProxyFix).
    assert url(headers=two, forwarded="x-forwarded", hops=4) == "http://api.test/items"


def test_rfc_7239_forwarded() -> None:
    value = 'for=192.0.2.1;host=evil.test, for="[2001:db8::1]";proto=https;host="public.test:8443"'
    assert url(headers=[("Forwarded", value)], forwarded="forwarded") == (
        "https://public.test:8443/items"
    )
    assert url(headers=[("Forwarded", value)], forwarded="forwarded", hops=2) == (
        "http://evil.test/items"
    )
    assert url(headers=[("X-Forwarded-Host", "x.test")], forwarded="forwarded") == (
        "http://api.test/items"
    )
    for malformed in ("host", "host=a.test;;", 'host="a.test', "host=a.test proto=https", "=x"):
        assert url(headers=[("Forwarded", malformed)], forwarded="forwarded") is None


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-Host", "evil.test/path")],
        [("X-Forwarded-Host", "user@evil.test")],
        [("X-Forwarded-Proto", "javascript")],
        [("X-Forwarded-Prefix", "no-slash")],
        [("X-Forwarded-Prefix", "/a?b")],
    ],
)
def test_trusted_values_that_cannot_be_placed(headers: list[tuple[str, str]]) -> None:
    assert url(headers=headers, forwarded="x-forwarded") is None


def test_root_path() -> None:
    # A proxy stripped /api and the server was told (uvicorn --root-path /api).
    assert url(path=b"/items", root_path="/api") == "http://api.test/api/items"
    # The wire path already holds it (a mount inside the app, or a proxy that does not strip).
    assert url(path=b"/api/items", root_path="/api") == "http://api.test/api/items"
    assert url(path=b"/api", root_path="/api") == "http://api.test/api"
    assert url(path=b"/apix/items", root_path="/api") == "http://api.test/api/apix/items"


def test_an_explicit_public_url_wins() -> None:
    spoofed = [("X-Forwarded-Host", "evil.test")]
    base = "https://Public.test:443/base/"
    assert url(public_url=base, headers=spoofed, forwarded="x-forwarded", root_path="/r") == (
        "https://public.test/base/items"
    )
    assert url(public_url="https://public.test", host=None) == "https://public.test/items"
    assert url(public_url="not a url") is None
