"""One test body, two event loops, two plugins that never claim each other's tests.

A module whose async tests must hold on asyncio and on trio ends with::

    run_on_asyncio_and_trio(globals(), virtual_time=True)

That leaves each ``test_*`` coroutine where it is and marks it for pytest-asyncio
(``@pytest.mark.asyncio``; with ``virtual_time`` its loop is ``VirtualTimeLoop``, chosen
through the ``pytest_asyncio_loop_factories`` hook in ``conftest.py``). It then adds a
class ``TestOnTrio`` holding a copy of every such test marked for anyio's plugin
(``@pytest.mark.anyio``), with an ``anyio_backend`` fixture that names trio (on
``trio.testing.MockClock(autojump_threshold=0)`` with ``virtual_time``).

Only the copies request ``anyio_backend``, so anyio's plugin, which claims a test or an
async fixture exactly when ``anyio_backend`` is among its fixtures, never touches the
asyncio tests; pytest-asyncio runs in strict mode, where it claims only tests marked
``asyncio`` and fixtures made with ``pytest_asyncio.fixture``, so it never touches the
trio copies. Async fixtures such a module needs are passed as ``async_fixtures``: each is
registered twice, as a ``pytest_asyncio.fixture`` for the module and as an anyio fixture
inside ``TestOnTrio`` (a class-level fixture overrides a module-level one of that name).
A test that means something on one loop only says so with ``@only_on("asyncio")`` or
``@only_on("trio")``.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import pytest
import pytest_asyncio

VIRTUAL = "virtual"

_F = TypeVar("_F", bound=Callable[..., Any])


def only_on(loop: Literal["asyncio", "trio"]) -> Callable[[_F], _F]:
    """Keep a test of a two-loop module on one loop (the reason belongs in its docstring)."""

    def mark(function: _F) -> _F:
        function.__dict__["_only_on"] = loop
        return function

    return mark


def _copy(function: Callable[..., Any], name: str | None = None) -> types.FunctionType:
    """A new function object on the same code, with its own list of pytest marks."""
    assert isinstance(function, types.FunctionType)
    twin = types.FunctionType(
        function.__code__,
        function.__globals__,
        name or function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    twin.__kwdefaults__ = function.__kwdefaults__
    twin.__dict__.update(function.__dict__)
    if "pytestmark" in function.__dict__:
        twin.__dict__["pytestmark"] = list(function.__dict__["pytestmark"])
    twin.__module__ = function.__module__
    twin.__qualname__ = twin.__name__
    twin.__doc__ = function.__doc__
    twin.__annotations__ = dict(function.__annotations__)
    return twin


def run_on_asyncio_and_trio(
    namespace: dict[str, Any],
    *,
    virtual_time: bool,
    async_fixtures: Iterable[Callable[..., Any]] = (),
) -> None:
    module_marks = namespace.get("pytestmark", [])
    if not isinstance(module_marks, list):
        module_marks = [module_marks]
    if any(getattr(mark, "name", None) in ("asyncio", "anyio") for mark in module_marks):
        raise RuntimeError("no asyncio or anyio module mark: it would reach both copies")
    on_asyncio = (
        pytest.mark.asyncio(loop_factories=[VIRTUAL]) if virtual_time else pytest.mark.asyncio
    )
    on_trio: dict[str, Any] = {"__module__": namespace["__name__"]}

    for name, value in list(namespace.items()):
        if name.startswith("test_") and inspect.iscoroutinefunction(value):
            if any(mark.name == "asyncio" for mark in getattr(value, "pytestmark", ())):
                continue  # marked for pytest-asyncio by hand: an asyncio-only test
            only = getattr(value, "_only_on", None)
            if only != "asyncio":
                # (anyio's collection hook does not see through staticmethod: say here
                # that the copy uses `anyio_backend`, or anyio adds a copy per backend)
                twin = pytest.mark.usefixtures("anyio_backend")(pytest.mark.anyio(_copy(value)))
                on_trio[name] = staticmethod(twin)
            if only == "trio":
                del namespace[name]
            else:
                namespace[name] = on_asyncio(value)

    for function in async_fixtures:
        name = function.__name__
        namespace[name] = pytest_asyncio.fixture(_copy(function), name=name)
        on_trio[name] = pytest.fixture(staticmethod(_copy(function)), name=name)

    def anyio_backend() -> object:
        if not virtual_time:
            return "trio"
        import trio.testing

        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    on_trio["anyio_backend"] = pytest.fixture(staticmethod(anyio_backend))
    namespace["TestOnTrio"] = type("TestOnTrio", (), on_trio)
