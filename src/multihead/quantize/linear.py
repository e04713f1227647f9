"""``QuantizedLinear``: an ``nn.Linear`` whose weight is stored as int8 per channel or int4 in groups.

Shape legend: ``M`` rows (all leading dimensions together), ``K`` input features, ``N`` output features.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.quantize import kernels
from multihead.quantize.formats import (
    GROUP_SIZES,
    dequantize_int4,
    dequantize_int8,
    quantize_int4,
    quantize_int8,
)

__all__ = ["BACKENDS", "MAX_KERNEL_ROWS", "QuantizedLinear"]

Backend = Literal["auto", "kernel", "fallback", "dynamic"]
BACKENDS = ("auto", "kernel", "fallback", "dynamic")
MAX_KERNEL_ROWS = 32
"""``auto`` sends inputs of at most this many rows through torch's kernel and larger ones (a prompt) through
dequantize-then-``F.linear``, whose float32 matrix product is faster on many rows (``benchmarks/llm_decode.py``)."""


class QuantizedLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored in the int8 or int4 format of :mod:`multihead.quantize.formats`.

    Buffers saved with the model: ``qweight``, ``scales`` and (int4) ``offsets``; ``bias`` stays a float parameter.
    Inference only: the quantized weight has no gradient.

    Args:
        in_features, out_features: as ``nn.Linear``.
        bits: 8 (per output channel) or 4 (in groups of ``group_size`` input features).
        group_size: int4 only: one of 32, 64, 128, 256, dividing ``in_features``.
        bias: whether the layer has a bias.
        backend: ``auto`` (torch's CPU kernel for inputs of at most ``MAX_KERNEL_ROWS`` rows where it fits, else
            dequantize-then-``F.linear``), ``kernel`` (the kernel wherever it fits), ``fallback`` (always
            dequantize) or ``dynamic`` (int8 layers: the input is quantized too, per call, and multiplied in
            integers by fbgemm; faster, less exact; int4 layers and machines without it use ``auto``). The kernel
            path rounds inputs and scales to bfloat16 (see :mod:`.kernels`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bits: int,
        group_size: int | None = None,
        bias: bool = False,
        backend: Backend = "auto",
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"bits must be 8 or 4, got {bits!r}")
        if bits == 4 and (group_size not in GROUP_SIZES or in_features % group_size):
            raise ValueError(f"int4 needs group_size in {GROUP_SIZES} dividing in_features {in_features}, "
                             f"got {group_size!r}")
        if bits == 8 and group_size is not None:
            raise ValueError(f"int8 is per output channel: group_size must be None, got {group_size!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.backend = bits, group_size, backend
        if bits == 8:
            self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
            self.register_buffer("scales", torch.zeros(out_features, device=device))
        else:
            assert group_size is not None
            groups = in_features // group_size
            self.register_buffer("qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8,
                                                        device=device))
            self.register_buffer("scales", torch.zeros(out_features, groups, device=device))
            self.register_buffer("offsets", torch.zeros(out_features, groups, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None
        self._runtime: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None  # kernel layout and its source key

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, bits: int, group_size: int | None = None,
                    backend: Backend = "auto") -> QuantizedLinear:
        """Quantize ``linear``'s weight (the layer itself is left unchanged)."""
        module = cls(linear.in_features, linear.out_features, bits=bits, group_size=group_size if bits == 4 else None,
                     bias=linear.bias is not None, backend=backend, device=linear.weight.device)
        with torch.no_grad():
            if bits == 8:
                module.qweight, module.scales = quantize_int8(linear.weight)
            else:
                assert group_size is not None
                module.qweight, module.scales, module.offsets = quantize_int4(linear.weight, group_size=group_size)
            if linear.bias is not None:
                assert module.bias is not None
                module.bias.copy_(linear.bias.detach().float())
        return module

    @property
    def scheme(self) -> str:
        """``int8`` or ``int4_g<G>``: the stored format's name in a model directory's config."""
        return "int8" if self.bits == 8 else f"int4_g{self.group_size}"

    def dequantize(self) -> Tensor:
        """The weight ``(N, K)`` in float32, exactly as stored."""
        if self.bits == 8:
            return dequantize_int8(self.qweight, self.scales)
        return dequantize_int4(self.qweight, self.scales, self.offsets)

    def kernel_fits(self) -> bool:
        """Whether torch's CPU kernel can multiply by this layer's weight (op present, sizes it takes, on CPU)."""
        if self.qweight.device.type != "cpu":
            return False
        if self.bits == 8:
            return kernels.int8_kernel_fits(self.in_features)
        assert self.group_size is not None
        return kernels.int4_kernel_fits(self.out_features, self.in_features, self.group_size)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., K)`` -> ``(..., N)`` in ``x``'s dtype."""
        rows = x.numel() // max(x.shape[-1], 1)
        if self._use_dynamic(rows):
            (packed,) = self._kernel_tensors(dynamic=True)
            flat = x.reshape(rows, self.in_features)  # (M, K)
            out = kernels.dynamic_int8_matmul(flat, packed)  # (M, N), bias included
            return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)  # (..., N)
        if self._use_kernel(rows):
            flat = x.reshape(rows, self.in_features)  # (M, K)
            if self.bits == 8:
                (scales,) = self._kernel_tensors()
                out = kernels.int8_matmul(flat, self.qweight, scales)  # (M, N)
            else:
                assert self.group_size is not None
                packed, scale_and_zero = self._kernel_tensors()
                out = kernels.int4_matmul(flat, packed, self.group_size, scale_and_zero)  # (M, N)
            out = out.to(x.dtype)
            if self.bias is not None:
                out = out + self.bias.to(x.dtype)
            return out.reshape(*x.shape[:-1], self.out_features)  # (..., N)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize().to(x.dtype), bias)

    def _use_dynamic(self, rows: int) -> bool:
        return (self.backend == "dynamic" and self.bits == 8 and rows > 0
                and kernels.dynamic_int8_fits(self.qweight.device))

    def _use_kernel(self, rows: int) -> bool:
        if self.backend == "fallback" or rows == 0 or not self.kernel_fits():
            return False
        return self.backend == "kernel" or rows <= MAX_KERNEL_ROWS

    def _kernel_tensors(self, *, dynamic: bool = False) -> tuple[Any, ...]:
        """The kernel's run-time tensors, remade when a stored buffer was replaced or written since (or the
        other kernel's were made)."""
        sources = [self.qweight, self.scales] + ([self.offsets] if self.bits == 4 else [])
        sources += [self.bias] if dynamic and self.bias is not None else []
        key = (dynamic, *(value for tensor in sources
                          for value in (id(tensor), tensor.data_ptr(),
                                        -1 if tensor.is_inference() else tensor._version)))
        if self._runtime is None or self._runtime[0] != key:
            with torch.no_grad():
                if dynamic:
                    made: tuple[Any, ...] = (kernels.dynamic_int8_prepack(self.qweight, self.scales, self.bias),)
                elif self.bits == 8:
                    made = (self.scales.to(kernels.KERNEL_DTYPE),)
                else:
                    made = kernels.int4_kernel_layout(self.qweight, self.scales, self.offsets)
            self._runtime = (key, made)
        return self._runtime[1]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, {self.scheme}, "
                f"bias={self.bias is not None}, backend={self.backend}")
