"""The package shows its architecture: the engine knows no vendor, layers import down."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import kepler_async

PACKAGE = Path(kepler_async.__file__).parent
ENGINE = PACKAGE / "_engine"
VENDOR_PACKAGES = (
    "kepler_async._kepler",
    "kepler_async.deepidv",
    "kepler_async.midlyr",
    "kepler_async.parsetx",
    "kepler_async.testing",
    "kepler_async.cli",
)
# Words that belong to one vendor: in a name (of a variable, attribute, argument,
# function or class) inside the engine they would mean the engine knows that vendor.
VENDOR_WORDS = re.compile(
    r"kepler(?!_async)|deepidv|midlyr|parsetx|domain|score|adverse|screen|enrich",
    re.IGNORECASE,
)
#: The library's own names that carry the project's name, not a vendor's.
OURS = {"KeplerError"}


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _imports(tree: ast.AST, module: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.rsplit(".", node.level)[0]
                found.add(f"{base}.{node.module}" if node.module else base)
            else:
                found.add(node.module or "")
    return found


def _names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
    return names


@pytest.mark.parametrize("path", _modules(ENGINE), ids=lambda p: p.name)
def test_the_engine_imports_no_vendor_and_names_none(path: Path) -> None:
    module = "kepler_async._engine." + path.stem
    tree = ast.parse(path.read_text())
    vendor_imports = {name for name in _imports(tree, module) if name.startswith(VENDOR_PACKAGES)}
    assert not vendor_imports, f"{path.name} imports {vendor_imports}"
    vendor_names = {n for n in _names(tree) - OURS if VENDOR_WORDS.search(n)}
    assert not vendor_names, f"{path.name} names {vendor_names}"


@pytest.mark.parametrize(
    "folder", ["deepidv", "midlyr", "parsetx"], ids=lambda name: f"{name}-imports"
)
def test_vendor_packages_do_not_borrow_from_each_other_or_from_kepler(folder: str) -> None:
    others = tuple(p for p in VENDOR_PACKAGES if not p.endswith(folder))
    for path in _modules(PACKAGE / folder):
        module = f"kepler_async.{folder}.{path.stem}"
        borrowed = {
            n for n in _imports(ast.parse(path.read_text()), module) if n.startswith(others)
        }
        assert not borrowed, f"{folder}/{path.name} imports {borrowed}"


def test_one_submit_path() -> None:
    """Only the engine's channel sends a submit: no client builds its own POST loop."""
    senders = [
        path.relative_to(PACKAGE).as_posix()
        for path in _modules(PACKAGE)
        if "billed=request.billed" in path.read_text()
    ]
    assert senders == ["_engine/_channel.py", "_engine/_scheduler.py"]  # submit; polls
