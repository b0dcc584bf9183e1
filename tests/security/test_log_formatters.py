"""The redaction filter changes only secrets: every real formatter still formats every record.

Servers and log libraries read more of a record than its message: uvicorn's ``AccessFormatter``
unpacks ``record.args`` as a 5-tuple, gunicorn's access log formats a dict of atoms, structlog's
stdlib bridge copies a dict ``msg`` and formats ``exc_info`` itself, JSON formatters dump
``args``. With ``install()``, each of them, given a token in a query string, in a header and in
an exception, must write its line (no ``--- Logging error ---``), with the token masked.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from gunicorn.config import Config
from gunicorn.glogging import Logger as GunicornLogger
from hypothesis import given, settings
from hypothesis import strategies as st
from pythonjsonlogger.json import JsonFormatter
from structlog.stdlib import ProcessorFormatter
from uvicorn.logging import AccessFormatter, DefaultFormatter

from oauth_shield import logging as shield_logging
from oauth_shield.logging import RedactingFilter, mask
from oauth_shield.testing import LocalIssuer

JWT = LocalIssuer().token()
OPAQUE = "opq" + secrets.token_urlsafe(24)
SECRET = "cnrysecret" + secrets.token_hex(12)
WINDOW = 8  # no piece of a secret this long may be shown
_MASKS = r"\[redacted:[0-9a-f]{8}\]"


def pieces(value: str) -> set[str]:
    return {value[i : i + WINDOW] for i in range(len(value) - WINDOW + 1)}


SECRET_PIECES = pieces(JWT) | pieces(OPAQUE) | pieces(SECRET)


def shown(text: str) -> set[str]:
    """The pieces of a canary that ``text`` shows."""
    return {piece for piece in SECRET_PIECES if piece in text}


class Strict(logging.StreamHandler[io.StringIO]):
    """A handler that lets a formatter's error escape: logging would print
    ``--- Logging error ---`` and drop the line."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(io.StringIO())
        self.setFormatter(formatter)

    def handleError(self, record: logging.LogRecord) -> None:
        raise  # the formatter's own exception

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def attach() -> Iterator[Callable[[str, logging.Formatter], Strict]]:
    """A strict handler with ``formatter`` on logger ``name``; install() then runs, as a server
    would have it: its handler filter on that handler, and its record factory."""
    added: list[tuple[logging.Logger, Strict, bool]] = []

    def attach(name: str, formatter: logging.Formatter) -> Strict:
        logger, handler = logging.getLogger(name), Strict(formatter)
        added.append((logger, handler, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        shield_logging.install(secrets=[SECRET], loggers=[name])
        return handler

    yield attach
    shield_logging.uninstall()
    for logger, handler, propagate in added:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(logging.NOTSET)


def access_line(logger: logging.Logger, path: str, status: int = 401) -> None:
    """What uvicorn's protocols log for each request (uvicorn/protocols/http/*_impl.py)."""
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", path, "1.1", status)


def fail_with(logger: logging.Logger, message: str) -> None:
    try:
        raise RuntimeError(f"upstream refused Authorization: Bearer {OPAQUE}")
    except RuntimeError:
        logger.exception(message)


RAW_HEADERS = [(b"host", b"api"), (b"authorization", f"Bearer {OPAQUE}".encode())]


# --- uvicorn ----------------------------------------------------------------------------------


def test_uvicorn_access_formatter_writes_a_masked_line(attach: Any) -> None:
    handler = attach(
        "uvicorn.access",
        AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'),
    )
    logger = logging.getLogger("uvicorn.access")
    access_line(logger, f"/items?access_token={OPAQUE}&page=2")
    access_line(logger, f"/items/{JWT}", 200)
    lines = handler.text().splitlines()
    assert lines == [
        f'INFO:     127.0.0.1:50000 - "GET /items?access_token={mask(OPAQUE)}&page=2 HTTP/1.1" '
        "401 Unauthorized",
        f'INFO:     127.0.0.1:50000 - "GET /items/{mask(JWT)} HTTP/1.1" 200 OK',
    ]


def test_uvicorn_default_formatter_masks_headers_and_exceptions(attach: Any) -> None:
    handler = attach("uvicorn.error", DefaultFormatter("%(levelprefix)s %(message)s"))
    logger = logging.getLogger("uvicorn.error")
    logger.debug("ASGI headers %s", RAW_HEADERS, extra={"color_message": "ASGI headers %s"})
    fail_with(logger, "Exception in ASGI application\n")
    text = handler.text()
    assert "(b'authorization', b'Bearer [redacted:" in text and "(b'host', b'api')" in text
    assert "Exception in ASGI application" in text and "RuntimeError: upstream refused" in text
    assert f"Authorization: Bearer {mask(OPAQUE)}" in text
    assert shown(text) == set()


# --- gunicorn ---------------------------------------------------------------------------------


@pytest.fixture
def gunicorn_logger(tmp_path: Path) -> Iterator[Callable[[str], GunicornLogger]]:
    """gunicorn's own Logger, set up as ``gunicorn --access-logfile F --error-logfile F``."""

    def make(access_format: str) -> GunicornLogger:
        cfg = Config()
        cfg.set("accesslog", str(tmp_path / "access.log"))
        cfg.set("errorlog", str(tmp_path / "error.log"))
        cfg.set("loglevel", "debug")
        cfg.set("access_log_format", access_format)
        return GunicornLogger(cfg)

    yield make
    shield_logging.uninstall()
    for name in ("gunicorn.error", "gunicorn.access"):
        for handler in logging.getLogger(name).handlers[:]:
            handler.close()
            logging.getLogger(name).removeHandler(handler)


def test_gunicorn_access_log_formats_its_dict_of_atoms(
    tmp_path: Path, gunicorn_logger: Callable[[str], GunicornLogger]
) -> None:
    # gunicorn.glogging.Logger.access logs `access_log_format % SafeAtoms(...)`: record.args is
    # that dict (of request headers, environ and response fields), read case-insensitively.
    log = gunicorn_logger('%(h)s "%(r)s" %(s)s "%(q)s" "%({Authorization}i)s" "%({x-api-key}i)s"')
    shield_logging.install(secrets=[SECRET])
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/items?access_token={OPAQUE}",
        "PATH_INFO": "/items",
        "QUERY_STRING": f"access_token={OPAQUE}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_AUTHORIZATION": f"Bearer {JWT}",
    }
    request = SimpleNamespace(headers=[("AUTHORIZATION", f"Bearer {JWT}"), ("X-API-KEY", SECRET)])
    response = SimpleNamespace(status="401 Unauthorized", headers=[], sent=0)
    log.access(response, request, environ, datetime.timedelta(microseconds=1500))
    logging.getLogger("gunicorn.access").handlers[0].flush()
    text = (tmp_path / "access.log").read_text()
    assert text.startswith(f'127.0.0.1 "GET /items?access_token={mask(OPAQUE)} HTTP/1.1" 401 ')
    assert f'"access_token={mask(OPAQUE)}"' in text
    assert f'"Bearer {mask(JWT)}" "{mask(SECRET)}"' in text
    assert shown(text) == set()


def test_gunicorn_error_log_masks_the_request_and_its_exception(
    tmp_path: Path, gunicorn_logger: Callable[[str], GunicornLogger]
) -> None:
    log = gunicorn_logger("%(r)s")
    shield_logging.install()
    try:
        raise ValueError(f"no session for Cookie: sid={OPAQUE}")
    except ValueError:
        log.exception("Error handling request %s", f"/items?access_token={OPAQUE}")
    logging.getLogger("gunicorn.error").handlers[0].flush()
    text = (tmp_path / "error.log").read_text()
    assert f"Error handling request /items?access_token={mask(OPAQUE)}" in text
    assert "ValueError: no session for Cookie: [redacted:" in text
    assert shown(text) == set()


# --- structlog's stdlib bridge ----------------------------------------------------------------


@pytest.fixture
def structlog_bridge() -> Iterator[None]:
    structlog.configure(
        processors=[structlog.stdlib.add_log_level, ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    yield
    structlog.reset_defaults()


def test_structlog_processor_formatter(attach: Any, structlog_bridge: None) -> None:
    formatter = ProcessorFormatter(
        processors=[
            ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
        pass_foreign_args=True,
    )
    handler = attach("bridge", formatter)
    foreign = logging.getLogger("bridge")
    access_line(foreign, f"/items?access_token={OPAQUE}")
    foreign.info("headers %s", {"Authorization": f"Bearer {JWT}"}, extra={"x_cookie": "a=b"})
    fail_with(foreign, "foreign failure")
    native = structlog.get_logger("bridge")
    native.info("downstream call", url=f"https://orders/x?access_token={OPAQUE}", status=200)
    try:
        raise KeyError(f"Bearer {JWT}")
    except KeyError:
        native.exception("native failure")  # exc_info=True, rendered by format_exc_info later
    lines = [json.loads(line) for line in handler.text().splitlines()]
    assert [line["event"].split(" ")[0] for line in lines] == [
        "127.0.0.1:50000",
        "headers",
        "foreign",
        "downstream",
        "native",
    ]
    assert lines[0]["positional_args"][2] == f"/items?access_token={mask(OPAQUE)}"
    assert lines[1]["x_cookie"] == mask("a=b")
    assert (
        "RuntimeError: upstream refused Authorization: Bearer [redacted:" in lines[2]["exception"]
    )
    assert lines[3]["url"] == f"https://orders/x?access_token={mask(OPAQUE)}"
    assert lines[3]["status"] == 200
    assert "KeyError: 'Bearer [redacted:" in lines[4]["exception"]
    assert shown(handler.text()) == set()


# --- JSON formatters --------------------------------------------------------------------------


class ArgsJSONFormatter(logging.Formatter):
    """A JSON formatter of the common hand-written kind: it dumps ``record.args`` as fields
    (gunicorn's atoms) and renders ``exc_info`` itself."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"message": record.getMessage(), "msg": record.msg}
        if isinstance(record.args, dict):
            fields.update(record.args)
        else:
            fields["args"] = record.args
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str)


@pytest.mark.parametrize(
    "formatter",
    [JsonFormatter("%(levelname)s %(message)s %(exc_info)s"), ArgsJSONFormatter()],
    ids=["python-json-logger", "reads-args"],
)
def test_json_formatters(attach: Any, formatter: logging.Formatter) -> None:
    handler = attach("json", formatter)
    logger = logging.getLogger("json")
    access_line(logger, f"/items?access_token={OPAQUE}")
    logger.info("%(h)s %(r)s", {"h": "127.0.0.1", "r": "GET /", "{authorization}i": JWT})
    logger.info({"event": "headers", "headers": {"Authorization": f"Bearer {JWT}"}, "n": 3})
    logger.info("client %s", SECRET, extra={"x_query": f"token={OPAQUE}"})
    fail_with(logger, "failed")
    lines = [json.loads(line) for line in handler.text().splitlines()]
    assert len(lines) == 5
    assert f"access_token={mask(OPAQUE)}" in lines[0]["message"]
    assert lines[2].get("n", lines[2].get("msg", {}).get("n")) == 3  # a dict msg stays a dict
    assert "upstream refused Authorization: Bearer [redacted:" in json.dumps(lines[4])
    assert shown(handler.text()) == set()


# --- any format, any arguments ----------------------------------------------------------------

CONTEXTS = {
    "bearer": ("Bearer {}", r"[A-Za-z0-9\-._~+/]{12,40}"),
    "header": ("Authorization: Basic {}", r"[A-Za-z0-9+/]{12,40}"),
    "param": ("GET /x?access_token={}&page=2", r"[A-Za-z0-9\-._~]{12,40}"),
    "jwt": ("{}", r"eyJ[A-Za-z0-9_-]{8,20}\.[A-Za-z0-9_-]{8,20}\.[A-Za-z0-9_-]{8,40}"),
    "registered": ("{}", r"[A-Za-z0-9!@#$%^*]{12,40}"),
    "cookie": ("Cookie: sid={}; theme=dark", r"[A-Za-z0-9]{12,40}"),
    "form": ("grant_type=refresh_token&refresh_token={}&scope=read", r"[A-Za-z0-9\-._~]{12,40}"),
    "api-key": ("{}", r"osk_[a-z0-9]{10}_[A-Za-z0-9]{20,43}"),
}


@st.composite
def split_records(draw: st.DrawFn) -> tuple[str, str, str, Any]:
    """A token in a context, cut anywhere into literal format text and %s / %(k)s arguments."""
    kind = draw(st.sampled_from(sorted(CONTEXTS)))
    template, shape = CONTEXTS[kind]
    token = draw(st.from_regex(shape, fullmatch=True))
    before = draw(st.text(max_size=12)) + " "
    after = draw(st.sampled_from([" ", "&", "\n", "'", '"'])) + draw(st.text(max_size=12))
    text = before + template.format(token) + after
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=6)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    keyed = draw(st.booleans())
    fmt, args, named = "", [], {}
    for index, part in enumerate(parts):
        if draw(st.booleans()):
            fmt += part.replace("%", "%%")
        elif keyed:
            fmt, named[f"a{index}"] = fmt + f"%(a{index})s", part
        else:
            fmt, args = fmt + "%s", [*args, part]
    if draw(st.booleans()) and not keyed:
        fmt, args = fmt + " %d", [*args, draw(st.integers())]
    return kind, token, fmt, (named if keyed else tuple(args)) or None


@settings(max_examples=400, deadline=None)
@given(case=split_records())
def test_any_format_and_arguments_never_show_a_piece_of_the_token(
    case: tuple[str, str, str, Any],
) -> None:
    kind, token, fmt, args = case
    windows = pieces(token)
    redacting = RedactingFilter(secrets=[token] if kind == "registered" else [])
    given_args = (args,) if isinstance(args, dict) else args  # as Logger.info(fmt, mapping)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, fmt, given_args, None)
    original = record.getMessage()
    redacting.filter(record)
    outputs = [
        logging.Formatter("%(message)s").format(record),
        ArgsJSONFormatter().format(record),
        repr(record.args),
    ]
    context = original.replace(token, "")
    for output in outputs:
        visible = re.sub(_MASKS, "", output)
        assert {w for w in windows if w in visible and w not in context} == set()
    # The shape is kept: as many arguments, the same keys.
    if isinstance(args, tuple):
        assert isinstance(record.args, tuple) and len(record.args) == len(args)
    elif isinstance(args, dict):
        assert isinstance(record.args, dict) and record.args.keys() == args.keys()
