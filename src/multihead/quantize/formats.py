"""The stored formats of weight-only quantization and the plain math that makes and reads them.

Two formats, both for a weight ``W`` of shape ``(N, K)`` (``N`` output features, ``K`` input features):

- **int8, per output channel (symmetric)**: ``qweight`` int8 ``(N, K)`` in ``-127..127`` and ``scales`` float32
  ``(N,)``; ``W[n, k] = scales[n] * qweight[n, k]``.
- **int4, in groups of ``G`` input features (asymmetric)**: ``qweight`` uint8 ``(N, K / 2)``, two 4-bit values a
  byte (column ``2i`` in the low nibble, ``2i + 1`` in the high one), ``scales`` and ``offsets`` float32
  ``(N, K / G)``; ``W[n, k] = scales[n, g] * q[n, k] + offsets[n, g]`` with ``q`` in ``0..15`` and
  ``g = k // G``. llama.cpp's Q4_1 blocks (``d * q + m``) are this format with ``G = 32`` as they are, and Q4_0
  blocks (``d * (q - 8)``) with ``offsets = -8 d`` (see :mod:`multihead.quantize.gguf_blocks`).

These are portable: the layout a CPU kernel wants differs between processors, so kernels repack at run time
(:mod:`multihead.quantize.kernels`). Scales made here are rounded up to bfloat16 values, and int4 offsets are
chosen so that ``offsets + 8 * scales`` is a bfloat16 value: torch's vectorised x86 kernels take their scales in
bfloat16, and with such scales they multiply by exactly the stored weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from multihead.errors import CheckpointError, ConfigError

__all__ = [
    "GROUP_SIZES",
    "ceil_to_bfloat16",
    "dequantize_int4",
    "dequantize_int8",
    "pack_nibbles",
    "quantize_int4",
    "quantize_int8",
    "unpack_nibbles",
]

GROUP_SIZES = (32, 64, 128, 256)
"""Group sizes of the int4 format (the ones torch's int4 kernels take)."""
INT4_MIDDLE = 8
"""int4 kernels compute ``(q - 8) * scale + zero``: their ``zero`` is ``offset + 8 * scale``."""


def ceil_to_bfloat16(values: Tensor) -> Tensor:
    """The smallest bfloat16-representable float32 values ``>=`` non-negative finite ``values``."""
    bits = values.float().contiguous().view(torch.int32)
    return ((bits + 0xFFFF) & ~0xFFFF).view(torch.float32)  # clear the 16 low mantissa bits, rounding up


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output channel: ``(N, K)`` floats -> ``qweight`` int8 ``(N, K)``, ``scales`` ``(N,)``.

    ``scales[n]`` is ``max |W[n]| / 127`` rounded up to a bfloat16 value; all-zero rows get scale 0.
    """
    _check_matrix(weight)
    weight = weight.detach().float()
    scales = ceil_to_bfloat16(weight.abs().amax(dim=1) / 127)  # (N,)
    divisor = torch.where(scales > 0, scales, torch.ones_like(scales))
    qweight = torch.round(weight / divisor[:, None]).clamp(-127, 127).to(torch.int8)  # (N, K)
    return qweight, scales


def dequantize_int8(qweight: Tensor, scales: Tensor) -> Tensor:
    """``(N, K)`` float32 weights of the int8 format."""
    return qweight.float() * scales.float()[:, None]


def quantize_int4(weight: Tensor, *, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric int4 in groups of ``group_size`` input features, from each group's minimum and maximum.

    Returns:
        ``qweight`` uint8 ``(N, K / 2)``, ``scales`` and ``offsets`` float32 ``(N, K / group_size)``.
    """
    _check_matrix(weight)
    rows, columns = weight.shape
    if group_size not in GROUP_SIZES or columns % group_size:
        raise ConfigError(f"int4 groups: group_size must be one of {GROUP_SIZES} and divide the {columns} input "
                         f"features, got {group_size}")
    groups = weight.detach().float().reshape(rows, columns // group_size, group_size)  # (N, K/G, G)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, K/G)
    scales = ceil_to_bfloat16((high - low) / 15)
    zeros = (low + INT4_MIDDLE * scales).to(torch.bfloat16).float()  # the kernels' zero point, exact in bfloat16
    offsets = zeros - INT4_MIDDLE * scales  # the value of q = 0
    divisor = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.round((groups - offsets[..., None]) / divisor[..., None]).clamp(0, 15).to(torch.uint8)  # (N, K/G, G)
    return pack_nibbles(q.reshape(rows, columns)), scales, offsets


def dequantize_int4(qweight: Tensor, scales: Tensor, offsets: Tensor) -> Tensor:
    """``(N, K)`` float32 weights of the int4 format (``K = 2 * qweight.shape[1]``)."""
    q = unpack_nibbles(qweight)  # (N, K)
    rows, columns = q.shape
    groups = scales.shape[1]
    grouped = q.reshape(rows, groups, columns // groups).float()  # (N, K/G, G)
    return (grouped * scales.float()[..., None] + offsets.float()[..., None]).reshape(rows, columns)


def pack_nibbles(values: Tensor) -> Tensor:
    """``(N, K)`` integers in ``0..15`` -> ``(N, K / 2)`` uint8: column ``2i`` low nibble, ``2i + 1`` high."""
    values = values.to(torch.uint8)
    return (values[:, 0::2] | (values[:, 1::2] << 4)).contiguous()


def unpack_nibbles(packed: Tensor) -> Tensor:
    """``(N, K / 2)`` uint8 -> ``(N, K)`` uint8 in ``0..15`` (inverse of :func:`pack_nibbles`)."""
    pairs = torch.stack([packed & 0x0F, packed >> 4], dim=-1)  # (N, K/2, 2)
    return pairs.reshape(packed.shape[0], packed.shape[1] * 2)  # (N, K)


def _check_matrix(weight: Tensor) -> None:
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"expected a floating-point (out_features, in_features) weight, got {weight.dtype} "
                         f"{tuple(weight.shape)}")
    if weight.numel() and not bool(torch.isfinite(weight).all()):
        raise CheckpointError("the weight holds NaN or infinite values; only finite weights can be quantized")
