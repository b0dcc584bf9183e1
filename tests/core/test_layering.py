"""Imports point one way: the pure core never reaches for the shell, asyncio, httpx or a web
framework, and the public surface is one sorted ``__all__`` (STYLE.md, "Architecture")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import oauth_shield

PACKAGE = Path(oauth_shield.__file__).parent
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py"))

CORE = ["_errors", "_json", "_jose", "_keys", "_claims", "_config", "_token", "_cache", "_clock"]
# Pure modules the style guide's layout names; checked like the core when they exist.
CORE += [
    name
    for name in (
        "_bearer",
        "_introspection",
        "_filter",
        "_redact",
        "_secret",
        "_paths",
        "_diagnosis",
        "_resource",
        "_claimpaths",
        "_issuers",
        "_text",
    )
    if name in MODULES
]
SHELL = {"_http", "_keyset", "_keysources", "_discovery", "_singleflight", "_validator", "_sync"}
FRAMEWORKS = {"quart", "flask", "starlette", "fastapi", "werkzeug", "uvicorn"}
NEVER_IMPORTED = {"quart", "flask", "werkzeug", "starlette", "fastapi"}


def imports(module: str) -> set[str]:
    """Every module ``module`` imports, anywhere in its body, relative ones resolved."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(), filename=f"{module}.py")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ._y import z
                base = "oauth_shield" + (f".{node.module}" if node.module else "")
                found.add(base)
                if not node.module:
                    found.update(f"oauth_shield.{alias.name}" for alias in node.names)
            else:
                found.add(node.module or "")
    return found


def roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def local(names: set[str]) -> set[str]:
    return {name.split(".")[1] for name in names if name.startswith("oauth_shield.")}


def reachable(module: str) -> tuple[set[str], set[str]]:
    """(package modules, outside modules) imported by ``module``, directly or through any
    module of the package it imports."""
    seen: set[str] = set()
    outside: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen or current not in MODULES:
            continue
        seen.add(current)
        found = imports(current)
        outside |= {root for root in roots(found) if root != "oauth_shield"}
        todo.extend(local(found))
    return seen - {module}, outside


def test_the_core_modules_exist() -> None:
    assert set(CORE) <= set(MODULES)


@pytest.mark.parametrize("module", CORE)
def test_core_stays_pure(module: str) -> None:
    found = imports(module)
    assert not roots(found) & ({"asyncio", "httpx", "aiocache"} | FRAMEWORKS)
    assert not local(found) & SHELL


@pytest.mark.parametrize("module", CORE)
def test_core_stays_pure_through_what_it_imports(module: str) -> None:
    package, outside = reachable(module)
    assert not package & SHELL
    assert not outside & ({"asyncio", "httpx", "aiocache"} | FRAMEWORKS)


#: Public submodules that integrate one framework (or OpenTelemetry); never imported by the
#: package.
FRAMEWORK_MODULES = {"fastapi", "mcp", "otel"}  # otel: imported only by whoever calls it


@pytest.mark.parametrize("module", sorted(set(MODULES) - FRAMEWORK_MODULES))
def test_no_framework_in_the_package(module: str) -> None:
    assert not roots(imports(module)) & NEVER_IMPORTED


def test_no_module_imports_a_framework_module() -> None:
    # `import oauth_shield` must work without the [fastapi] and [mcp] extras.
    for module in set(MODULES) - FRAMEWORK_MODULES:
        package, _ = reachable(module)
        assert not package & FRAMEWORK_MODULES, module


def test_the_checker_sees_imports() -> None:
    # Guard against a checker that passes because it finds nothing.
    assert {"httpx", "asyncio"} <= roots(imports("_http"))
    assert {"_keys", "_singleflight"} <= local(imports("_keyset"))
    assert "uvicorn" in roots(imports("testing"))  # imported inside a function
    assert "_singleflight" in reachable("_validator")[0]  # through _keyset
    assert "httpx" in reachable("_keyset")[1]


# --- the public surface ------------------------------------------------------------------


def public_names_bound_in_init() -> set[str]:
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return {name for name in names if not name.startswith("_")}


def test_all_is_sorted() -> None:
    assert oauth_shield.__all__ == sorted(oauth_shield.__all__)
    assert len(set(oauth_shield.__all__)) == len(oauth_shield.__all__)


def test_every_name_in_all_exists() -> None:
    for name in oauth_shield.__all__:
        assert hasattr(oauth_shield, name), name


def test_all_is_complete() -> None:
    assert public_names_bound_in_init() <= set(oauth_shield.__all__)


def test_the_surface_holds_the_essentials() -> None:
    expected = {"AccessToken", "AuthError", "ConfigurationError", "InvalidTokenError"}
    assert expected | {"TokenValidator", "render_challenge"} <= set(oauth_shield.__all__)
    assert isinstance(oauth_shield.__version__, str)


# --- adapters are written on the public seam ------------------------------------------------

ADAPTER_FILES = sorted(PACKAGE.parent.glob("adapters/*/__init__.py")) + [
    PACKAGE / f"{name}.py" for name in ("asgi", "fastapi", "mcp") if name in MODULES
]


def private_names(path: Path) -> list[str]:
    """Every private module of oauth_shield that ``path`` imports, or private name it takes."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("oauth_shield._")]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                found.append("." * node.level + (module or node.names[0].name))
            elif module.startswith("oauth_shield._"):
                found.append(module)
            elif module.startswith("oauth_shield"):
                found += [f"{module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and _private_attribute(node):
            found.append(f"attribute {node.attr}")  # validator._keys and the like
    return found


def _private_attribute(node: ast.Attribute) -> bool:
    """A private attribute of another object (its own are the adapter's business); werkzeug's
    documented LocalProxy accessor is public in all but name."""
    name, owner = node.attr, node.value
    if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
        return False
    return name[:1] == "_" != name[1:2] and name != "_get_current_object"


def test_the_adapter_files_exist() -> None:
    names = {
        path.parent.name if path.name == "__init__.py" else path.stem for path in ADAPTER_FILES
    }
    assert {"flask_oauth_shield", "quart_oauth_shield", "asgi"} <= names


@pytest.mark.parametrize("path", ADAPTER_FILES, ids=lambda path: path.parent.name + "/" + path.name)
def test_adapters_use_only_public_names(path: Path) -> None:
    assert private_names(path) == []


def test_the_adapter_checker_sees_private_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from oauth_shield._bearer import credentials\n"
        "from oauth_shield import _claims\n"
        "from . import _x\n"
        "validator._keys.start()\n"
    )
    assert private_names(sample) == [
        "oauth_shield._bearer",
        "oauth_shield._claims",
        "._x",
        "attribute _keys",
    ]
