"""Shared test setup: make ``tests/`` importable so that every test can ``from reference import ...``."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Say how many tests skipped for want of a data set or a model package, and how to get them."""
    needs = ("multihead data fetch", "MULTIHEAD_DATA", "pip install")
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if any(word in str(getattr(report, "longrepr", "")) for word in needs)]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} tests skipped because a data set or a model package is absent; "
                                    "`multihead data list` says what is missing and how to get it")
