"""The documentation site (``mkdocs.yml``, ``docs/``): it builds with ``--strict`` and
its reference holds every public name of every package (the objects inventory
against each ``__all__``)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = [
    "kepler_async",
    "kepler_async.deepidv",
    "kepler_async.midlyr",
    "kepler_async.parsetx",
    "kepler_async.testing",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    built = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(built)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return built


def inventory(site: Path) -> set[str]:
    data = (site / "objects.inv").read_bytes()
    body = data.split(b"\n", 4)[4]  # four header lines, then zlib
    return {line.split()[0] for line in zlib.decompress(body).decode().splitlines()}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_in_the_reference(site: Path, package: str) -> None:
    names = inventory(site)
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if f"{package}.{name}" not in names]
    assert missing == []


def test_the_readme_is_the_landing_page(site: Path) -> None:
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "Quickstart" in home
    assert "Testing your code against the simulator" in home
