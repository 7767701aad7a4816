"""The front doors list exactly what they export."""

from __future__ import annotations

import types

import pytest

import kepler_async
import kepler_async.deepidv
import kepler_async.midlyr
import kepler_async.parsetx
import kepler_async.testing

MODULES = [
    kepler_async,
    kepler_async.testing,
    kepler_async.deepidv,
    kepler_async.midlyr,
    kepler_async.parsetx,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_all_lists_every_public_name(module: types.ModuleType) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    exported = set(module.__all__) - {"__version__"}
    assert exported == public
    assert len(module.__all__) == len(set(module.__all__))


def test_public_classes_live_in_private_modules_but_say_the_package() -> None:
    for name in kepler_async.__all__:
        value = getattr(kepler_async, name)
        if isinstance(value, type):
            assert value.__module__.startswith("kepler_async._"), name


def test_version_is_a_string() -> None:
    assert isinstance(kepler_async.__version__, str)
    assert kepler_async.__version__.count(".") == 2


def test_a_renamed_name_still_works_for_a_release_with_a_warning() -> None:
    import kepler_async

    with pytest.warns(DeprecationWarning, match="use kepler_async.KeplerJob"):
        old = kepler_async.Job  # type: ignore[attr-defined]
    assert old is kepler_async.KeplerJob
    assert "Job" not in kepler_async.__all__
    with pytest.raises(AttributeError):
        kepler_async.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
