"""What a user installs: typed packages, honest metadata, a wheel and an sdist without the
tests, and extras that name themselves when they are missing.

The slow test at the end takes the user's path: the sdist is built, the wheel is built from
the unpacked sdist, and the wheel is installed with ``[quart,flask]`` in a fresh virtual
environment (from the package index pip is configured with). A protected Quart app under
uvicorn and a protected Flask app under ``flask run`` are then served from it, outside the
source tree.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from email.message import Message
from email.parser import Parser
from pathlib import Path
from typing import NamedTuple, get_type_hints

import httpx
import pytest

from oauth_shield import TokenValidator, ValidatorOptions, ValidatorOverrides
from oauth_shield.testing import LocalIssuer, loopback_socket

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("oauth_shield", "flask_oauth_shield", "quart_oauth_shield")
REPOSITORY = "https://github.com/oauth-shield/oauth-shield"
#: The extras a clean install must not need for the validator, the middleware and the adapters.
EXTRA_ONLY = ("authlib", "aiocache", "redis", "opentelemetry")
#: How long a server started in a subprocess may take to answer its first request.
START_TIMEOUT = 30.0


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's Python path or virtual environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | extra


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=clean_env(), capture_output=True, text=True, check=False
    )


# --- typed options ---------------------------------------------------------------------------


def constructor_hints() -> dict[str, object]:
    hints = get_type_hints(TokenValidator.__init__)
    del hints["return"]
    return hints


def test_validator_options_are_the_constructors_parameters() -> None:
    """The TypedDict behind every ``**options`` cannot drift from ``TokenValidator.__init__``:
    the same names, the same annotations, and required exactly where there is no default."""
    parameters = inspect.signature(TokenValidator.__init__).parameters
    without_default = {
        name
        for name, parameter in parameters.items()
        if name != "self" and parameter.default is inspect.Parameter.empty
    }
    assert all(
        parameter.kind is inspect.Parameter.KEYWORD_ONLY
        for name, parameter in parameters.items()
        if name != "self"
    )
    assert get_type_hints(ValidatorOptions) == constructor_hints()
    assert ValidatorOptions.__required_keys__ == without_default == {"issuer", "audience"}


def test_validator_overrides_are_the_same_options_all_optional() -> None:
    """What ``from_env`` and ``Shield`` take: the rest comes from ``OAUTH_SHIELD_*`` keys."""
    assert get_type_hints(ValidatorOverrides) == constructor_hints()
    assert ValidatorOverrides.__required_keys__ == frozenset()


#: Each line marked ``# E: <text>`` must get a mypy error containing <text>; no other line may
#: get any.
TYPED_USE = """\
from typing import Any

from flask import Flask
from quart import Quart

from flask_oauth_shield import Shield as FlaskShield
from flask_oauth_shield import current_token
from oauth_shield import SyncTokenValidator, TokenValidator, providers
from oauth_shield.asgi import BearerAuthMiddleware
from quart_oauth_shield import Shield as QuartShield

ISSUER, AUDIENCE = "https://as.example", "https://api.example"
TokenValidator(issuer=ISSUER, audiance=AUDIENCE)  # E: Unexpected keyword argument "audiance"
SyncTokenValidator(issuer=ISSUER, audiance=AUDIENCE)  # E: Unexpected keyword argument "audiance"
SyncTokenValidator(audience=AUDIENCE)  # E: Missing named argument "issuer"
SyncTokenValidator(issuer=ISSUER, audience=AUDIENCE, leeway="5")  # E: "leeway"
SyncTokenValidator.from_env(audiance=AUDIENCE)  # E: Unexpected keyword argument "audiance"
TokenValidator.from_env(jwks_tll=60)  # E: Unexpected keyword argument "jwks_tll"
FlaskShield(Flask(__name__), audiance=AUDIENCE)  # E: Unexpected keyword argument "audiance"
QuartShield(Quart(__name__), audiance=AUDIENCE)  # E: Unexpected keyword argument "audiance"
QuartShield(Quart(__name__), introspect_all="yes")  # E: "introspect_all"

app = Flask(__name__)
shield = FlaskShield(app, audience=AUDIENCE, leeway=5, jwks_ttl=60.0)
validator = SyncTokenValidator.from_env(issuer=ISSUER, http_timeout=2.0)
options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE}
SyncTokenValidator(**options)  # built at run time, as from a config file: not checked
# A preset is a typed dict of the same options: every way in takes it, checked.
okta = providers.okta("https://example.okta.com", audience="api://default")
TokenValidator(**okta)
SyncTokenValidator(**providers.entra("organizations", audience="api", any_tenant=True))
QuartShield(Quart(__name__), **providers.auth0("example.auth0.com", audience=AUDIENCE))
FlaskShield(Flask(__name__), **providers.cognito("eu-west-1", "eu-west-1_X", client_ids=["c"]))


async def asgi(scope: Any, receive: Any, send: Any) -> None: ...


BearerAuthMiddleware(asgi, validator=TokenValidator(**(okta | {"leeway": 5.0})))
providers.okta("https://o.okta.com", audiance="x")  # E: Unexpected keyword argument "audiance"
TokenValidator(**(okta | {"leeway": "5"}))  # E: incompatible type "**dict[str, object]"


@app.get("/items")
@shield.require("read")
def items() -> dict[str, object]:
    return {"sub": current_token.subject}
"""


def expected_errors(source: str) -> dict[int, str]:
    return {
        number: line.split("# E: ", 1)[1]
        for number, line in enumerate(source.splitlines(), 1)
        if "# E: " in line
    }


def mypy_errors(output: str, name: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for line in output.splitlines():
        match = re.match(rf"{re.escape(name)}:(\d+): error: (.*)", line)
        if match:
            found.setdefault(int(match[1]), []).append(match[2])
    return found


def test_mypy_strict_reports_a_misspelt_option_where_it_is_written(tmp_path: Path) -> None:
    """As a user's ``mypy --strict`` sees the installed packages (from outside the checkout):
    the adapters are typed (``py.typed``), so ``@shield.require`` keeps the view typed, and
    every way in to the validator's options checks their names and types."""
    (tmp_path / "use.py").write_text(TYPED_USE)
    cache = tmp_path / "mypy-cache"
    result = run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), "use.py"],
        cwd=tmp_path,
    )
    errors = mypy_errors(result.stdout, "use.py")
    expected = expected_errors(TYPED_USE)
    assert set(errors) == set(expected), result.stdout
    for number, text in expected.items():
        assert any(text in error for error in errors[number]), result.stdout


def test_an_editable_install_imports_the_adapters(tmp_path: Path) -> None:
    """``pip install -e .`` puts the adapters under their own top-level names
    (``dev-mode-dirs``), from the checkout."""
    code = "import flask_oauth_shield as f, quart_oauth_shield as q; print(f.__file__, q.__file__)"
    result = run([sys.executable, "-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for path, name in zip(result.stdout.split(), ("flask", "quart"), strict=True):
        assert Path(path) == ROOT / "adapters" / f"{name}_oauth_shield" / "__init__.py"


# --- extras ----------------------------------------------------------------------------------


def blocked(modules: tuple[str, ...]) -> str:
    """Python code that makes importing ``modules`` fail, as if they were not installed."""
    return f"import sys; sys.modules.update(dict.fromkeys({modules!r}))\n"


def test_the_core_and_the_adapters_need_no_extra_dependency(tmp_path: Path) -> None:
    code = blocked(EXTRA_ONLY) + (
        "import flask_oauth_shield, quart_oauth_shield\n"
        "import oauth_shield.apikeys, oauth_shield.asgi, oauth_shield.logging\n"
        "from oauth_shield import SyncTokenValidator, TokenValidator\n"
        "TokenValidator(issuer='https://as.example', audience='https://api.example')\n"
        "SyncTokenValidator(issuer='https://as.example', audience='https://api.example')\n"
    )
    result = run([sys.executable, "-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_downstream_without_authlib_names_its_extra(tmp_path: Path) -> None:
    result = run(
        [sys.executable, "-c", blocked(("authlib",)) + "import oauth_shield.downstream"],
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "pip install 'oauth-shield[downstream]'" in result.stderr.splitlines()[-1]


def test_otel_without_opentelemetry_names_its_extra(tmp_path: Path) -> None:
    result = run(
        [sys.executable, "-c", blocked(("opentelemetry",)) + "import oauth_shield.otel"],
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "pip install 'oauth-shield[otel]'" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("shared", ["redis_url", "cache"])
def test_a_shared_cache_without_aiocache_names_its_extra(
    shared: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aiocache", None)
    value = "redis://127.0.0.1:6379/0" if shared == "redis_url" else object()
    with pytest.raises(ImportError, match=re.escape("pip install 'oauth-shield[redis]'")):
        TokenValidator(
            issuer="https://as.example", audience="https://api.example", **{shared: value}
        )


def test_the_run_script_installs_every_extra_and_the_dev_group() -> None:
    """``./run test`` must have everything the suite imports, on a fresh machine too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    script = (ROOT / "run").read_text()
    match = re.search(r'^EXTRAS="([^"]*)"', script, re.MULTILINE)
    assert match is not None
    assert set(match[1].split(",")) == set(project["project"]["optional-dependencies"])
    assert '-e ".[$EXTRAS]" --group dev' in script
    assert "dev" in project["dependency-groups"]
    assert "dev" not in project["project"]["optional-dependencies"]


# --- the wheel and the sdist -----------------------------------------------------------------


class Built(NamedTuple):
    sdist: Path
    wheel: Path


def build(kind: str, source: Path, out: Path) -> Path:
    """Build with hatchling's PEP 517 hooks, as pip would, without network or isolation."""
    code = f"import sys; from hatchling.build import build_{kind}; print(build_{kind}(sys.argv[1]))"
    result = run([sys.executable, "-c", code, str(out)], cwd=source)
    assert result.returncode == 0, result.stderr
    return out / result.stdout.split()[-1]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist of the checkout, and the wheel built from the unpacked sdist (so the sdist is
    proven to hold everything the wheel needs)."""
    out = tmp_path_factory.mktemp("dist")
    sdist = build("sdist", ROOT, out)
    unpacked = tmp_path_factory.mktemp("sdist")
    with tarfile.open(sdist) as archive:
        archive.extractall(unpacked, filter="data")
    (top,) = unpacked.iterdir()
    return Built(sdist, build("wheel", top, out))


def wheel_files(built: Built) -> set[str]:
    with zipfile.ZipFile(built.wheel) as archive:
        return set(archive.namelist())


def sdist_files(built: Built) -> set[str]:
    with tarfile.open(built.sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def metadata(built: Built) -> Message:
    with zipfile.ZipFile(built.wheel) as archive:
        (name,) = (name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode())


def test_the_wheel_holds_the_three_typed_packages_and_no_tests(built: Built) -> None:
    files = wheel_files(built)
    tops = {name.split("/")[0] for name in files}
    assert {top for top in tops if not top.endswith(".dist-info")} == set(PACKAGES)
    for package in PACKAGES:
        assert f"{package}/py.typed" in files
        assert f"{package}/__init__.py" in files
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in files)
    assert not [name for name in files if "tests/" in name or "conftest" in name]


def test_the_sdist_holds_the_sources_docs_examples_and_licence_and_no_tests(
    built: Built,
) -> None:
    files = sdist_files(built)
    assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO"} <= files
    for package in ("oauth_shield", *(f"adapters/{name}" for name in PACKAGES[1:])):
        assert f"{package}/py.typed" in files
    assert {"examples/quart_app.py", "examples/flask_app.py", "docs/quickstart.md"} <= files
    assert {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md")} <= files
    assert not [
        name for name in files if name.startswith(("tests/", "bench/")) or "/tests/" in name
    ]


def test_the_metadata_names_licence_links_classifiers_and_extras(built: Built) -> None:
    meta = metadata(built)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL", []))
    assert urls["Repository"] == REPOSITORY
    assert urls["Documentation"] == f"{REPOSITORY}/tree/main/docs"
    classifiers = set(meta.get_all("Classifier", []))
    assert {
        "Framework :: AsyncIO",
        "Framework :: Flask",
        "Programming Language :: Python :: 3.11",
        "Topic :: Security",
        "Typing :: Typed",
    } <= classifiers
    assert set(meta.get_all("Provides-Extra", [])) == {
        "downstream",
        "fastapi",
        "fastmcp",
        "flask",
        "mcp",
        "otel",
        "quart",
        "redis",
    }
    requires = meta.get_all("Requires-Dist", [])
    core = {re.split(r"[<>=\[ ;]", line)[0].lower() for line in requires if ";" not in line}
    assert not core & set(EXTRA_ONLY)
    assert any(line.startswith("authlib") and "extra == 'downstream'" in line for line in requires)
    assert any(line.startswith("aiocache") and "extra == 'redis'" in line for line in requires)


def test_the_readme_on_the_package_index_starts_with_pip_and_links_absolutely(
    built: Built,
) -> None:
    """The index renders the README away from the repository: relative links break there, and
    a pip user has no ``./run``."""
    readme = metadata(built).get_payload()
    assert isinstance(readme, str)
    links = re.findall(r"\]\(([^)]*)\)", readme)
    assert links and all(link.startswith("https://") for link in links), links
    commands = re.findall(r"^\$ (.*)$", readme, re.MULTILINE)
    assert commands[0] == "pip install 'oauth-shield[quart]'"
    contributing = readme.index("\n## Contributing")
    assert readme.index("./run demo") > contributing
    assert readme.index("./run test") > contributing


# --- the user's path: the wheel in a fresh environment ---------------------------------------

#: Two protected apps as a user writes them, settings from ``OAUTH_SHIELD_*`` variables. Each
#: route also says where its modules came from.
USER_APPS = """\
import os

import flask_oauth_shield as flask_shield
import oauth_shield
import quart_oauth_shield as quart_shield
from flask import Flask
from quart import Quart

SETTINGS = {k: v for k, v in os.environ.items() if k.startswith("OAUTH_SHIELD_")}

quart_app = Quart(__name__)
quart_app.config.from_mapping(SETTINGS)
quart = quart_shield.Shield(quart_app)


@quart_app.get("/items")
@quart.require("read")
async def quart_items() -> dict[str, object]:
    sub = quart_shield.current_token.subject
    return {"sub": sub, "core": oauth_shield.__file__, "adapter": quart_shield.__file__}


flask_app = Flask(__name__)
flask_app.config.from_mapping(SETTINGS)
flask = flask_shield.Shield(flask_app)


@flask_app.get("/items")
@flask.require("read")
def flask_items() -> dict[str, object]:
    sub = flask_shield.current_token.subject
    return {"sub": sub, "core": oauth_shield.__file__, "adapter": flask_shield.__file__}
"""

#: Run in the fresh environment: which extras are absent, and what using them says.
WITHOUT_EXTRAS = """\
import importlib.util, json
report = {"missing": [name for name in %r if importlib.util.find_spec(name) is None]}
try:
    import oauth_shield.downstream
except ImportError as error:
    report["downstream"] = str(error)
from oauth_shield import TokenValidator
try:
    TokenValidator(issuer="https://as.example", audience="x", redis_url="redis://127.0.0.1:1/0")
except ImportError as error:
    report["redis"] = str(error)
try:
    import oauth_shield.otel
except ImportError as error:
    report["otel"] = str(error)
print(json.dumps(report))
"""


def install(wheel: Path, venv: Path, extras: str) -> Path:
    """A fresh virtual environment with ``wheel[extras]``, from the configured index; its
    Python. The environment gets no pip: the test's own pip installs into it."""
    python = venv / "bin" / "python"
    created = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    assert created.returncode == 0, created.stderr
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    installed = run([*pip, "install", "--quiet", f"{wheel}[{extras}]"], cwd=venv.parent)
    assert installed.returncode == 0, installed.stderr
    return python


def free_port() -> int:
    with loopback_socket() as sock:
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(command: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[str]:
    """Start a server process and yield its URL once it answers; stop it afterwards."""
    log = cwd / f"server-{port}.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                httpx.get(url, timeout=1.0)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{' '.join(command[1:4])} did not start:\n{log.read_text()}")
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.integration
def test_the_installed_wheel_protects_a_quart_and_a_flask_app(built: Built, tmp_path: Path) -> None:
    home = tmp_path / "user"  # outside the checkout: nothing can come from the source tree
    home.mkdir()
    venv = tmp_path / "venv"
    python = install(built.wheel, venv, "quart,flask")

    report = run([str(python), "-c", WITHOUT_EXTRAS % (EXTRA_ONLY,)], cwd=home)
    assert report.returncode == 0, report.stderr
    found = json.loads(report.stdout)
    assert found["missing"] == list(EXTRA_ONLY)
    assert "pip install 'oauth-shield[downstream]'" in found["downstream"]
    assert "pip install 'oauth-shield[redis]'" in found["redis"]
    assert "pip install 'oauth-shield[otel]'" in found["otel"]

    # The user's mypy --strict over the installed packages: py.typed shipped, views stay typed.
    (home / "apps.py").write_text(USER_APPS)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--python-executable", str(python)]
    typed = run([*mypy, "--cache-dir", str(tmp_path / "mypy"), "apps.py"], cwd=home)
    assert typed.returncode == 0, typed.stdout

    issuer = LocalIssuer(audience="https://api.example")
    with issuer.serve():
        env = clean_env(OAUTH_SHIELD_ISSUER=issuer.issuer, OAUTH_SHIELD_AUDIENCE=issuer.audience)
        token = issuer.token(scope="read")
        for framework in ("quart", "flask"):
            port = free_port()
            command = (
                [str(python), "-m", "uvicorn", "apps:quart_app", "--log-level", "warning"]
                if framework == "quart"
                else [str(python), "-m", "flask", "--app", "apps:flask_app", "run"]
            )
            with server([*command, "--port", str(port)], home, env, port) as url:
                refused = httpx.get(f"{url}/items")
                assert refused.status_code == 401, framework
                assert refused.headers["WWW-Authenticate"].startswith("Bearer realm=")
                accepted = httpx.get(f"{url}/items", headers={"Authorization": f"Bearer {token}"})
                assert accepted.status_code == 200, (framework, accepted.text)
                answer = accepted.json()
                assert answer["sub"] == "user-1"
                assert Path(answer["core"]).is_relative_to(venv), answer
                assert Path(answer["adapter"]).is_relative_to(venv), answer
                assert Path(answer["adapter"]).parent.name == f"{framework}_oauth_shield"
