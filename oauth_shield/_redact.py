"""Pure: find secrets in text and mask them, keeping every value in the shape its reader expects.

A log record reaches formatters that read more than its message: uvicorn's ``AccessFormatter``
unpacks ``record.args`` as a 5-tuple, gunicorn's access log formats a dict of atoms,
structlog's stdlib bridge copies a dict ``msg``, JSON formatters dump ``args`` and ``extra``
fields and format ``exc_info`` themselves. So masking never changes a shape: a str stays a
str, a dict the same kind of dict with the same keys, a tuple a tuple of the same length, an
exception an exception (:class:`RedactedError`); numbers are never secrets and never change.

A secret split across several arguments (``"Authorization: %s %s" % ("Bearer", token)``) is
invisible to each argument alone, so the rendered message is checked too. If it shows more
than the masked arguments do, the %-format is cut into its literal pieces and conversions,
each secret's span in the rendered text is masked inside the pieces that hold it (the mask
goes to the piece where the span starts), and the format and arguments are rebuilt from the
pieces: ``msg % args`` then equals the masked message exactly, and ``args`` keeps its shape.
A format that cannot be cut (``*`` widths, unbalanced keys) is rendered, masked, and kept as
the message with ``%.0s`` per argument, every text argument masked whole.
"""

from __future__ import annotations

import copy
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, NamedTuple

from ._secret import Secret
from ._token import text_fingerprint

MASK = "[redacted:"
_FULL_MASK = re.compile(r"\[redacted:[0-9a-f]{8}\]")
_HEADERS = r"authorization|proxy-authorization|cookie|set-cookie|x-api-key|x_api_key"
_PARAMS = (
    r"access_token|refresh_token|id_token|token|client_secret|subject_token|actor_token"
    r"|api_key|apikey|password"
)
PATTERN = re.compile(
    # "Authorization: v", "'Authorization': 'v'", "('authorization', 'v')", "HTTP_AUTHORIZATION: v"
    rf"(?P<header>(?:\bhttp_)?\b(?:{_HEADERS})\b['\"]?(?:\s*[:=]\s*|,\s*)(?:b?['\"])?)(?P<hvalue>[^'\"\r\n]+)"
    rf"|(?P<bearer>\bbearer\s+(?:bearer\s+)*)"  # "Bearer Bearer t": a doubled scheme
    # not a header or parameter name that its own rule masks ("Bearer Cookie: ...")
    rf"(?!(?:http_)?(?:{_HEADERS})\b['\"]?(?:\s*[:=]|,)|(?:{_PARAMS})=)"
    r"(?P<token>[A-Za-z0-9\-._~+/]+=*)"
    # "DPoP <token>" (RFC 9449): a word in prose ("DPoP proof") is no token, so only a
    # token68 long enough to be a credential; a JWT is masked by its own rule anyway
    r"|(?P<dpop>\bdpop\s+)(?P<dtoken>[A-Za-z0-9\-._~+/]{16,}=*)"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){2,4})"  # JWS (3 parts), JWE (5)
    rf"|(?P<param>(?<![A-Za-z0-9_])(?:{_PARAMS})=)(?P<pvalue>[^&\s'\"#,;)]+)"
    r"|(?P<apikey>\bosk_[A-Za-z0-9]+_[A-Za-z0-9]+)",
    re.IGNORECASE,
)
# "<scheme> <credentials>": the HTTP authentication schemes in IANA's registry (RFC 9110 §16.4),
# and "Token"/"ApiKey" in common use. Any other first word may be part of a secret (a password
# with a space), so the whole value is masked.
_CREDENTIALS = re.compile(
    r"((?:basic|bearer|concealed|digest|dpop|gnap|hoba|mutual|negotiate|ntlm|privatetoken"
    r"|scram-sha-1|scram-sha-256|vapid|token|apikey)\s+)(\S+)",
    re.IGNORECASE,
)
SENSITIVE_NAME = re.compile(
    rf"(?:{_HEADERS}|{_PARAMS}|secret|credential|cookie)", re.IGNORECASE
)  # extra fields and dict keys with these names are masked whole
# Lower-case text without any of these cannot match PATTERN: one plain search spares the regex.
TRIGGERS = ("authoriz", "cookie", "api_key", "api-key", "apikey", "bearer", "dpop", "eyj", "token=",
            "secret=", "password=", "osk_")  # fmt: skip
_TRIGGER = re.compile("|".join(map(re.escape, TRIGGERS)))
# One %-conversion (printf-style, as LogRecord.getMessage applies it); keys without parens.
_SPEC = re.compile(
    r"%(?:\((?P<key>[^()]*)\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?"
    r"(?P<conv>[diouxXeEfFgGcrsa%])"
)

Span = tuple[int, int]


def mask(value: str) -> str:
    """``[redacted:<fingerprint>]`` for ``value``."""
    return f"{MASK}{text_fingerprint(value)}]"


def _secret_span(match: re.Match[str]) -> Span | None:
    """Where the secret of a PATTERN match is (None: nothing, or a mask, is there)."""
    if match.group("header") is not None:
        start = match.start("hvalue")
        end = start + len(match.group("hvalue").rstrip())
        # Keep the scheme: the fingerprint is then the credential's own, as the validator logs it.
        if scheme := _CREDENTIALS.fullmatch(match.string, start, end):
            start, end = scheme.span(2)
    elif match.group("bearer") is not None:
        start, end = match.span("token")
    elif match.group("dpop") is not None:
        start, end = match.span("dtoken")
    elif match.group("param") is not None:
        start, end = match.span("pvalue")
    else:
        start, end = match.span()
    if start == end or _FULL_MASK.fullmatch(match.string, start, end):  # a registered secret
        return None
    return start, end


def _masked(match: re.Match[str]) -> str:
    span = _secret_span(match)
    if span is None:
        return match.group()
    text, base = match.string, match.start()
    return text[base : span[0]] + mask(text[span[0] : span[1]]) + text[span[1] : match.end()]


class RedactedError(Exception):
    """Stands in for an exception whose traceback showed a secret; its message is that
    traceback, masked. Formatters that render ``exc_info`` themselves (structlog's
    ``format_exc_info``, python-json-logger) print the masked text, and the original exception,
    which still holds the secret, never reaches them."""

    __module__ = "oauth_shield.logging"


class _Masked(str):
    """Stands in for an object whose text showed a secret: ``str()`` and ``repr()`` masked."""

    shown: str

    def __new__(cls, text: str, shown: str) -> _Masked:
        made = super().__new__(cls, text)
        made.shown = shown
        return made

    def __repr__(self) -> str:
        return self.shown

    def __reduce__(self) -> tuple[type[_Masked], tuple[str, str]]:
        return _Masked, (str.__str__(self), self.shown)


class _Piece(NamedTuple):
    text: str  # as rendered
    key: int | str | None  # the argument's index or mapping key; None for literal text
    spec: str = ""


def _sensitive(name: object) -> bool:
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    return isinstance(name, str) and SENSITIVE_NAME.search(name) is not None


def is_exc_info(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException)


class Redactor:
    """Masks secrets in text and in values; :class:`oauth_shield.logging.RedactingFilter`."""

    def __init__(self, secrets: Iterable[str | Secret] = ()) -> None:
        self._secrets: set[str] = set()
        self._secret_pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str | Secret) -> None:
        """Mask this exact value too (client secrets, API keys, anything of yours)."""
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            self._secrets.add(value)
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._secret_pattern = re.compile("|".join(map(re.escape, ordered)))

    def redact(self, text: str) -> str:
        """``text`` with every secret masked (``text`` itself when there is none)."""
        masked = text
        if self._secret_pattern is not None:
            masked = self._secret_pattern.sub(lambda m: mask(m.group()), text)
        if _TRIGGER.search(masked.lower()) is not None:
            masked = PATTERN.sub(_masked, masked)
        return text if masked == text else masked

    def _spans(self, text: str, stage: int) -> list[Span]:
        """Where :meth:`redact` masks: stage 0 registered secrets, stage 1 the patterns (over
        the text stage 0 left)."""
        if stage == 0:
            found = () if self._secret_pattern is None else self._secret_pattern.finditer(text)
            return [match.span() for match in found]
        if _TRIGGER.search(text.lower()) is None:
            return []
        return [span for match in PATTERN.finditer(text) if (span := _secret_span(match))]

    # --- a record's msg and args ----------------------------------------------------------

    def redact_message(self, msg: object, args: Any) -> tuple[object, Any]:
        """A log record's ``(msg, args)`` with every secret masked, ``args`` in its shape."""
        if not args:
            return (
                self.redact(msg) if isinstance(msg, str) else self.redact_value(None, msg)
            ), args
        try:
            rendered = str(msg) % args
        except Exception:  # a broken format: show what there is, masked
            return self._flatten(f"{msg} {args!r}", args)
        # Each argument alone, first: a formatter may show more of one than the message does.
        hidden = self._args(args)
        target = self.redact(rendered)
        if target != rendered:  # the message shows a secret
            if hidden is not args and self._render(msg, hidden) == target:
                return msg, hidden  # each secret sat in one argument: the usual case
            reshaped = self._reshape(str(msg), args, rendered, target)
            if reshaped is None:
                return self._flatten(rendered, args)
            msg, args = reshaped
            hidden = self._args(args)
        if hidden is args:
            return msg, args
        shown = self._render(msg, hidden)
        if shown is None:
            return self._flatten(rendered, args)
        return (msg, hidden) if self.redact(shown) == shown else self._flatten(shown, hidden)

    def _args(self, args: Any) -> Any:
        """Each argument masked alone (positional arguments are not (name, value) pairs)."""
        if type(args) is not tuple:
            return self.redact_value(None, args)
        masked: list[Any] | None = None
        for index, arg in enumerate(args):
            kind = type(arg)
            if kind is int or kind is float or kind is bool or arg is None:
                continue
            new = self.redact(arg) if kind is str else self._value(arg, False)
            if new is not arg:
                masked = masked or list(args)
                masked[index] = new
        return args if masked is None else tuple(masked)

    @staticmethod
    def _render(msg: object, args: Any) -> str | None:
        try:
            text: str = str(msg) % args
        except Exception:
            return None
        return text

    def _reshape(self, fmt: str, args: Any, rendered: str, target: str) -> tuple[str, Any] | None:
        """``fmt`` and ``args`` rebuilt so that the secrets ``rendered`` shows are masked."""
        pieces = _split(fmt, args)
        if pieces is None or "".join(piece.text for piece in pieces) != rendered:
            return None
        texts = [piece.text for piece in pieces]
        for stage in (0, 1):
            joined = "".join(texts)
            if spans := self._spans(joined, stage):
                texts = _apply(texts, joined, spans)
        chunks, changed = [], {}
        for piece, text in zip(pieces, texts, strict=True):
            if piece.key is None:
                chunks.append(text.replace("%", "%%"))
            elif text == piece.text:
                chunks.append(piece.spec)
            else:
                chunks.append("%s" if isinstance(piece.key, int) else f"%({piece.key})s")
                changed[piece.key] = text
        if isinstance(args, tuple):
            args = tuple(changed.get(index, arg) for index, arg in enumerate(args))
        else:
            args = _clone(args, [(key, changed.get(key, value)) for key, value in args.items()])
        fmt = "".join(chunks)
        return (fmt, args) if self._render(fmt, args) == target else None

    def _flatten(self, text: str, args: Any) -> tuple[str, Any]:
        """The masked text as the message; every text argument masked whole, shape kept.
        What an argument showed a secret in, alone, is masked wherever the text still shows
        it (a context the whole message hides, such as ``"x%s" % "token=..."``)."""
        text, hidden = self.redact(text), self._value(args, sensitive=True)
        for leaf in sorted(set(self._leaves(args, False)), key=len, reverse=True):
            text = text.replace(leaf, mask(leaf))
        if isinstance(args, tuple) and args:  # "%.0s" consumes an argument and shows nothing
            return text.replace("%", "%%") + "%.0s" * len(args), hidden
        if isinstance(args, Mapping) and args:
            return text.replace("%", "%%"), hidden
        return text, ()

    def _leaves(self, value: Any, sensitive: bool) -> Iterator[str]:
        """The texts in ``value`` that masking it alone would change."""
        if isinstance(value, str | bytes | bytearray):
            text = value if isinstance(value, str) else bytes(value).decode("latin-1")
            if text and self._value(text, sensitive) != text:
                yield text
        elif isinstance(value, Mapping):
            for key, item in value.items():
                yield from self._leaves(key, False)
                yield from self._leaves(item, sensitive or _sensitive(key))
        elif isinstance(value, list | tuple | set | frozenset):
            items = list(value)
            named = len(items) == 2 and isinstance(items[0], str | bytes) and _sensitive(items[0])
            for index, item in enumerate(items):
                yield from self._leaves(item, sensitive or (named and index == 1))
        elif value is not None and not isinstance(value, bool | int | float):
            masked = self._object(value, sensitive)
            if masked is not value:
                yield from (text for text in (str(value), repr(value)) if text)

    # --- values ---------------------------------------------------------------------------

    def redact_value(self, name: object, value: Any) -> Any:
        """``value`` with secrets masked, in the same shape (``value`` itself when it holds
        none); a value stored under a sensitive name is masked whole."""
        return self._value(value, _sensitive(name))

    def redact_exc_info(self, value: Any) -> Any:
        """An exception, or an ``exc_info`` triple, whose traceback shows no secret: itself,
        or a :class:`RedactedError` carrying the masked traceback."""
        error = value if isinstance(value, BaseException) else value[1]
        trace = error.__traceback__ if isinstance(value, BaseException) else value[2]
        text = "".join(traceback.format_exception(type(error), error, trace))
        masked = self.redact(text)
        if masked == text:
            return value
        stand_in = RedactedError(masked.rstrip("\n"))
        return stand_in if isinstance(value, BaseException) else (RedactedError, stand_in, None)

    def _value(self, value: Any, sensitive: bool) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self._whole(value) if sensitive else self.redact(value)
        if isinstance(value, bytes | bytearray):
            text = bytes(value).decode("latin-1")
            masked = self._value(text, sensitive)
            return value if masked == text else type(value)(masked.encode("latin-1"))
        if isinstance(value, Mapping):
            pairs = [
                (self._value(key, False), self._value(item, sensitive or _sensitive(key)))
                for key, item in value.items()
            ]
            if all(k is a and v is b for (k, v), (a, b) in zip(pairs, value.items(), strict=True)):
                return value
            return _clone(value, pairs)
        if is_exc_info(value):
            return self.redact_exc_info(value)
        if isinstance(value, list | tuple | set | frozenset):
            return self._items(value, sensitive)
        return self._object(value, sensitive)

    @staticmethod
    def _whole(value: str) -> str:
        """A value stored under a sensitive name, masked whole but for its scheme."""
        scheme = _CREDENTIALS.fullmatch(value)
        secret = scheme.group(2) if scheme else value
        if _FULL_MASK.fullmatch(secret):  # masked already (by another handler's filter)
            return value
        return (scheme.group(1) if scheme else "") + mask(secret)

    def _items(self, value: Any, sensitive: bool) -> Any:
        items = list(value)
        if (
            len(items) == 2
            and isinstance(value, list | tuple)
            and isinstance(items[0], str | bytes)
        ):
            # a (header, value) pair: the name decides whether the value is masked whole
            whole = sensitive or _sensitive(items[0])
            masked = [self._value(items[0], sensitive), self._value(items[1], whole)]
        else:
            masked = [self._value(item, sensitive) for item in items]
        if all(new is old for new, old in zip(masked, items, strict=True)):
            return value
        if type(value) in (list, tuple, set, frozenset):
            return type(value)(masked)
        try:  # a namedtuple, a subclass
            return value._make(masked) if hasattr(value, "_make") else type(value)(masked)
        except Exception:
            base = next(kind for kind in (list, tuple, set, frozenset) if isinstance(value, kind))
            return base(masked)

    def _object(self, value: Any, sensitive: bool) -> Any:
        """Any other object is kept, unless its ``str()`` or ``repr()`` shows a secret."""
        try:
            text = str(value)
            plain = type(value).__str__ is object.__str__  # type: ignore[comparison-overlap]
            shown = text if plain else repr(value)
        except Exception:  # unprintable: a formatter cannot show it either
            return value
        if sensitive:
            return _Masked(mask(shown), mask(shown))
        masked_text, masked_shown = self.redact(text), self.redact(shown)
        if masked_text == text and masked_shown == shown:
            return value
        return _Masked(masked_text, masked_shown)


def _split(fmt: str, args: Any) -> list[_Piece] | None:
    """``fmt`` cut into literal text and conversions, each rendered with its argument."""
    pieces: list[_Piece] = []
    keyed, index, position = isinstance(args, Mapping), 0, 0
    if not keyed and not isinstance(args, tuple):
        return None
    while (at := fmt.find("%", position)) != -1:
        if at > position:
            pieces.append(_Piece(fmt[position:at], None))
        found = _SPEC.match(fmt, at)
        if found is None or "*" in found.group():
            return None
        spec, key, position = found.group(), found.group("key"), found.end()
        if found.group("conv") == "%":
            if spec != "%%":
                return None
            pieces.append(_Piece("%", None))
            continue
        if keyed != (key is not None) or (not keyed and index >= len(args)):
            return None
        target: int | str = key if key is not None else index
        index += not keyed
        try:
            text = spec % (args if keyed else (args[index - 1],))
        except Exception:
            return None
        pieces.append(_Piece(text, target, spec))
    if position < len(fmt):
        pieces.append(_Piece(fmt[position:], None))
    return pieces if keyed or index == len(args) else None


def _apply(texts: list[str], joined: str, spans: list[Span]) -> list[str]:
    """Each piece of ``joined`` with the ``spans`` masked: a span's mask goes to the piece where
    it starts, and what it covers in later pieces is removed."""
    out, start = [], 0
    for text in texts:
        end, position, parts = start + len(text), start, []
        for first, last in spans:
            if last <= start or first >= end:
                continue
            if first >= start:
                parts += [joined[position:first], mask(joined[first:last])]
            position = min(last, end)
        parts.append(joined[position:end])
        out.append("".join(parts))
        start = end
    return out


def _clone(value: Mapping[Any, Any], pairs: list[tuple[Any, Any]]) -> Mapping[Any, Any]:
    """A mapping of ``value``'s own kind (gunicorn's ``SafeAtoms``, an ``OrderedDict``,
    ``httpx.Headers``) holding ``pairs``; a dict when that kind cannot be copied. The caller's
    mapping is never changed."""
    if type(value) is not dict and isinstance(value, MutableMapping):
        try:
            clone = copy.copy(value) if isinstance(value, dict) else value.copy()  # type: ignore[attr-defined]
            if type(clone) is type(value) and clone is not value:
                clone.clear()
                clone.update(pairs)
                return clone
        except Exception:  # noqa: S110 - a plain dict then
            pass
    return dict(pairs)
