"""One intra-op thread for test folders of tiny tensors (their ``conftest.py`` makes it an autouse fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def one_intra_op_thread() -> Iterator[None]:
    """Tiny tensors: one thread is faster and does not stall when other processes share the CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
