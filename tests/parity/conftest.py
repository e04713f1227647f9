"""Shared fixtures of the parity tests."""

from __future__ import annotations

import pytest

from threads import one_intra_op_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)
