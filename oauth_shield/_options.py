"""``TokenValidator`` arguments from a mapping of ``OAUTH_SHIELD_*`` keys (app config, env).

Every constructor parameter ``name`` has the key ``OAUTH_SHIELD_<NAME>``. Values that are
already Python values are taken as they are; strings (as the environment gives them) are
converted: numbers, booleans (``1/true/yes/on``, ``0/false/no/off``), lists (commas and/or
whitespace, as for a string argument). A secret may come from a file named by
``OAUTH_SHIELD_CLIENT_SECRET_FILE``. A refusal names the keys the user set, not the
arguments they never wrote (:func:`configured`).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ._errors import ConfigurationError, is_quotable

T = TypeVar("T")

logger = logging.getLogger("oauth_shield.config")

PREFIX = "OAUTH_SHIELD_"

_NOT_CONFIGURABLE = frozenset({"transport", "clock", "cache", "ssl_context", "self"})
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.1 token
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _boolean(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE
    raise ConfigurationError(f"{name} must be a boolean (true/false), not {text!r}", field=name)


def boolean_or_text(value: Any, name: str) -> Any:
    """A configured value that is a boolean or a text (``OAUTH_SHIELD_RESOURCE``: ``true`` or
    a URL): boolean words become booleans, anything else is returned as it is."""
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return _boolean(name, value)
    return value


def _number(kind: type[int] | type[float]) -> Callable[[str, str], float]:
    def convert(name: str, text: str) -> float:
        try:
            return kind(text.strip())
        except ValueError:
            raise ConfigurationError(f"{name} must be a number, not {text!r}", field=name) from None

    return convert


def validator_parameters(factory: Callable[..., Any]) -> dict[str, Callable[[str, str], Any]]:
    """Each configurable keyword of ``factory`` and how to convert a string for it."""
    converters: dict[str, Callable[[str, str], Any]] = {}
    for name, parameter in inspect.signature(factory).parameters.items():
        if name in _NOT_CONFIGURABLE or parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        default = parameter.default
        # A list (audience, algorithms, ...) stays a string: Settings splits it exactly as
        # it splits a string argument.
        if isinstance(default, bool):
            converters[name] = _boolean
        elif isinstance(default, int):
            converters[name] = _number(int)
        elif isinstance(default, float):
            converters[name] = _number(float)
        else:
            converters[name] = lambda name, text: text
    return converters


#: OAUTH_SHIELD_* keys read elsewhere than the validator's parameters (adapters, API keys).
OTHER_KEYS = {"REALM", "ALLOW_QUERY_TOKEN", "ALLOW_FORM_TOKEN", "API_KEY_HEADER"}
OTHER_KEYS |= {"CHECK_AT_STARTUP", "API_KEYS", "API_KEYS_FILE", "RESOURCE"}
_warned: set[str] = set()


def options_from(
    mapping: Mapping[str, Any], factory: Callable[..., Any], prefix: str = PREFIX
) -> dict[str, Any]:
    """Keyword arguments for ``factory`` found in ``mapping`` under ``prefix``.

    A key with the prefix that nothing reads is logged once: a misspelt setting silently
    falling back to its default is how a service ends up less strict than intended.
    """
    options: dict[str, Any] = {}
    parameters = validator_parameters(factory)
    for name, convert in parameters.items():
        key = prefix + name.upper()
        if key in mapping:
            value = mapping[key]
            options[name] = convert(key, value) if isinstance(value, str) else value
    known = {prefix + name.upper() for name in parameters} | {prefix + name for name in OTHER_KEYS}
    for key in mapping:
        if (
            isinstance(key, str)
            and key.startswith(prefix)
            and key not in known
            and key not in _warned
        ):
            _warned.add(key)
            logger.warning("%s is not an oauth_shield setting; it is ignored", key)
    return options


#: What a missing required key is for, so that its error says what to put there.
_REQUIRED_MEANING = {
    "issuer": "the authorization server's issuer identifier, exactly as its tokens carry it in iss",
    "audience": "this API's identifier, as the tokens carry it in aud",
}


def configured(
    factory: Callable[..., T],
    mapping: Mapping[str, Any],
    overrides: Mapping[str, Any],
    parameters_of: Callable[..., Any],
) -> T:
    """``factory(**options)`` from ``mapping``'s keys and ``overrides`` (which win).

    A missing required setting, or a :class:`ConfigurationError` from the factory, names each
    setting as the user gave it: the key for what came from (or belongs in) the mapping, the
    argument for an override.
    """
    options = {**options_from(mapping, parameters_of), **overrides}
    keys = {
        name: PREFIX + name.upper()
        for name in inspect.signature(parameters_of).parameters
        if name not in overrides
    }
    for name, parameter in inspect.signature(parameters_of).parameters.items():
        if parameter.default is inspect.Parameter.empty and name not in options:
            meaning = _REQUIRED_MEANING.get(name, "a required setting")
            raise renamed(ConfigurationError(f"{name} is not set: {meaning}", field=name), keys)
    try:
        return factory(**options)
    except ConfigurationError as error:
        raise renamed(error, keys) from None


def renamed(error: ConfigurationError, keys: Mapping[str, str]) -> ConfigurationError:
    """``error`` with the settings it names (its field, at the start, and its mentions) called
    by their keys; ``keys`` maps the argument names to rename to their keys."""
    text, field = str(error), error.field
    if field is not None and field in keys and text.startswith(field):
        text, field = keys[field] + text[len(field) :], keys[field]
    for name in error.mentions:
        if name in keys:
            text = _mention(name).sub(_as_key(keys[name]), text)
    mentions = tuple(keys.get(name, name) for name in error.mentions)
    return ConfigurationError(text, field=field, mentions=mentions)


def _mention(name: str) -> re.Pattern[str]:
    """``name`` as a whole word, with an optional ``=True``/``=False`` (a fix to apply)."""
    return re.compile(rf"(?<![\w.]){re.escape(name)}(?:=(True|False))?(?!\w)")


def _as_key(key: str) -> Callable[[re.Match[str]], str]:
    def substitute(match: re.Match[str]) -> str:
        return key + (f"={match[1].lower()}" if match[1] else "")

    return substitute


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterSettings:
    """What a framework adapter adds to the validator's settings (``OAUTH_SHIELD_*`` keys
    in brackets)."""

    realm: str | None = None
    """The ``realm`` of every challenge (``REALM``); default: the validator's first audience."""
    allow_query_token: bool = False
    """Accept ``?access_token=`` (``ALLOW_QUERY_TOKEN``; RFC 6750 §2.3: it ends up in logs)."""
    allow_form_token: bool = False
    """Accept ``access_token`` in a form body (``ALLOW_FORM_TOKEN``; RFC 6750 §2.2)."""
    api_key_header: str = "X-API-Key"
    """The header that carries API keys (``API_KEY_HEADER``)."""
    check_at_startup: bool = False
    """Fail the application's start when the issuer cannot serve tokens
    (``CHECK_AT_STARTUP``; see ``TokenValidator.check``)."""

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], validator: Any, **explicit: Any
    ) -> AdapterSettings:
        """Explicit arguments (not ``None``) win over ``OAUTH_SHIELD_*`` keys of ``config``.

        ``validator`` is the adapter's (sync or async) validator: the realm defaults to its
        first audience, which names what the token must be for.
        """
        values: dict[str, Any] = {}
        for name in ADAPTER_FIELDS:
            value = explicit.pop(name, None)
            key = PREFIX + name.upper()
            if value is None:
                value = config.get(key)
            if isinstance(value, str) and name in _ADAPTER_BOOLEANS:
                value = _boolean(key, value)
            if value is not None:
                values[name] = value
        if explicit:
            raise ConfigurationError(f"unknown adapter setting(s): {', '.join(sorted(explicit))}")
        settings = cls(**values)
        for name in _ADAPTER_BOOLEANS:
            if not isinstance(getattr(settings, name), bool):
                raise ConfigurationError(f"{name} must be True or False")
        header = settings.api_key_header
        if (
            not isinstance(header, str)
            or _FIELD_NAME.fullmatch(header) is None
            or header.lower() in ("authorization", "cookie")
        ):
            raise ConfigurationError("api_key_header must be a header name, not Authorization")
        if settings.allow_query_token:
            logger.warning("tokens in the query string are accepted: they end up in access logs")
        if settings.realm is None:
            return replace(settings, realm=default_realm(validator.settings.audience))
        if not isinstance(settings.realm, str) or not is_quotable(settings.realm):
            raise ConfigurationError("realm must be printable ASCII without quotes or backslashes")
        return settings


#: The adapter settings, each also an ``OAUTH_SHIELD_*`` key.
ADAPTER_FIELDS = (
    "realm",
    "allow_query_token",
    "allow_form_token",
    "api_key_header",
    "check_at_startup",
)
_ADAPTER_BOOLEANS = frozenset({"allow_query_token", "allow_form_token", "check_at_startup"})


def default_realm(audience: Sequence[str]) -> str | None:
    """The API's first audience when it can stand in a header as it is (none without one)."""
    return audience[0] if audience and is_quotable(audience[0]) else None
