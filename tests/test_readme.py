"""The README's Python examples run as written.

Blocks run one after another in one namespace, like cells of a notebook; a block with
top-level ``await`` runs on an event loop, as IPython runs such a cell.
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


def test_readme_examples_run_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    try:
        for number, source in enumerate(BLOCKS):
            code = compile(
                source, f"README.md block {number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            )
            result = eval(code, namespace)
            if asyncio.iscoroutine(result):
                loop.run_until_complete(result)
    finally:
        loop.close()
    out = capsys.readouterr().out
    assert "acme.test KI-1 67.2" in out
    assert "PipelineTimedOut sfn_timed_out True" in out
