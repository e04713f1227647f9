"""torch's own CPU kernels for weight-only int8 and int4 matrix products, probed once, and their run-time layouts.

- int8: ``torch.ops.aten._weight_int8pack_mm(x, qweight, scales)``, ``x`` ``(M, K)``, ``qweight`` int8
  ``(N, K)``, ``scales`` ``(N,)`` -> ``(M, N)``.
- int4: ``torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, inner_k_tiles)`` turns ``(N, K)`` int32 values
  ``0..15`` into the processor's packed layout (it differs between AVX2 and AVX-512, so it is made at run time and
  never saved), and ``torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, G, scale_and_zero)`` multiplies,
  ``scale_and_zero`` ``(K / G, N, 2)`` holding ``scale`` and ``zero`` with ``W = (q - 8) * scale + zero``.

On x86 both kernels are vectorised for bfloat16 inputs only (float32 inputs take a scalar loop that is several
times slower than a float32 matrix product), so the kernel path rounds the input rows and the scales to bfloat16,
accumulates in float32 and returns bfloat16 results, which the caller casts back. Where an op is missing (older
torch) or a shape does not fit it, :class:`~multihead.quantize.linear.QuantizedLinear` dequantizes and uses
``F.linear`` instead.

- dynamic int8 (x86 only): ``torch.ops.quantized.linear_dynamic`` (fbgemm) quantizes the input rows to 7-bit
  unsigned integers per call (one scale and zero point for the whole input; 7 bits keep AVX2's pairwise int16
  sums from saturating) and multiplies integer by integer. torch has announced the removal of its quantized
  tensor types, which this path needs to pack the weight; where they are gone it is not used.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import torch
from torch import Tensor

from multihead.cpu_features import has_amx_tiles
from multihead.quantize.formats import INT4_MIDDLE, unpack_nibbles

__all__ = [
    "KERNEL_DTYPE",
    "dynamic_int8_engine",
    "dynamic_int8_fits",
    "dynamic_int8_matmul",
    "dynamic_int8_prepack",
    "has_dynamic_int8_kernel",
    "has_int4_kernel",
    "has_int8_kernel",
    "int4_kernel_fits",
    "int4_kernel_layout",
    "int4_matmul",
    "int8_kernel_fits",
    "int8_matmul",
]

KERNEL_DTYPE = torch.bfloat16
"""The input, scale and output dtype of the kernel path (the one torch vectorises on x86)."""
_INT8_K_MULTIPLE = 16  # the AVX-512 int8 loop steps 16 input features at a time, AVX2 8: unaligned sizes misread
_INT4_N_MULTIPLE = 16  # the int4 packing works in blocks of 16 output features


@functools.cache
def has_int8_kernel() -> bool:
    """Whether this torch has the weight-only int8 CPU kernel."""
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


@functools.cache
def has_int4_kernel() -> bool:
    """Whether this torch has the weight-only int4 CPU kernel and its packing op (torch >= 2.6)."""
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and hasattr(
        torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


def int8_kernel_fits(in_features: int) -> bool:
    """Whether a layer of ``in_features`` inputs can use the int8 kernel."""
    return has_int8_kernel() and in_features % _INT8_K_MULTIPLE == 0


def int4_kernel_fits(out_features: int, in_features: int, group_size: int) -> bool:
    """Whether a layer of these sizes can use the int4 kernel."""
    return (has_int4_kernel() and out_features % _INT4_N_MULTIPLE == 0 and in_features % group_size == 0
            and in_features % 2 == 0)


def int8_matmul(x: Tensor, qweight: Tensor, scales: Tensor) -> Tensor:
    """``(M, K)`` rows times the int8 weight: ``(M, N)`` in ``KERNEL_DTYPE``.

    Args:
        scales: ``(N,)`` in ``KERNEL_DTYPE``.
    """
    return torch.ops.aten._weight_int8pack_mm(_kernel_rows(x), qweight, scales)


def int4_kernel_layout(qweight: Tensor, scales: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
    """The int4 kernel's packed weight and ``(K / G, N, 2)`` scale-and-zero tensor for the stored format."""
    values = unpack_nibbles(qweight).to(torch.int32)  # (N, K)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values.contiguous(), 1)
    zeros = offsets.float() + INT4_MIDDLE * scales.float()  # (N, K/G): W = (q - 8) * scale + zero
    scale_and_zero = torch.stack([scales.float(), zeros], dim=-1).transpose(0, 1)  # (K/G, N, 2)
    return packed, scale_and_zero.contiguous().to(KERNEL_DTYPE)


def int4_matmul(x: Tensor, packed: Tensor, group_size: int, scale_and_zero: Tensor) -> Tensor:
    """``(M, K)`` rows times the packed int4 weight: ``(M, N)`` in ``KERNEL_DTYPE``."""
    return torch.ops.aten._weight_int4pack_mm_for_cpu(_kernel_rows(x), packed, group_size, scale_and_zero)


def _kernel_rows(x: Tensor) -> Tensor:
    """``x`` as a fresh contiguous ``KERNEL_DTYPE`` tensor (the kernels load rows with aligned instructions)."""
    if x.dtype == KERNEL_DTYPE:
        return x.clone(memory_format=torch.contiguous_format)
    return x.to(KERNEL_DTYPE, memory_format=torch.contiguous_format)


@functools.cache
def has_dynamic_int8_kernel() -> bool:
    """Whether this torch can pack and multiply fbgemm's dynamic int8 linear layers (an x86 build with them)."""
    ops = torch.ops.quantized
    engines = torch.backends.quantized.supported_engines
    return (hasattr(ops, "linear_prepack") and hasattr(ops, "linear_dynamic") and "fbgemm" in engines
            and hasattr(torch, "_make_per_channel_quantized_tensor"))


def dynamic_int8_fits(device: torch.device) -> bool:
    """Whether a layer on ``device`` can use the dynamic int8 kernel."""
    return device.type == "cpu" and has_dynamic_int8_kernel()


@functools.cache
def dynamic_int8_engine() -> str:
    """The engine that packs dynamic int8 layers: oneDNN on CPUs with AMX tiles, where its int8 products run on
    them (1.25-2.7x fbgemm's on the Multi30k translator's layers, measured), fbgemm elsewhere."""
    return "onednn" if has_amx_tiles() and "onednn" in torch.backends.quantized.supported_engines else "fbgemm"


def dynamic_int8_prepack(qweight: Tensor, scales: Tensor, bias: Tensor | None,
                         engine: str | None = None) -> tuple[Any, bool]:
    """The packed form of the int8 format (symmetric per channel) and the bias, for ``engine`` (default
    :func:`dynamic_int8_engine`), and whether its inputs are rounded to 7 bits: fbgemm's AVX2 products add
    pairs of 8-bit products in 16 bits, which ``reduce_range`` keeps from saturating; oneDNN needs no such room."""
    engine = engine or dynamic_int8_engine()
    zero_points = torch.zeros(qweight.shape[0], dtype=torch.long)
    chosen = torch.backends.quantized.engine
    with warnings.catch_warnings():  # the deprecation notice of quantized tensors, said once in the docs
        warnings.simplefilter("ignore", UserWarning)
        try:
            torch.backends.quantized.engine = engine  # packing follows the global engine; the product, the pack
            weight = torch._make_per_channel_quantized_tensor(qweight, scales.double(), zero_points, 0)
            packed = torch.ops.quantized.linear_prepack(weight, None if bias is None else bias.float())
        finally:
            torch.backends.quantized.engine = chosen
    return packed, engine == "fbgemm"


def dynamic_int8_matmul(x: Tensor, packed: tuple[Any, bool]) -> Tensor:
    """``(M, K)`` float32 rows times a weight packed by :func:`dynamic_int8_prepack`, plus its bias: ``(M, N)``
    float32."""
    weight, reduce_range = packed
    return torch.ops.quantized.linear_dynamic(x.float().contiguous(), weight, reduce_range)
