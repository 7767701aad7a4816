"""The README's Python examples run as written.

Blocks run one after another in one namespace, like cells of a notebook; a block with
top-level ``await`` runs on an event loop, as IPython runs such a cell.
"""

from __future__ import annotations

import ast
import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from tests.otel import reset_otel_globals

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
        reset_otel_globals()  # the Observability example set the global tracer provider
    out = capsys.readouterr().out
    assert "acme.test KI-1 67.2" in out
    assert "PipelineTimedOut sfn_timed_out True" in out


def _quickstart() -> list[str]:
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_each_quickstart_command_stands_alone_in_a_fresh_shell(tmp_path: Path) -> None:
    """The second command, run in a new shell after the first made ``.venv``, uses that
    venv's pip and pytest, never the system's (it ran the system's pip before)."""
    first, second = _quickstart()
    assert first.startswith("python3 -m venv .venv")
    called = tmp_path / "called.txt"
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    for tool in ("pip", "pytest"):  # what the first command's venv would hold
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "venv {tool} $*" >> "{called}"\n')
        stub.chmod(0o755)
    system = tmp_path / "system-bin"  # a fresh shell: the system's tools, no venv
    system.mkdir()
    for tool in ("pip", "pytest"):
        stub = system / tool
        stub.write_text(f'#!/bin/sh\necho "system {tool} $*" >> "{called}"\n')
        stub.chmod(0o755)
    env = {"PATH": f"{system}:/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(
        ["bash", "-c", second], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert called.read_text().splitlines() == ["venv pip install -e .[dev]", "venv pytest "]
