"""Float64 reference attention, written plainly so that the package can be checked against it.

Nothing here imports ``multihead`` code paths or calls torch's fused attention: scores are an
``einsum``, masks are applied by hand and the ALiBi slopes and rotary rotation follow the papers.
Shape legend: ``B`` batch, ``H`` query heads, ``Hkv`` key/value heads, ``Tq``/``Tk`` query/key length,
``Dh`` head width, ``D`` model width.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "alibi_slopes",
    "reference_attention",
    "reference_causal_mask",
    "reference_mha",
    "reference_rotary",
]


def reference_causal_mask(query_length: int, key_length: int) -> Tensor:
    """``(Tq, Tk)`` bool, bottom-right aligned: query ``i`` sits at position ``Tk - Tq + i``."""
    allowed = torch.zeros(query_length, key_length, dtype=torch.bool)
    for i in range(query_length):
        for j in range(key_length):
            allowed[i, j] = j <= key_length - query_length + i
    return allowed


def reference_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Softmax attention in float64; returns ``(B, H, Tq, Dv)`` output and ``(B, H, Tq, Tk)`` weights.

    ``k``/``v`` may have fewer heads than ``q`` (grouped-query): query head ``h`` reads key head
    ``h // (H // Hkv)``. ``mask`` is bool, True = may attend, broadcastable to the scores. A query row
    with no allowed key gives zero weights and a zero output. Differentiable (plain torch ops).
    """
    q, k, v = q.double(), k.double(), v.double()
    batch, heads, query_length, width = q.shape
    kv_heads, key_length = k.shape[1], k.shape[2]
    group = heads // kv_heads
    head_of = torch.tensor([h // group for h in range(heads)])
    k, v = k[:, head_of], v[:, head_of]  # (B, H, Tk, Dh)
    scale = 1.0 / math.sqrt(width) if scale is None else scale

    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * scale  # (B, H, Tq, Tk)
    if bias is not None:
        scores = scores + bias.double()
    allowed = torch.ones(batch, heads, query_length, key_length, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask.to(torch.bool)
    if is_causal:
        allowed = allowed & reference_causal_mask(query_length, key_length)
    has_key = allowed.any(dim=-1, keepdim=True)  # (B, H, Tq, 1)
    scores = scores.masked_fill(~allowed, -math.inf).masked_fill(~has_key, 0.0)
    shifted = scores - scores.max(dim=-1, keepdim=True).values.detach()
    exp = shifted.exp()
    weights = (exp / exp.sum(dim=-1, keepdim=True)).masked_fill(~has_key, 0.0)
    out = torch.einsum("bhqk,bhkd->bhqd", weights, v)
    return out, weights


def alibi_slopes(n_heads: int) -> list[float]:
    """Per-head ALiBi slopes exactly as in the reference code of Press et al. (2022)."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


def reference_rotary(x: Tensor, positions: Tensor, *, base: float = 10000.0) -> Tensor:
    """Rotate-half RoPE in float64: channels ``j`` and ``j + Dh/2`` rotate by ``pos * base^(-2j/Dh)``.

    ``x`` is ``(..., T, Dh)`` and ``positions`` ``(T,)``.
    """
    x = x.double()
    half = x.shape[-1] // 2
    out = torch.empty_like(x)
    for j in range(half):
        theta = positions.double() * base ** (-2.0 * j / x.shape[-1])  # (T,)
        cos, sin = theta.cos(), theta.sin()
        a, b = x[..., j], x[..., j + half]
        out[..., j] = a * cos - b * sin
        out[..., j + half] = b * cos + a * sin
    return out


def _linear(x: Tensor, layer: Any) -> Tensor:
    """``x @ W^T + b`` in float64 from an ``nn.Linear``'s parameters."""
    out = x.double() @ layer.weight.detach().double().T
    if layer.bias is not None:
        out = out + layer.bias.detach().double()
    return out


def reference_mha(
    module: Any,
    x: Tensor,
    context: Tensor | None = None,
    *,
    mask: Tensor | None = None,
    is_causal: bool = False,
    rotary: bool = False,
    alibi: bool = False,
    rotary_base: float = 10000.0,
) -> tuple[Tensor, Tensor]:
    """Forward of a ``MultiHeadAttention`` recomputed in float64 from its weights.

    Reads only ``q_proj``/``k_proj``/``v_proj``/``out_proj`` and the head counts of ``module``.
    ``rotary`` rotates queries and keys at positions ``0..T-1``; ``alibi`` adds ``-slope_h * |i - j|``
    to the scores (self-attention only). Returns ``(B, Tq, D)`` output and ``(B, H, Tq, Tk)`` weights.
    """
    heads, kv_heads = module.n_heads, module.n_kv_heads
    source = x if context is None else context
    batch, query_length, d_model = x.shape
    key_length = source.shape[1]
    width = d_model // heads
    q = _linear(x, module.q_proj).reshape(batch, query_length, heads, width).permute(0, 2, 1, 3)
    k = _linear(source, module.k_proj).reshape(batch, key_length, kv_heads, width).permute(0, 2, 1, 3)
    v = _linear(source, module.v_proj).reshape(batch, key_length, kv_heads, width).permute(0, 2, 1, 3)
    bias = None
    if rotary:
        q = reference_rotary(q, torch.arange(query_length), base=rotary_base)
        k = reference_rotary(k, torch.arange(key_length), base=rotary_base)
    if alibi:
        bias = torch.zeros(1, heads, query_length, key_length, dtype=torch.float64)
        offset = key_length - query_length
        for h, slope in enumerate(alibi_slopes(heads)):
            for i in range(query_length):
                for j in range(key_length):
                    bias[0, h, i, j] = -slope * abs(offset + i - j)
    out, weights = reference_attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal)
    out = out.permute(0, 2, 1, 3).reshape(batch, query_length, d_model)
    return _linear(out, module.out_proj), weights
