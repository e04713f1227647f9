"""Faster one-row matrix products for decoding on a CPU: transposed copies of the large weights.

A decoding step at batch 1 multiplies one row by every weight matrix, so its cost is reading the weights.
On the CPUs measured here (``benchmarks/README.md``), ``F.linear`` reads a large ``(out, in)`` weight at about
half the memory bandwidth when the input has one or two rows, while the same product against a contiguous
``(in, out)`` copy runs at the bandwidth limit (GPT-2's 50257 x 768 output layer: 25.6 ms against 11.9 ms).
``OneRowWeights`` keeps such copies of a model's large ``nn.Linear`` weights and, while active, sends inputs of
at most ``max_rows`` rows through them; everything else (prefill, beams, batches, training) takes
``nn.Linear`` unchanged. The copies cost one more set of those weights in memory during decoding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["OneRowWeights"]

MAX_ROWS = 2
"""Rows up to which the transposed product is faster (measured: 1-2 rows faster, 4 or more not)."""
MIN_ELEMENTS = 1 << 20
"""Weights smaller than this (4 MB in fp32) stay in cache, where ``F.linear`` is as fast."""


class OneRowWeights:
    """Transposed copies of ``model``'s large CPU ``nn.Linear`` weights, used by :meth:`active`.

    Args:
        max_rows: inputs with at most this many rows (all leading dimensions together) use the copies.
        min_elements: only weights with at least this many elements get a copy (default :data:`MIN_ELEMENTS`).
    """

    def __init__(self, model: nn.Module, *, max_rows: int = MAX_ROWS, min_elements: int | None = None) -> None:
        min_elements = MIN_ELEMENTS if min_elements is None else min_elements
        if max_rows < 1 or min_elements < 0:
            raise ValueError(f"max_rows must be >= 1 and min_elements >= 0, got {max_rows} and {min_elements}")
        self.max_rows = max_rows
        self.layers = [module for module in model.modules()
                       if type(module) is nn.Linear and module.weight.device.type == "cpu"
                       and module.weight.numel() >= min_elements]
        self._copies: dict[int, tuple[int, Tensor]] = {}  # id(layer) -> (weight version, (in, out) copy)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Route small inputs of the chosen layers through the copies; restores the layers on exit."""
        for layer in self.layers:
            layer.forward = self._forward(layer, self._copy(layer))  # an instance attribute shadows Linear.forward
        try:
            yield
        finally:
            for layer in self.layers:
                del layer.forward

    def _copy(self, layer: nn.Linear) -> Tensor:
        """The ``(in, out)`` copy of ``layer.weight``, made again if the weight changed since."""
        version = layer.weight._version
        cached = self._copies.get(id(layer))
        if cached is None or cached[0] != version:
            with torch.no_grad():
                cached = (version, layer.weight.detach().t().contiguous())  # (in, out)
            self._copies[id(layer)] = cached
        return cached[1]

    def _forward(self, layer: nn.Linear, transposed: Tensor) -> Callable[[Tensor], Tensor]:
        max_rows = self.max_rows

        def forward(x: Tensor) -> Tensor:
            rows = x.numel() // max(x.shape[-1], 1)
            if rows > max_rows or torch.is_grad_enabled() or x.dtype != transposed.dtype:
                return nn.Linear.forward(layer, x)
            out = x.reshape(rows, x.shape[-1]) @ transposed  # (R, out)
            if layer.bias is not None:
                out = out + layer.bias
            return out.reshape(*x.shape[:-1], transposed.shape[1])  # (..., out)

        return forward
