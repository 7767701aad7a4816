"""The README's Python examples run as written."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    script = tmp_path / "example.py"
    script.write_text(source, encoding="utf-8")
    runpy.run_path(str(script), run_name="__main__")
    assert "Traceback" not in capsys.readouterr().err
