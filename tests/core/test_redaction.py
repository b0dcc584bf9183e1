"""oauth_shield.logging: what the redaction filter masks, where, and how records survive it."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from oauth_shield import Secret
from oauth_shield._token import text_fingerprint
from oauth_shield.logging import (
    RedactedError,
    RedactingFilter,
    StructlogRedactor,
    install,
    mask,
    uninstall,
)
from oauth_shield.testing import LocalIssuer

JWT = LocalIssuer().token()
OPAQUE = "2YotnFZFEjr1zCsicMWpAA"
SECRET = "client-s3cr3t-value"


@pytest.fixture
def redacting() -> RedactingFilter:
    return RedactingFilter(secrets=[SECRET, Secret("another-registered-secret")])


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer [redacted:", JWT),
        (f"authorization: bearer {OPAQUE}", "bearer [redacted:", OPAQUE),
        (f"doubled: Bearer Bearer {OPAQUE}", "Bearer Bearer [redacted:", OPAQUE),
        (f"sent DPoP {OPAQUE} upstream", "sent DPoP [redacted:", OPAQUE),  # RFC 9449's scheme
        ("the DPoP proof and the DPoP-Nonce header", "the DPoP proof and the DPoP-Nonce", None),
        (f"Bearer Cookie: sid={OPAQUE}; x=1", "Bearer Cookie: [redacted:", OPAQUE),
        (f"Bearer access_token={OPAQUE}&x=1", "Bearer access_token=[redacted:", OPAQUE),
        (
            f"{{'Authorization': 'Bearer {OPAQUE}', 'Accept': 'text/html'}}",
            "'Accept': 'text/html'",
            OPAQUE,
        ),
        (f'{{"authorization": "Bearer {OPAQUE}"}}', '"authorization": "Bearer [redacted:', OPAQUE),
        (
            f"[(b'authorization', b'Bearer {OPAQUE}'), (b'host', b'api')]",
            "(b'host', b'api')",
            OPAQUE,
        ),
        (
            f"{{'HTTP_AUTHORIZATION': 'Bearer {OPAQUE}', 'PATH_INFO': '/'}}",
            "'PATH_INFO': '/'",
            OPAQUE,
        ),
        (
            "Proxy-Authorization: Basic dXNlcjpwYXNz",
            "Proxy-Authorization: Basic [redacted:",
            "dXNlcjpwYXNz",
        ),
        ("Cookie: session=abc123; theme=dark", "Cookie: [redacted:", "abc123"),
        ("Set-Cookie: sid=abc123; HttpOnly", "Set-Cookie: [redacted:", "abc123"),
        ("X-API-Key: osk_abcdefghij_" + "a" * 43, "X-API-Key: [redacted:", "a" * 43),
        (f"GET /items?access_token={OPAQUE}&page=2 HTTP/1.1", "&page=2 HTTP/1.1", OPAQUE),
        (f"token={OPAQUE}&token_type_hint=access_token", "token_type_hint=access_token", OPAQUE),
        ("grant_type=client_credentials&client_secret=abc&scope=read", "&scope=read", "=abc&"),
        (f"refresh_token={OPAQUE}", "refresh_token=[redacted:", OPAQUE),
        (f"subject_token={OPAQUE}&audience=x", "&audience=x", OPAQUE),
        ("password=hunter2 user=bob", "user=bob", "hunter2"),
        (f"a raw jwt {JWT} in prose", "a raw jwt [redacted:", JWT),
        ("a raw jwe eyJhbGciOiJkaXIifQ..aXY.Y2lwaGVy.dGFn here", " here", "Y2lwaGVy"),
        ("an api key osk_abcdefghij_" + "B" * 43 + " alone", " alone", "B" * 43),
        (f"the secret {SECRET} registered", " registered", SECRET),
        ("and another-registered-secret too", " too", "another-registered-secret"),
        ("nothing secret here: token_type_hint=access_token", "nothing secret here", None),
    ],
)
def test_patterns(redacting: RedactingFilter, text: str, kept: str, gone: str | None) -> None:
    out = redacting.redact(text)
    assert kept in out
    if gone is None:
        assert out == text
    else:
        assert gone not in out


def test_the_mask_keeps_the_token_fingerprint_the_validator_logs(
    redacting: RedactingFilter,
) -> None:
    assert redacting.redact(f"Bearer {JWT}") == f"Bearer [redacted:{text_fingerprint(JWT)}]"
    assert mask(JWT) == f"[redacted:{text_fingerprint(JWT)}]"


@pytest.mark.parametrize(
    "text",
    [f"client_secret={SECRET}", f"Authorization: Basic {SECRET}", f"X-API-Key: {SECRET}"],
)
def test_a_registered_secret_is_masked_once(redacting: RedactingFilter, text: str) -> None:
    assert redacting.redact(text) == text.replace(SECRET, mask(SECRET))


def record(
    msg: object, *args: object, exc: BaseException | None = None, **extra: object
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    made = logging.LogRecord("test", logging.INFO, __file__, 1, msg, args or None, exc_info)
    made.__dict__.update(extra)
    return made


def rendered(item: logging.LogRecord) -> str:
    formatter = logging.Formatter("%(message)s")
    return formatter.format(item) + repr(
        {k: v for k, v in item.__dict__.items() if k.startswith("x_")}
    )


def test_a_token_split_across_arguments(redacting: RedactingFilter) -> None:
    item = record("Authorization: %s %s", "Bearer", OPAQUE)
    redacting.filter(item)
    assert OPAQUE not in rendered(item)
    assert item.getMessage().startswith("Authorization: Bearer [redacted:")


def test_a_message_without_secrets_keeps_its_arguments(redacting: RedactingFilter) -> None:
    item = record("user %s did %d things", "alice", 3)
    redacting.filter(item)
    assert (item.msg, item.args) == ("user %s did %d things", ("alice", 3))


def test_arguments_keep_their_shape(redacting: RedactingFilter) -> None:
    # uvicorn's access line: a 5-tuple its AccessFormatter unpacks, the status an int.
    item = record('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", f"/x?token={OPAQUE}", "1.1", 401)
    redacting.filter(item)
    assert item.msg == '%s - "%s %s HTTP/%s" %d'
    assert item.args == ("1.2.3.4:5", "GET", f"/x?token={mask(OPAQUE)}", "1.1", 401)


def test_a_secret_split_across_arguments_is_masked_in_the_arguments_that_hold_it(
    redacting: RedactingFilter,
) -> None:
    item = record("Authorization: %s %s", "Bearer", OPAQUE)
    redacting.filter(item)
    assert item.args == ("Bearer", mask(OPAQUE))  # the token's own fingerprint
    header, payload, signature = JWT.split(".")
    item = record("token %s.%s.%s seen", header, payload, signature)
    redacting.filter(item)
    assert item.getMessage() == f"token {mask(JWT)} seen"
    assert isinstance(item.args, tuple) and len(item.args) == 3
    assert not any(part in repr(item.args) for part in (header, payload, signature))


def test_a_secret_in_the_format_itself(redacting: RedactingFilter) -> None:
    item = record(f"Bearer {OPAQUE} for %s (%d%%)", "alice", 50)
    redacting.filter(item)
    assert item.getMessage() == f"Bearer {mask(OPAQUE)} for alice (50%)"
    assert item.args == ("alice", 50)


def test_a_mapping_argument_stays_the_same_kind_of_mapping(redacting: RedactingFilter) -> None:
    class Atoms(dict[str, object]):  # like gunicorn's SafeAtoms: read case-insensitively
        def __getitem__(self, key: str) -> object:
            return super().get(key.lower(), "-")

    atoms = Atoms({"r": f"GET /?access_token={OPAQUE}", "{authorization}i": f"Bearer {OPAQUE}"})
    atoms["{cookie}i"], atoms["n"] = "sid=1", 3
    item = record('"%(r)s" %({Authorization}i)s %(missing)s %(n)d', atoms)
    redacting.filter(item)
    assert type(item.args) is Atoms and item.args is not atoms
    assert item.args.keys() == atoms.keys()
    assert item.args["{cookie}i"] == mask("sid=1")  # a sensitive name: masked whole
    assert item.getMessage() == f'"GET /?access_token={mask(OPAQUE)}" Bearer {mask(OPAQUE)} - 3'
    assert atoms["r"] == f"GET /?access_token={OPAQUE}"  # the caller's dict is left alone


def test_a_dict_message_stays_a_dict(redacting: RedactingFilter) -> None:
    item = record({"event": "call", "headers": {"Authorization": f"Bearer {OPAQUE}"}, "n": 2})
    redacting.filter(item)
    assert item.msg == {
        "event": "call",
        "headers": {"Authorization": f"Bearer {mask(OPAQUE)}"},
        "n": 2,
    }


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        ("%s %s", ("only one",)),
        ("%d", (f"Bearer {OPAQUE}",)),
        ("%(a)s", ({"b": f"Bearer {OPAQUE}"},)),
    ],
)
def test_a_broken_format_is_shown_masked_and_never_raises(
    redacting: RedactingFilter, msg: str, args: tuple[object, ...]
) -> None:
    item = record(msg, *args)
    redacting.filter(item)
    assert OPAQUE not in item.getMessage() + repr(item.args)


def test_objects_are_kept_unless_their_text_shows_a_secret(redacting: RedactingFilter) -> None:
    class Request:
        def __init__(self, query: str) -> None:
            self.query = query

        def __repr__(self) -> str:
            return f"<Request ?{self.query}>"

    plain, carrying = Request("page=2"), Request(f"access_token={OPAQUE}")
    item = record("%s %r", plain, carrying, x_logger=logging.getLogger("x"), x_request=carrying)
    redacting.filter(item)
    assert item.args[0] is plain and item.x_logger is logging.getLogger("x")  # type: ignore[index]
    assert item.getMessage() == redacting.redact(f"<Request ?page=2> {carrying!r}")
    assert isinstance(item.x_request, str)  # type: ignore[attr-defined]
    assert OPAQUE not in str(item.x_request) + repr(item.x_request)  # type: ignore[attr-defined]
    assert repr(item.x_request).startswith("<Request ?access_token=[redacted:")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "extra",
    [
        {"x_headers": {"Authorization": f"Bearer {OPAQUE}", "Accept": "*/*"}},
        {"x_raw": f"Bearer {OPAQUE}".encode()},
        {"x_pairs": [(b"authorization", f"Bearer {OPAQUE}".encode())]},
        {"x_token": OPAQUE},
        {"x_nested": {"request": {"query": f"access_token={OPAQUE}"}}},
        {"x_object": type("Req", (), {"__str__": lambda self: f"<Req Bearer {OPAQUE}>"})()},
    ],
    ids=["dict", "bytes", "header-pairs", "sensitive-name", "nested", "object"],
)
def test_extra_fields(redacting: RedactingFilter, extra: dict[str, object]) -> None:
    item = record("request", **extra)
    redacting.filter(item)
    assert OPAQUE not in rendered(item)


def test_bytes_arguments(redacting: RedactingFilter) -> None:
    item = record("raw %r", f"Authorization: Bearer {OPAQUE}".encode())
    redacting.filter(item)
    assert OPAQUE not in rendered(item)


def test_exception_text_is_masked_and_the_exception_replaced(redacting: RedactingFilter) -> None:
    try:
        raise KeyError(f"Bearer {OPAQUE}")
    except KeyError as error:
        item = record("failed", exc=error)
    redacting.filter(item)
    # The structured exception still holds the token: a stand-in carries the masked traceback,
    # for formatters that render exc_info themselves.
    assert item.exc_info is not None and item.exc_info[0] is RedactedError
    assert str(item.exc_info[1]) == item.exc_text and item.exc_info[2] is None
    assert "KeyError" in item.exc_text and OPAQUE not in item.exc_text  # type: ignore[operator]
    formatter = logging.Formatter()
    assert OPAQUE not in formatter.format(item) and "KeyError: 'Bearer [redacted:" in item.exc_text
    assert OPAQUE not in formatter.formatException(item.exc_info)


def test_an_exception_without_secrets_is_kept(redacting: RedactingFilter) -> None:
    error = ValueError("just broken")
    item = record("failed", exc=error)
    redacting.filter(item)
    assert item.exc_info is not None and item.exc_info[1] is error


def test_structlog_processor(redacting: RedactingFilter) -> None:
    processor = StructlogRedactor(redacting)
    event = processor(
        None, "info", {"event": f"call with Bearer {OPAQUE}", "headers": {"cookie": "a=b"}, "n": 3}
    )
    assert OPAQUE not in repr(event)
    assert event["headers"]["cookie"].startswith("[redacted:")
    assert event["n"] == 3


def test_structlog_processor_keeps_every_shape(redacting: RedactingFilter) -> None:
    processor = StructlogRedactor(redacting)
    item = record("GET %s", f"/x?access_token={OPAQUE}")
    try:
        raise KeyError(f"Bearer {OPAQUE}")
    except KeyError as error:
        caught = error
        # Before format_exc_info: exc_info=True is resolved now, while the exception is current.
        event = processor(None, "error", {"event": "x", "exc_info": True, "_record": item})
    assert event["exc_info"][0] is RedactedError and event["_record"] is item
    assert item.args == (f"/x?access_token={mask(OPAQUE)}",)
    rendered = structlog.processors.format_exc_info(None, "error", dict(event))
    assert "KeyError: 'Bearer [redacted:" in rendered["exception"]
    assert OPAQUE not in rendered["exception"]
    assert isinstance(processor(None, "error", {"exc_info": caught})["exc_info"], RedactedError)
    try:
        raise ValueError("nothing secret")
    except ValueError:
        assert processor(None, "error", {"exc_info": True})["exc_info"] is True


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(max_size=40),
    token=st.from_regex(r"[A-Za-z0-9\-._~+/]{8,60}", fullmatch=True),
    after=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40).filter(
        lambda s: not s[:1].isalnum() and s[:1] not in "-._~+/="
    ),
    scheme=st.sampled_from(["Bearer ", "bearer ", "BEARER   "]),
)
def test_any_bearer_token_in_any_text_is_masked(
    before: str, token: str, after: str, scheme: str
) -> None:
    out = RedactingFilter().redact(f"{before} {scheme}{token}{after}")
    assert token not in out.replace(mask(token), "")


# --- install() -------------------------------------------------------------------------------


@pytest.fixture
def installed() -> Iterator[RedactingFilter]:
    try:
        yield install(secrets=[SECRET])
    finally:
        uninstall()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_install_masks_loggers_configured_before_and_after(installed: RedactingFilter) -> None:
    early = Collect()
    logging.getLogger("uvicorn.access").addHandler(early)
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    logging.getLogger("uvicorn.access").info("GET /items?access_token=%s", OPAQUE)
    assert early.lines and OPAQUE not in early.lines[0]
    # A server (re)configures logging after install(): the record factory still masks.
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"late": {"class": "logging.NullHandler"}},
            "loggers": {"late.server": {"handlers": ["late"], "level": "INFO"}},
        }
    )
    late = Collect()
    logging.getLogger("late.server").addHandler(late)
    logging.getLogger("late.server").info("with secret %s", SECRET)
    assert late.lines == [f"with secret {mask(SECRET)}"]
    logging.getLogger("uvicorn.access").removeHandler(early)
    logging.getLogger("late.server").removeHandler(late)


def test_install_twice_adds_secrets_to_the_same_filter(installed: RedactingFilter) -> None:
    again = install(secrets=["second-secret-value"])
    assert again is installed
    assert "second-secret-value" not in again.redact("x second-secret-value y")
    assert logging.getLogger().handlers  # pytest's own, at least
    assert all(installed in handler.filters for handler in logging.getLogger().handlers)


def test_uninstall_restores_the_record_factory() -> None:
    before = logging.getLogRecordFactory()
    install()
    assert logging.getLogRecordFactory() is not before
    uninstall()
    assert logging.getLogRecordFactory() is before
