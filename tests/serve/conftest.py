"""Shared setup of the server tests: ``tiny_serve`` importable, one intra-op thread, one server for the module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from threads import one_intra_op_thread

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_serve import RunningServer, all_models, serving

_one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """Every kind of tiny model behind one server with the default settings (4 decoding slots)."""
    with serving(all_models(), slots=4) as running:
        yield running
