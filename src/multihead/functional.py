"""The attention kernel: ``scaled_dot_product`` with a fused and an explicit path, both NaN-safe.

Shape legend: ``B`` batch, ``H`` query heads, ``Hkv`` key/value heads (``H % Hkv == 0``),
``Tq`` query length, ``Tk`` key length, ``Dh`` head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from multihead.masks import causal_mask, combine_masks

__all__ = ["repeat_kv_heads", "scaled_dot_product"]


def repeat_kv_heads(x: Tensor, n_heads: int) -> Tensor:
    """Expand ``(B, Hkv, T, Dh)`` to ``(B, H, T, Dh)``: query head ``h`` reads key head ``h // (H // Hkv)``."""
    batch, kv_heads, length, width = x.shape
    if kv_heads == n_heads:
        return x
    group = n_heads // kv_heads
    expanded = x[:, :, None].expand(batch, kv_heads, group, length, width)  # (B, Hkv, G, T, Dh)
    return expanded.reshape(batch, n_heads, length, width)  # (B, H, T, Dh)


def scaled_dot_product(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    is_causal: bool = False,
    dropout: float = 0.0,
    need_weights: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Softmax attention of ``q`` over ``k``/``v``.

    Args:
        q: queries ``(B, H, Tq, Dh)``.
        k: keys ``(B, Hkv, Tk, Dh)``.
        v: values ``(B, Hkv, Tk, Dv)``.
        mask: bool, True = may attend, broadcastable to ``(B, H, Tq, Tk)``.
        bias: finite float scores added before softmax (ALiBi, additive masks), broadcastable likewise.
        is_causal: query ``i`` attends keys up to ``Tk - Tq + i`` (bottom-right aligned, as in cached decoding).
        dropout: probability of dropping attention weights (pass 0.0 in eval mode).
        need_weights: also return the weights; this takes the explicit path.
        scale: score scale, default ``1 / sqrt(Dh)``.

    Returns:
        ``(B, H, Tq, Dv)`` output and, if asked for, ``(B, H, Tq, Tk)`` weights in float32 (float64 for
        float64 inputs) after dropout, as ``torch.nn.MultiheadAttention`` returns them. A query row with
        no key allowed gives zeros and zero weights, never NaN, in the forward and the backward pass. With
        ``Tq > 1``, keys and values that no query may attend are zeroed first, so NaN or infinities there
        (padding) never reach the output.
    """
    n_heads, kv_heads = q.shape[1], k.shape[1]
    if n_heads % kv_heads != 0:
        raise ValueError(f"query heads ({n_heads}) must be a multiple of key/value heads ({kv_heads})")
    query_length, key_length = q.shape[-2], k.shape[-2]
    mask, bias = _as_4d(mask), _as_4d(bias)
    k = repeat_kv_heads(k, n_heads)
    v = repeat_kv_heads(v, n_heads)

    # Plain causal self-attention needs no mask tensor at all; a single new token sees every key.
    causal_only = is_causal and mask is None and bias is None
    if causal_only and not need_weights and query_length == key_length:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scale)
        return out, None
    if is_causal:
        if query_length > key_length:
            raise ValueError(f"is_causal needs query length <= key length, got {query_length} > {key_length}")
        if query_length > 1:
            mask = combine_masks(mask, causal_mask(query_length, key_length, device=q.device))

    # A key that no query may see must not reach the output, even when it holds NaN (padding after a damaged
    # layer): its weight is 0, but 0 * NaN is NaN in weights @ v, and NaN + -inf is NaN in the fused kernels'
    # scores. With one query (a decoding step) this would cost more than the attention itself, so the module
    # zeroes such rows before they enter a cache instead (MultiHeadAttention).
    if mask is not None and query_length > 1 and _may_hold_non_finite(k, v):
        seen = mask.any(dim=-2).unsqueeze(-1)  # (B|1, H|1, Tk, 1)
        k, v = torch.where(seen, k, 0.0), torch.where(seen, v, 0.0)

    # Rows with no allowed key are given every key (finite softmax, finite gradients), then zeroed.
    has_key: Tensor | None = None
    if mask is not None:
        has_key = mask.any(dim=-1, keepdim=True)  # (B|1, H|1, Tq, 1)
        mask = mask | ~has_key
    attn_bias: Tensor | None = mask
    if bias is not None:
        bias = bias.to(q.dtype)
        attn_bias = bias if mask is None else torch.where(mask, bias, float("-inf"))

    if need_weights:
        out, weights = _explicit_attention(q, k, v, attn_bias, has_key, dropout, scale)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=dropout, scale=scale)
        weights = None
    if has_key is not None:
        out = out.masked_fill(~has_key, 0.0)
    return out, weights


def _may_hold_non_finite(k: Tensor, v: Tensor) -> bool:
    """Whether ``k`` or ``v`` may hold NaN or an infinity. On a CPU one summing pass tells (about 1% of the
    attention's time; a broadcast ``where`` over both would cost 15-40%); on an accelerator, or while compiling,
    assume so: a ``where`` there is cheaper than the device sync (or graph break) a check would need."""
    if k.device.type != "cpu" or torch.compiler.is_compiling():
        return True
    with torch.no_grad():
        return not bool(torch.isfinite(k.sum() + v.sum()))


def _explicit_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_bias: Tensor | None,
    has_key: Tensor | None,
    dropout: float,
    scale: float | None,
) -> tuple[Tensor, Tensor]:
    """Attention written out, returning ``(B, H, Tq, Dv)`` output and ``(B, H, Tq, Tk)`` weights.

    ``q @ k^T`` runs in the input dtype (bf16 under autocast); bias addition and softmax run in float32
    (float64 for float64 inputs).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    score_dtype = torch.promote_types(q.dtype, torch.float32)
    scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (B, H, Tq, Tk)
    if attn_bias is not None:
        if attn_bias.dtype == torch.bool:
            scores = scores.masked_fill(~attn_bias, float("-inf"))
        else:
            scores = scores.to(score_dtype) + attn_bias  # the bias keeps its precision under autocast
    weights = torch.softmax(scores, dim=-1, dtype=score_dtype)
    if has_key is not None:
        weights = weights.masked_fill(~has_key, 0.0)
    if dropout > 0.0:
        weights = F.dropout(weights, p=dropout)
    return torch.matmul(weights.to(v.dtype), v), weights


def _as_4d(x: Tensor | None) -> Tensor | None:
    """Prepend singleton dims so a broadcastable mask or bias is ``(B|1, H|1, Tq|1, Tk)``."""
    if x is None or x.dim() == 4:
        return x
    return x.reshape((1,) * (4 - x.dim()) + tuple(x.shape))  # (1.., Tq|1, Tk)
