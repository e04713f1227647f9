"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README.md has no python examples"
    namespace: dict[str, object] = {}
    for block in blocks:  # later blocks may use names from earlier ones, as a reader would
        exec(compile(block, str(README), "exec"), namespace)


def test_readme_is_a_short_guide() -> None:
    """At most ~200 lines of at most 110 characters (the two install commands, verbatim, excepted)."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 200
    long = [line for line in lines if len(line) > 110 and not line.startswith("pip install")]
    assert not long, long


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    lines = README.read_text().splitlines()
    command = next(line for line in lines if line.startswith("pip install") and "[test]" in line)
    assert command in ci
