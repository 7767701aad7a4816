"""The ``kepler-async`` command line (extra ``cli``: click and rich)."""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
