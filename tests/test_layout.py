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
    """Only the engine's submit path sends a submit: no client builds its own POST loop."""
    senders = [
        path.relative_to(PACKAGE).as_posix()
        for path in _modules(PACKAGE)
        if "billed=request.billed" in path.read_text()
    ]
    assert senders == ["_engine/_poll.py", "_engine/_submit.py"]  # polls; submits


# --- the layers: no circle of imports, no long unit -----------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in _modules(PACKAGE)}


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> set[str]:
    """The modules of ours an import statement loads (a name that is a submodule
    counts as that submodule; anything else as the module it comes from)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    if node.level:
        package = module if is_package else module.rsplit(".", 1)[0]
        if node.level > 1:
            package = package.rsplit(".", node.level - 1)[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    found = set()
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:
            found.add(f"{base}.{alias.name}")
        elif base in MODULES:
            found.add(base)
    return found


def _import_graph() -> dict[str, set[str]]:
    """Every import of every module, at the top, under ``TYPE_CHECKING`` or inside a
    function alike: a circle that only typing or a late import hides is still one."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(node, module, path.name == "__init__.py")
        graph[module] = edges - {module}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_anywhere_in_the_package() -> None:
    """Each module can be read knowing only the modules below it."""
    graph = _import_graph()
    assert graph["kepler_async._engine._scheduler"], "the graph reads no imports"
    assert _circles(graph) == []


#: Where a long function is the nature of the thing (a click command's options, an app's
#: route table), not a unit doing several jobs.
LONG_ALLOWED = ("cli", "testing")
MAX_FUNCTION_LINES = 70
MAX_ENGINE_MODULE_LINES = 450


def test_no_long_function_outside_the_cli_and_the_testing_kit() -> None:
    long = []
    for module, path in MODULES.items():
        if module.split(".")[1:2] and module.split(".")[1] in LONG_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert long == []


def test_no_long_engine_module() -> None:
    long = [
        f"{module}: {lines} lines"
        for module, path in MODULES.items()
        if module.startswith("kepler_async._engine")
        and (lines := len(path.read_text().splitlines())) > MAX_ENGINE_MODULE_LINES
    ]
    assert long == []


def test_each_apis_knowledge_is_in_one_spec() -> None:
    """Key, origin, auth header, error mapping and never-started live in the client's
    ``ApiSpec``; no client adds hooks of its own for them."""
    from kepler_async import AsyncKepler
    from kepler_async._engine._spec import ApiSpec
    from kepler_async.deepidv import AsyncDeepidv
    from kepler_async.midlyr import AsyncMidLyr
    from kepler_async.parsetx import AsyncParseTx

    old_hooks = {
        "_error_mapper",
        "_never_started",
        "_resolve_key",
        "_resolve_base_url",
        "_describe_key",
        "_api_key_env",
        "_default_base_url",
        "_auth_header",
        "_key_prefixes",
        "_api_name",
    }
    for client in (AsyncKepler, AsyncDeepidv, AsyncMidLyr, AsyncParseTx):
        assert isinstance(client._spec, ApiSpec)
        assert not old_hooks & set(vars(client)), client.__name__
