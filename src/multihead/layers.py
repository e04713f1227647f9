"""Transformer building blocks: norms, ``FeedForward``, ``EncoderLayer`` and ``DecoderLayer``.

Shape legend: ``B`` batch, ``T`` target length, ``S`` context (source) length, ``D`` model width.
Both layers run pre-norm (``x + f(norm(x))``) or post-norm (``norm(x + f(x))``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from multihead.attention import MultiHeadAttention
from multihead.cache import KVCache
from multihead.packing import Packing
from multihead.positions import ALiBi, RotaryEmbedding

__all__ = ["DecoderLayer", "EncoderLayer", "FeedForward", "make_norm"]

Activation = Literal["relu", "gelu", "gelu_tanh", "silu", "swiglu"]
NormKind = Literal["layer", "rms"]


def make_norm(kind: NormKind, d_model: int, *, eps: float = 1e-5) -> nn.Module:
    """``LayerNorm`` or ``RMSNorm`` over the last dimension."""
    if kind == "layer":
        return nn.LayerNorm(d_model, eps=eps)
    if kind == "rms":
        return nn.RMSNorm(d_model, eps=eps)
    raise ValueError(f"norm must be 'layer' or 'rms', got {kind!r}")


class FeedForward(nn.Module):
    """Position-wise feed-forward: ``down(dropout(act(up(x))))``, or SwiGLU ``down(silu(gate(x)) * up(x))``."""

    def __init__(
        self, d_model: int, d_ff: int, *, activation: Activation = "gelu", dropout: float = 0.0, bias: bool = True
    ) -> None:
        super().__init__()
        if d_model <= 0 or d_ff <= 0:
            raise ValueError(f"d_model and d_ff must be positive, got {d_model} and {d_ff}")
        if activation not in ("relu", "gelu", "gelu_tanh", "silu", "swiglu"):
            raise ValueError(f"activation must be 'relu', 'gelu', 'gelu_tanh', 'silu' or 'swiglu', got {activation!r}")
        self.activation = activation
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if activation == "swiglu" else None
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D)`` -> ``(..., D)``."""
        if self.gate is not None:
            hidden = F.silu(self.gate(x)) * self.up(x)
        elif self.activation == "relu":
            hidden = F.relu(self.up(x))
        elif self.activation == "gelu_tanh":
            hidden = F.gelu(self.up(x), approximate="tanh")
        elif self.activation == "silu":
            hidden = F.silu(self.up(x))
        else:
            hidden = F.gelu(self.up(x))
        return self.down(self.dropout(hidden))


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each with a residual connection.

    Args:
        d_model, n_heads, n_kv_heads, positions: as in ``MultiHeadAttention``.
        d_ff: hidden width of the feed-forward block (default ``4 * d_model``).
        dropout: residual dropout; ``attention_dropout`` drops attention weights; ``activation_dropout``
            drops the feed-forward hidden units (default ``dropout``; BERT and GPT-2 use 0).
        activation: ``relu``, ``gelu``, ``gelu_tanh``, ``silu`` or ``swiglu``.
        norm_first: pre-norm (True) or post-norm (False, as in Vaswani et al. and BERT).
        norm: ``layer`` or ``rms``.
        bias: biases on every projection; ``qkv_bias`` overrides it for the query, key and value projections.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        d_ff: int | None = None,
        n_kv_heads: int | None = None,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float | None = None,
        activation: Activation = "gelu",
        norm_first: bool = True,
        norm: NormKind = "layer",
        eps: float = 1e-5,
        bias: bool = True,
        qkv_bias: bool | None = None,
        positions: RotaryEmbedding | ALiBi | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, n_kv_heads=n_kv_heads, bias=bias, qkv_bias=qkv_bias, dropout=attention_dropout,
            positions=positions,
        )
        self.feed_forward = FeedForward(
            d_model, d_ff or 4 * d_model, activation=activation, bias=bias,
            dropout=dropout if activation_dropout is None else activation_dropout,
        )
        self.attn_norm = make_norm(norm, d_model, eps=eps)
        self.ff_norm = make_norm(norm, d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        position_ids: Tensor | None = None,
        packing: Packing | None = None,
    ) -> Tensor:
        """``(B, T, D)`` -> ``(B, T, D)`` (or packed real tokens ``(N, D)`` with ``packing``); ``mask`` is
        True = may attend, broadcastable to ``(B, H, T, T)``."""
        def attend(h: Tensor) -> Tensor:
            return self.self_attn(h, mask=mask, is_causal=is_causal, position_ids=position_ids, packing=packing)[0]

        x = _residual(x, attend, self.attn_norm, self.dropout, self.norm_first)
        return _residual(x, self.feed_forward, self.ff_norm, self.dropout, self.norm_first)


class DecoderLayer(nn.Module):
    """Causal self-attention, optional cross-attention to a context, then feed-forward.

    Takes the arguments of ``EncoderLayer`` and also ``cross_attention`` (False for a decoder-only LM)
    and ``d_context``, the width of the context it attends to (default ``d_model``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        cross_attention: bool = True,
        d_context: int | None = None,
        d_ff: int | None = None,
        n_kv_heads: int | None = None,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float | None = None,
        activation: Activation = "gelu",
        norm_first: bool = True,
        norm: NormKind = "layer",
        eps: float = 1e-5,
        bias: bool = True,
        qkv_bias: bool | None = None,
        positions: RotaryEmbedding | ALiBi | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, n_kv_heads=n_kv_heads, bias=bias, qkv_bias=qkv_bias, dropout=attention_dropout,
            positions=positions,
        )
        self.attn_norm = make_norm(norm, d_model, eps=eps)
        self.cross_attn: MultiHeadAttention | None = None
        self.cross_norm: nn.Module | None = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(
                d_model, n_heads, n_kv_heads=n_kv_heads, d_context=d_context, bias=bias, qkv_bias=qkv_bias,
                dropout=attention_dropout,
            )
            self.cross_norm = make_norm(norm, d_model, eps=eps)
        self.feed_forward = FeedForward(
            d_model, d_ff or 4 * d_model, activation=activation, bias=bias,
            dropout=dropout if activation_dropout is None else activation_dropout,
        )
        self.ff_norm = make_norm(norm, d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        context_mask: Tensor | None = None,
        is_causal: bool = True,
        cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """``(B, T, D)`` (and context ``(B, S, Dc)``) -> ``(B, T, D)``.

        Args:
            mask: self-attention mask, True = may attend, broadcastable to ``(B, H, T, T_cached + T)``.
            context_mask: cross-attention mask broadcastable to ``(B, H, T, S)``, e.g. ``(B, 1, 1, S)``.
            cache, cross_cache: ``KVCache`` for incremental decoding.
        """
        def attend_self(h: Tensor) -> Tensor:
            return self.self_attn(h, mask=mask, is_causal=is_causal, cache=cache, position_ids=position_ids)[0]

        x = _residual(x, attend_self, self.attn_norm, self.dropout, self.norm_first)
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("this DecoderLayer has cross-attention and needs a context (B, S, Dc)")

            def attend_context(h: Tensor) -> Tensor:
                return self.cross_attn(h, context, mask=context_mask, cache=cross_cache)[0]

            x = _residual(x, attend_context, self.cross_norm, self.dropout, self.norm_first)
        return _residual(x, self.feed_forward, self.ff_norm, self.dropout, self.norm_first)


def _residual(
    x: Tensor, sublayer: Callable[[Tensor], Tensor], norm: nn.Module, dropout: nn.Module, norm_first: bool
) -> Tensor:
    """Pre-norm ``x + dropout(f(norm(x)))`` or post-norm ``norm(x + dropout(f(x)))``."""
    if norm_first:
        return x + dropout(sublayer(norm(x)))
    return norm(x + dropout(sublayer(x)))
