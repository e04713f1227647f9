"""llama.cpp's quantized blocks (the data of GGUF tensors) in our stored formats, with integer operations only
where the layouts match.

A GGUF matrix of ``N`` rows and ``K`` columns is stored row by row, each row as ``K / 32`` blocks of 32 values:

- **Q4_0** (18 bytes): ``d`` (float16), then 16 bytes whose low nibbles are values 0..15 and high nibbles values
  16..31; ``w = d * (q - 8)``. Ours exactly: int4, group 32, ``scale = d``, ``offset = -8 d``.
- **Q4_1** (20 bytes): ``d``, ``m`` (float16), then the 16 bytes as in Q4_0; ``w = d * q + m``. Ours exactly:
  int4, group 32, ``scale = d``, ``offset = m``.
- **Q8_0** (34 bytes): ``d`` (float16), then 32 int8 values; ``w = d * q``. Its scale is per block, the int8
  kernel's per row, so these are **requantized**: the exact block values, re-rounded to one int8 scale a row
  (:func:`~multihead.quantize.formats.quantize_int8`).

Each function returns the tensors of :mod:`multihead.quantize.formats` and equals ``gguf.quants.dequantize``
exactly for Q4_0 and Q4_1 (tests/quantize/test_gguf_blocks.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multihead.errors import CheckpointError
from multihead.quantize.formats import pack_nibbles, quantize_int8
from multihead.quantize.linear import QuantizedLinear

__all__ = ["BLOCK", "BLOCK_BYTES", "int4_from_q4_blocks", "int8_from_q8_0_blocks", "keep_quantized_linears"]

BLOCK = 32
"""Values per block of Q4_0, Q4_1 and Q8_0."""
BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}
_FLOAT_TYPES = ("F32", "F16", "BF16", "F64")


def int4_from_q4_blocks(raw: Tensor, kind: str, *, columns: int) -> tuple[Tensor, Tensor, Tensor]:
    """Q4_0 or Q4_1 rows ``(N, K / 32 * bytes)`` uint8 -> ``qweight`` ``(N, K / 2)``, ``scales``, ``offsets``
    ``(N, K / 32)``, exactly (no rounding anywhere)."""
    blocks = _blocks(raw, kind, columns=columns)  # (N, K/32, bytes)
    rows, count = blocks.shape[:2]
    scales = _half(blocks[..., 0:2])  # (N, K/32)
    if kind == "Q4_1":
        offsets, nibbles = _half(blocks[..., 2:4]), blocks[..., 4:]
    else:
        offsets, nibbles = -8 * scales, blocks[..., 2:]  # d * (q - 8) = d * q + (-8 d); -8 d is exact
    values = torch.cat([nibbles & 0x0F, nibbles >> 4], dim=-1)  # (N, K/32, 32): low nibbles first
    return pack_nibbles(values.reshape(rows, count * BLOCK)), scales, offsets


def int8_from_q8_0_blocks(raw: Tensor, *, columns: int) -> tuple[Tensor, Tensor]:
    """Q8_0 rows ``(N, K / 32 * 34)`` uint8 -> int8 per output channel (``qweight`` ``(N, K)``, ``scales``
    ``(N,)``), requantized from the blocks' exact values (``d * q`` is exact in float32)."""
    blocks = _blocks(raw, "Q8_0", columns=columns)  # (N, K/32, 34)
    rows = blocks.shape[0]
    values = blocks[..., 2:].contiguous().view(torch.int8).float() * _half(blocks[..., 0:2])[..., None]
    return quantize_int8(values.reshape(rows, columns))  # (N, K)


def keep_quantized_linears(model: nn.Module, blocks: Mapping[str, tuple[str, Tensor]], *, origin: str) -> None:
    """Replace ``model``'s linear layers by ``QuantizedLinear``s made from their GGUF blocks.

    Q4_0 and Q4_1 become int4 with group 32 exactly, Q8_0 int8 (requantized), float types stay as they are, and
    other quantized types (K-quants, Q5) int8 requantized from the layer's current (dequantized) weight.

    Args:
        blocks: module name (``"decoder.layers.0.self_attn.q_proj"``) -> (GGUF type name, raw rows ``(N, bytes)``
            uint8, rows in our order). Layers not named keep their float weights.
        origin: the file, for messages.

    Raises:
        CheckpointError: a name that is not a linear layer, or rows that do not fit it (one line).
    """
    from multihead.quantize.model import replace_module

    for name, (kind, raw) in blocks.items():
        linear = model.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise CheckpointError(f"{origin}: {name} is not a linear layer; cannot keep its blocks quantized")
        if kind in _FLOAT_TYPES:
            continue
        module = QuantizedLinear(linear.in_features, linear.out_features, bits=4 if kind in ("Q4_0", "Q4_1") else 8,
                                 group_size=BLOCK if kind in ("Q4_0", "Q4_1") else None,
                                 bias=linear.bias is not None, device=linear.weight.device)
        try:
            if kind in ("Q4_0", "Q4_1"):
                module.qweight, module.scales, module.offsets = int4_from_q4_blocks(raw, kind,
                                                                                    columns=linear.in_features)
            elif kind == "Q8_0":
                module.qweight, module.scales = int8_from_q8_0_blocks(raw, columns=linear.in_features)
            else:
                module.qweight, module.scales = quantize_int8(linear.weight)
        except ValueError as error:
            raise CheckpointError(f"{origin}: {name} ({kind}): {error}") from error
        if linear.bias is not None:
            assert module.bias is not None
            module.bias.data.copy_(linear.bias.detach().float())
        if not bool(torch.isfinite(module.scales).all()):
            raise CheckpointError(f"{origin}: {name} ({kind}) has NaN or infinite block scales; the file is damaged")
        replace_module(model, name, module)


def _blocks(raw: Tensor, kind: str, *, columns: int) -> Tensor:
    """``raw`` rows as ``(N, K / 32, block bytes)`` uint8, checked against ``columns``."""
    size = BLOCK_BYTES.get(kind)
    if size is None:
        raise ValueError(f"block type {kind!r} is not one of {sorted(BLOCK_BYTES)}")
    if columns % BLOCK or raw.dtype != torch.uint8 or raw.dim() != 2 or raw.shape[1] != columns // BLOCK * size:
        raise ValueError(f"{kind} rows of {columns} values need uint8 rows of {columns // BLOCK * size} bytes "
                         f"({columns} a multiple of {BLOCK}), got {raw.dtype} {tuple(raw.shape)}")
    return raw.reshape(raw.shape[0], columns // BLOCK, size)


def _half(pairs: Tensor) -> Tensor:
    """``(..., 2)`` little-endian bytes of float16 values -> ``(...)`` float32 (exact)."""
    return pairs.contiguous().view(torch.float16)[..., 0].float()
