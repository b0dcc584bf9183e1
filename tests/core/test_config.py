"""Settings validation and named defaults (oauth_shield._config), through ``Settings`` and the
``TokenValidator`` constructor alike (constructing one does no I/O)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oauth_shield import ConfigurationError, TokenValidator
from oauth_shield import _config as config
from oauth_shield._config import Settings
from tests.conftest import AUDIENCE, ISSUER

Factory = Callable[..., object]
FACTORIES = [pytest.param(Settings, id="Settings"), pytest.param(TokenValidator, id="Validator")]


def build(factory: Factory, **overrides: Any) -> Any:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, **overrides}
    return factory(**options)


def refused(factory: Factory, field: str, **overrides: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as raised:
        build(factory, **overrides)
    assert str(raised.value).startswith(field), str(raised.value)
    return raised.value


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(
    "issuer",
    [
        "https://issuer.test",
        "https://issuer.test/",
        "https://issuer.test/tenant/v2.0",
        "https://issuer.test:8443/realms/x",
        "http://localhost",
        "http://localhost:8080/realms/x",
        "http://127.0.0.1:9000",
        "http://127.5.6.7",
        "http://[::1]:8080",
    ],
)
def test_issuers_accepted(factory: Factory, issuer: str) -> None:
    assert build(factory, issuer=issuer) is not None


ISSUERS_REFUSED = {
    "http-remote": "http://issuer.test",
    "http-lookalike-localhost": "http://localhost.evil.test",
    "http-trailing-dot": "http://localhost.",
    "http-unspecified": "http://0.0.0.0",
    "ftp": "ftp://issuer.test",
    "no-scheme": "issuer.test",
    "scheme-relative": "//issuer.test",
    "no-host": "https://",
    "no-host-path": "https:///path",
    "opaque": "https:issuer.test",
    "query": "https://issuer.test?tenant=1",
    "fragment": "https://issuer.test#x",
    "fragment-after-path": "https://issuer.test/#x",
    "userinfo": "https://user@issuer.test",
    "userinfo-password": "https://user:pw@issuer.test",
    "empty-userinfo": "https://:@issuer.test",
    "bad-port": "https://issuer.test:99999",
    "non-numeric-port": "https://issuer.test:abc",
    "bad-ipv6": "https://[::1",
    "empty": "",
    "none": None,
    "bytes": b"https://issuer.test",
    "empty-list": [],
    "list-with-a-bad-one": [ISSUER, "http://issuer.test"],
    "list-of-bytes": [b"https://issuer.test"],
    "json-array-not-closed": '["https://issuer.test"',
    "json-array-of-numbers": "[1]",
}


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("issuer", ISSUERS_REFUSED.values(), ids=ISSUERS_REFUSED.keys())
def test_issuers_refused(factory: Factory, issuer: object) -> None:
    refused(factory, "issuer", issuer=issuer)


@pytest.mark.parametrize(
    "issuer",
    ["https://issuer.test\n", " https://issuer.test", "https://issuer .test",
     "https://issuer.test\t/x", "https://issuer.test/\x00"],
    ids=repr,
)  # fmt: skip
def test_issuers_with_whitespace_or_controls_refused(issuer: str) -> None:
    refused(Settings, "issuer", issuer=issuer)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(
    ("audience", "expected"),
    [(AUDIENCE, (AUDIENCE,)), ([AUDIENCE, "b"], (AUDIENCE, "b")), (("a",), ("a",))],
    ids=["string", "list", "tuple"],
)
def test_audience_normalised(factory: Factory, audience: Any, expected: tuple[str, ...]) -> None:
    made = build(factory, audience=audience)
    assert (made if factory is Settings else made.settings).audience == expected


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(
    "audience",
    ["", [], [""], [AUDIENCE, ""], [AUDIENCE, 1], [None], None, 1, b"api", [b"api"]],
    ids=repr,
)
def test_audience_refused(factory: Factory, audience: object) -> None:
    refused(factory, "audience", audience=audience)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(
    "algorithms",
    [["HS256"], ["HS384"], ["HS512"], ["hs256"], ["Hs256"], ["none"], ["NONE"], ["None"],
     ["RS256", "HS256"], "HS256", "none"],
    ids=repr,
)  # fmt: skip
def test_algorithms_that_can_never_be_enabled(factory: Factory, algorithms: Any) -> None:
    error = refused(factory, "algorithms", algorithms=algorithms)
    assert "can never be enabled" in str(error)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(
    "algorithms",
    [["RS1"], ["ES256K"], ["rs256"], ["RS256 "], ["A256GCM"], ["RSA-OAEP"], ["dir"]],
    ids=repr,
)
def test_unknown_algorithms(factory: Factory, algorithms: Any) -> None:
    error = refused(factory, "algorithms", algorithms=algorithms)
    assert "not supported" in str(error)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("algorithms", [[], "", [1], None, 256], ids=repr)
def test_malformed_algorithms(factory: Factory, algorithms: Any) -> None:
    refused(factory, "algorithms", algorithms=algorithms)


def test_algorithms_normalised() -> None:
    assert Settings(issuer=ISSUER, audience="a", algorithms="ES256").algorithms == {"ES256"}
    assert Settings(issuer=ISSUER, audience="a", algorithms=["ES256", "ES256"]).algorithms == {
        "ES256"
    }
    everything = Settings(issuer=ISSUER, audience="a", algorithms=config.SUPPORTED_ALGORITHMS)
    assert everything.algorithms == config.SUPPORTED_ALGORITHMS


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(
    "leeway", [-1, -0.001, 300.001, 301, math.nan, math.inf, True, False, "30", None], ids=repr
)
def test_leeway_refused(factory: Factory, leeway: object) -> None:
    refused(factory, "leeway", leeway=leeway)


@pytest.mark.parametrize("leeway", [0, 0.5, 30, 300])
def test_leeway_accepted(leeway: float) -> None:
    made = build(Settings, leeway=leeway)
    assert made.leeway == leeway
    assert type(made.leeway) is float


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(
    "jwks_uri",
    ["http://issuer.test/jwks", "ftp://issuer.test/jwks", "https://", "/jwks", "",
     "https://u:p@issuer.test/jwks", "https://issuer.test/jwks#x", 1],
    ids=repr,
)  # fmt: skip
def test_jwks_uri_refused(factory: Factory, jwks_uri: object) -> None:
    refused(factory, "jwks_uri", jwks_uri=jwks_uri)


def test_jwks_uri_accepted() -> None:
    assert build(Settings, jwks_uri="http://127.0.0.1:8000/jwks").jwks_uri is not None
    assert build(Settings, jwks_uri="https://keys.test/jwks?v=2").jwks_uri is not None


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("profile", ["RFC9068", "JWT", "", None, "rfc7519", ["jwt"]], ids=repr)
def test_profile_refused(factory: Factory, profile: object) -> None:
    refused(factory, "profile", profile=profile)


TUNING_REFUSED = [
    ("max_token_size", 255), ("max_token_size", 1000.0), ("max_token_size", True),
    ("max_token_size", "8192"), ("max_token_size", None),
    ("jwks_ttl", 0.5), ("jwks_ttl", 0), ("jwks_ttl", math.inf), ("jwks_ttl", math.nan),
    ("jwks_ttl", True), ("jwks_ttl", "300"),
    ("jwks_cooldown", -1), ("jwks_cooldown", math.nan), ("jwks_cooldown", None),
    ("jwks_max_stale", -1), ("jwks_max_stale", math.inf),
    ("http_timeout", 0), ("http_timeout", 0.001), ("http_timeout", 300.5), ("http_timeout", -1),
    ("http_timeout", False),
    ("max_response_bytes", 1023), ("max_response_bytes", 2048.0), ("max_response_bytes", False),
    ("verified_cache_size", -1), ("verified_cache_size", 1.5), ("verified_cache_size", True),
]  # fmt: skip


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize(
    ("field", "value"), TUNING_REFUSED, ids=[f"{f}={v!r}" for f, v in TUNING_REFUSED]
)
def test_tuning_fields_refused(factory: Factory, field: str, value: object) -> None:
    refused(factory, field, **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_token_size", 256), ("jwks_ttl", 1), ("jwks_cooldown", 0), ("jwks_max_stale", 0),
     ("http_timeout", 0.01), ("http_timeout", 300), ("max_response_bytes", 1024),
     ("verified_cache_size", 0)],
)  # fmt: skip
def test_tuning_fields_at_their_bounds(field: str, value: float) -> None:
    assert getattr(build(Settings, **{field: value}), field) == value


def test_defaults() -> None:
    settings = Settings(issuer=ISSUER, audience=AUDIENCE)
    assert settings.algorithms == frozenset(config.DEFAULT_ALGORITHMS)
    assert settings.algorithms == {"RS256", "PS256", "ES256", "EdDSA"}
    assert settings.leeway == config.DEFAULT_LEEWAY == 30.0
    assert settings.jwks_uri is None
    assert settings.profile == "rfc9068"
    assert settings.max_token_size == config.DEFAULT_MAX_TOKEN_SIZE == 8192
    assert settings.jwks_ttl == config.DEFAULT_JWKS_TTL == 300.0
    assert settings.jwks_cooldown == config.DEFAULT_JWKS_COOLDOWN == 30.0
    assert settings.jwks_max_stale == config.DEFAULT_JWKS_MAX_STALE == 86400.0
    assert settings.http_timeout == config.DEFAULT_HTTP_TIMEOUT == 5.0
    assert settings.max_response_bytes == config.DEFAULT_MAX_RESPONSE_BYTES == 256 * 1024
    assert settings.verified_cache_size == config.DEFAULT_VERIFIED_CACHE_SIZE == 10_000
    assert config.MAX_LEEWAY == 300.0


def test_validator_uses_the_same_defaults() -> None:
    assert TokenValidator(issuer=ISSUER, audience=AUDIENCE).settings == Settings(
        issuer=ISSUER, audience=AUDIENCE
    )


def test_supported_algorithms_are_asymmetric_only() -> None:
    assert set(config.DEFAULT_ALGORITHMS) <= config.SUPPORTED_ALGORITHMS
    for name in config.SUPPORTED_ALGORITHMS:
        assert name[:2] in ("RS", "PS", "ES", "Ed"), name


def test_settings_are_frozen() -> None:
    settings = Settings(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(AttributeError):
        settings.issuer = "https://evil.test"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.255.255.254", True), ("::1", True),
     ("LOCALHOST", False), ("localhost.", False), ("0.0.0.0", False), ("::", False),
     ("10.0.0.1", False), ("example.test", False), ("", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert config.is_loopback(host) is loopback


@pytest.mark.parametrize(
    "options",
    [
        {"introspect_all": "false"},
        {"insecure_http": "yes"},
        {"introspect_all": 1},
        {"client_id": "rs", "client_secret": "s", "introspection_rate": 0},
        {"introspection_requester_share": 0},
        {"introspection_requester_share": 1.5},
        {"introspection_requester_share": "0.5"},
        {"introspection_requester_share": math.nan},
        {"introspection_requester_share": True},
    ],
)
def test_flags_are_booleans_and_rates_positive(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(issuer=ISSUER, audience=(AUDIENCE,), **options)  # type: ignore[arg-type]


def test_an_unknown_prefixed_key_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    from oauth_shield import TokenValidator
    from oauth_shield._options import options_from

    config = {"OAUTH_SHIELD_ISSUER": ISSUER, "OAUTH_SHIELD_AUDEINCE": "typo", "OTHER_KEY": "x"}
    with caplog.at_level("WARNING", logger="oauth_shield.config"):
        options_from(config, TokenValidator)
        options_from(config, TokenValidator)
    said = [r.getMessage() for r in caplog.records]
    assert said == ["OAUTH_SHIELD_AUDEINCE is not an oauth_shield setting; it is ignored"]


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"redis_url": "redis://127.0.0.1:1/0", "cache": object()}, "not both"),
        ({"redis_url": "http://127.0.0.1:6379"}, "redis:// or rediss://"),
        (
            {"redis_url": "redis://:pw@127.0.0.1:abc/0"},
            r"^redis_url is not a valid Redis URL; given 'redis://\*\*\*@127.0.0.1:abc/0'$",
        ),
        ({"redis_url": "redis://[::1/0"}, "not a valid Redis URL"),
        ({"redis_url": "redis://127.0.0.1/x"}, "not a valid Redis URL"),
        ({"cache_secret": "s"}, "needs a shared cache"),
        (
            {"redis_url": "redis://127.0.0.1:1/0", "cache_secret": "s", "cache_secret_file": "f"},
            "not both",
        ),
    ],
)
def test_shared_cache_settings_refused(options: dict[str, object], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        TokenValidator(issuer=ISSUER, audience=AUDIENCE, **options)  # type: ignore[arg-type]


# --- URLs are checked by the parser that will request them -----------------------------------

UNPARSABLE = ["https://999.1.1.1/x", "https://xn--zz.example/x"]


@pytest.mark.parametrize("field", ["issuer", "jwks_uri", "introspection_endpoint"])
@pytest.mark.parametrize("url", UNPARSABLE)
def test_configured_urls_httpx_cannot_parse_are_refused_at_construction(
    field: str, url: str
) -> None:
    """They pass urllib's checks, so Settings alone takes them; the validator parses them as
    httpx will (before: accepted, then httpx.InvalidURL or IDNAError escaped validate())."""
    options: dict[str, Any] = {field: url}
    if field == "introspection_endpoint":
        options |= {"client_id": "rs", "client_secret": "s"}
    error = refused(TokenValidator, field, **options)
    assert "is not a URL httpx can request" in str(error)
    assert repr(url) in str(error)
    assert error.field == field


@pytest.mark.parametrize("url", UNPARSABLE)
def test_a_token_endpoint_httpx_cannot_parse_is_refused(url: str) -> None:
    from oauth_shield.downstream import ClientCredentialsAuth

    with pytest.raises(ConfigurationError, match=r"^token_endpoint is not a URL httpx"):
        ClientCredentialsAuth(token_endpoint=url, client_id="c", client_secret="s")


# --- refusals name the value given and the setting as the user named it ----------------------


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ("https:///path", "issuer has no host; given 'https:///path'"),
        ("issuer.test", "issuer must be an https URL; given 'issuer.test'"),
        ("https://user:pw@issuer.test", "issuer must not carry credentials; given "
         "'https://***@issuer.test'"),
        ("https://issuer.test?tenant=1", "issuer must not have a query (RFC 8414 §2); given "
         "'https://issuer.test?...'"),
        (42, "issuer must be a string; given (a int)"),
        ("http://issuer.test", "issuer must use https; plain http is allowed on loopback only, "
         "or anywhere with insecure_http=True (development networks only); given "
         "'http://issuer.test'"),
    ],
)  # fmt: skip
def test_a_refused_issuer_is_named(issuer: object, message: str) -> None:
    error = refused(TokenValidator, "issuer", issuer=issuer)
    assert str(error) == message
    assert "pw" not in str(error)


def from_env(environ: dict[str, str], **overrides: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as raised:
        TokenValidator.from_env(environ, **overrides)
    return raised.value


ENV = {"OAUTH_SHIELD_ISSUER": ISSUER, "OAUTH_SHIELD_AUDIENCE": AUDIENCE}


def test_the_environment_user_is_told_the_keys() -> None:
    error = from_env({**ENV, "OAUTH_SHIELD_ISSUER": "http://issuer.test"})
    assert str(error) == (
        "OAUTH_SHIELD_ISSUER must use https; plain http is allowed on loopback only, or "
        "anywhere with OAUTH_SHIELD_INSECURE_HTTP=true (development networks only); given "
        "'http://issuer.test'"
    )
    assert error.field == "OAUTH_SHIELD_ISSUER"


def test_an_override_keeps_its_argument_name() -> None:
    error = from_env({"OAUTH_SHIELD_AUDIENCE": AUDIENCE}, issuer="http://issuer.test")
    assert str(error).startswith("issuer must use https")
    assert "OAUTH_SHIELD_INSECURE_HTTP=true" in str(error)  # still a key: not overridden
    error = from_env({**ENV, "OAUTH_SHIELD_ISSUER": "http://issuer.test"}, insecure_http=False)
    assert str(error).startswith("OAUTH_SHIELD_ISSUER must use https")
    assert "insecure_http=True" in str(error)


@pytest.mark.parametrize("missing", ["OAUTH_SHIELD_ISSUER", "OAUTH_SHIELD_AUDIENCE"])
def test_a_missing_required_key_is_named(missing: str) -> None:
    """Before: a raw TypeError about a keyword argument the user never wrote."""
    environ = {key: value for key, value in ENV.items() if key != missing}
    error = from_env(environ)
    assert str(error).startswith(f"{missing} is not set: ")
    assert error.field == missing


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OAUTH_SHIELD_LEEWAY": "600"}, "OAUTH_SHIELD_LEEWAY must be between 0 and 300, not 600"),
        ({"OAUTH_SHIELD_LEEWAY": "soon"}, "OAUTH_SHIELD_LEEWAY must be a number, not 'soon'"),
        ({"OAUTH_SHIELD_INSECURE_HTTP": "maybe"},
         "OAUTH_SHIELD_INSECURE_HTTP must be a boolean (true/false), not 'maybe'"),
        ({"OAUTH_SHIELD_AUDIENCE": " , "},
         "OAUTH_SHIELD_AUDIENCE must be a non-empty string or list of them, not ' , '"),
        ({"OAUTH_SHIELD_JWKS_URI": "https:///jwks"},
         "OAUTH_SHIELD_JWKS_URI has no host; given 'https:///jwks'"),
        ({"OAUTH_SHIELD_PROFILE": "strict"},
         "OAUTH_SHIELD_PROFILE must be 'rfc9068' or 'jwt', not 'strict'"),
    ],
)  # fmt: skip
def test_invalid_keys_are_named_with_their_values(environ: dict[str, str], message: str) -> None:
    assert str(from_env({**ENV, **environ})) == message


CANARY = "canary-secret-value-0123456789"


@pytest.mark.parametrize(
    "secret", [{"client_secret": CANARY}, {"client_secret_file": "/run/secrets/x"}]
)
def test_a_secret_without_a_client_id_is_refused(secret: dict[str, str]) -> None:
    """Before: accepted silently, and introspection stayed off."""
    error = refused(TokenValidator, "client_secret", **secret)
    if "client_secret_file" in secret:
        assert "cannot read" in str(error)  # the file is read first, and named
        return
    assert str(error) == (
        "client_secret (or client_secret_file) is set, but client_id is not: introspection "
        "needs both; set client_id, or remove the secret"
    )


def test_a_secret_without_a_client_id_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(CANARY)
    for environ in (
        {"OAUTH_SHIELD_CLIENT_SECRET": CANARY},
        {"OAUTH_SHIELD_CLIENT_SECRET_FILE": str(path)},
    ):
        error = from_env({**ENV, **environ})
        assert str(error) == (
            "OAUTH_SHIELD_CLIENT_SECRET (or OAUTH_SHIELD_CLIENT_SECRET_FILE) is set, but "
            "OAUTH_SHIELD_CLIENT_ID is not: introspection needs both; set "
            "OAUTH_SHIELD_CLIENT_ID, or remove the secret"
        )
        assert CANARY not in str(error) and CANARY not in repr(error)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OAUTH_SHIELD_CLIENT_ID": "rs"}, "OAUTH_SHIELD_CLIENT_SECRET (or "
         "OAUTH_SHIELD_CLIENT_SECRET_FILE) is required with OAUTH_SHIELD_CLIENT_ID"),
        ({"OAUTH_SHIELD_INTROSPECT_ALL": "yes"}, "OAUTH_SHIELD_INTROSPECT_ALL is set, but "
         "OAUTH_SHIELD_CLIENT_ID is not: introspection needs OAUTH_SHIELD_CLIENT_ID and "
         "OAUTH_SHIELD_CLIENT_SECRET"),
        ({"OAUTH_SHIELD_CLIENT_ID": "rs", "OAUTH_SHIELD_CLIENT_SECRET": CANARY,
          "OAUTH_SHIELD_CLIENT_SECRET_FILE": "/x"}, "OAUTH_SHIELD_CLIENT_SECRET and "
         "OAUTH_SHIELD_CLIENT_SECRET_FILE are both set; give one of them, not both"),
        ({"OAUTH_SHIELD_CLIENT_ID": "rs", "OAUTH_SHIELD_CLIENT_SECRET_FILE": "/nonexistent/x"},
         "OAUTH_SHIELD_CLIENT_SECRET_FILE: cannot read the secret file '/nonexistent/x'"),
        ({"OAUTH_SHIELD_CLIENT_ID": "rs", "OAUTH_SHIELD_CLIENT_SECRET": ""},
         "OAUTH_SHIELD_CLIENT_SECRET: a secret must be a non-empty string"),
    ],
)  # fmt: skip
def test_introspection_settings_are_named_as_keys(environ: dict[str, str], message: str) -> None:
    error = from_env({**ENV, **environ})
    assert str(error) == message
    assert CANARY not in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://a.test https://b.test", ("https://a.test", "https://b.test")),
        ("https://a.test,https://b.test", ("https://a.test", "https://b.test")),
        (" https://a.test ,\n https://b.test, ", ("https://a.test", "https://b.test")),
        ("api", ("api",)),
    ],
)
def test_an_audience_string_means_the_same_as_argument_and_as_key(
    text: str, expected: tuple[str, ...]
) -> None:
    """Before: ``audience="a b"`` was one audience, ``OAUTH_SHIELD_AUDIENCE="a b"`` two."""
    assert TokenValidator(issuer=ISSUER, audience=text).settings.audience == expected
    env = TokenValidator.from_env({**ENV, "OAUTH_SHIELD_AUDIENCE": text})
    assert env.settings.audience == expected


def test_an_audience_with_a_comma_is_one_item_of_a_list() -> None:
    audience = ["urn:example:a,b"]  # legal in a URI (RFC 3986 sub-delims)
    assert TokenValidator(issuer=ISSUER, audience=audience).settings.audience == (
        "urn:example:a,b",
    )
    config = {**ENV, "OAUTH_SHIELD_AUDIENCE": audience}  # app.config may hold a list
    assert TokenValidator.from_env(config).settings.audience == ("urn:example:a,b",)


def test_other_list_settings_split_the_same_way() -> None:
    made = Settings(issuer=ISSUER, audience="a", algorithms="ES256, RS256")
    assert made.algorithms == {"ES256", "RS256"}


@pytest.mark.parametrize(
    ("share", "rate", "burst", "expected"),
    [
        (config.DEFAULT_INTROSPECTION_REQUESTER_SHARE, 100.0, 200, (25.0, 50)),
        (1, 100.0, 200, (100.0, 200)),
        (0.25, 0.001, 1, (0.00025, 1)),  # at least one token at once
    ],
)
def test_a_requester_gets_its_share_of_the_rate_and_burst(
    share: float, rate: float, burst: int, expected: tuple[float, int]
) -> None:
    settings = Settings(
        issuer=ISSUER,
        audience=(AUDIENCE,),
        introspection_rate=rate,
        introspection_burst=burst,
        introspection_requester_share=share,
    )
    assert settings.requester_rate == expected


@pytest.mark.parametrize(
    "url",
    [
        "redis://default:p@ssw0rd@redis:6379/0",  # an "@" in the password
        "redis://default:pa/ssw0rd@redis:6379/0",  # a "/" in it
        "redis://default:pa#ssw0rd@redis:6379/0",  # a "#" in it
        "redis://:pa?ssw0rd@redis:6379/0",  # a "?" in it
    ],
)
def test_a_quoted_url_never_shows_a_password_whatever_it_holds(url: str) -> None:
    from oauth_shield._text import shown, without_credentials

    for said in (without_credentials(url), shown(url)):
        assert "ssw0rd" not in said and "default" not in said
        assert "redis" in said  # still says what was given
