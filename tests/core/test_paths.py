"""PathRules and route_paths: what a request path requires, over every reading a framework
could make of it (pure; the servers' side is in tests/security/test_request_placement.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield import InvalidRequestError
from oauth_shield.http import PathRules, route_paths

RULES = PathRules({"/admin": ["admin"], "/api": ["read"]}, public=["/health", "/docs/*"])


@pytest.mark.parametrize(
    ("path", "root_path", "readings"),
    [
        ("/items", "", ("/items",)),
        ("/api/items", "/api", ("/items",)),  # uvicorn --root-path, Starlette Mount
        ("/api", "/api", ("/",)),
        ("/items", "/api", ("/items",)),  # hypercorn: root_path not in the path
        ("/x/api/admin", "/api", ("/x/api/admin", "/admin")),  # Quart strips it anywhere
        ("http://host/admin", "", ("http://host/admin", "/admin")),  # absolute form
        ("/apihttp://h/admin", "/api", ("http://h/admin", "/admin")),  # uvicorn h11 + root
        ("//admin", "", ("//admin", "/admin")),  # Werkzeug merges slashes
        ("/.well-known/x", "", ("/.well-known/x",)),  # a dot that is no dot segment
        ("", "", ("/",)),
    ],
)
def test_readings(path: str, root_path: str, readings: tuple[str, ...]) -> None:
    assert route_paths(path, root_path) == readings


@pytest.mark.parametrize(
    "path", ["/a/../admin", "/a/./b", "/..", "/.", "/a/..", "http://h/a/../b", "//a/../b"]
)
def test_dot_segments_are_refused(path: str) -> None:
    with pytest.raises(InvalidRequestError):
        route_paths(path)


def test_every_reading_must_be_satisfied() -> None:
    assert RULES.required("http://host/admin") == {"admin"}
    assert RULES.required("//admin") == {"admin"}
    assert RULES.required("/x/api/admin", "/api") == {"admin"}
    assert RULES.required("/docs//x") is None  # both readings public
    assert RULES.required("//health") == frozenset()  # the raw reading is not public
    assert RULES.required("http://host/health") == frozenset()


# A path as a hostile client could make a server hand it over.
paths = st.text(alphabet="/.:a-hAH%2eF", max_size=30)


@given(path=paths, root_path=st.sampled_from(["", "/api", "/a", "/"]))
def test_never_weaker_than_any_single_reading(path: str, root_path: str) -> None:
    try:
        readings = route_paths(path, root_path)
        required = RULES.required(path, root_path)
    except InvalidRequestError:
        return
    for reading in readings:
        alone = RULES.required_for(reading)
        if alone is not None:
            assert required is not None and alone <= required


@given(path=st.text(max_size=50), root_path=st.text(max_size=10))
def test_only_invalid_request_escapes(path: str, root_path: str) -> None:
    with contextlib.suppress(InvalidRequestError):
        RULES.required(path, root_path)
