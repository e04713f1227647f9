"""Shared setup of the quantization tests: ``quantize_models`` importable, one intra-op thread."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from threads import one_intra_op_thread

sys.path.insert(0, str(Path(__file__).resolve().parent))


_one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)
