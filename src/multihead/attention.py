"""``MultiHeadAttention``: projections, position handling and caches around the attention kernel.

Shape legend: ``B`` batch, ``Tq`` query length, ``Tk`` key length (context or cache included),
``D`` model width, ``Dc`` context width, ``H`` query heads, ``Hkv`` key/value heads, ``Dh`` head width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multihead.cache import KVCache
from multihead.functional import scaled_dot_product
from multihead.masks import validate_mask
from multihead.packing import Packing
from multihead.positions import ALiBi, RotaryEmbedding

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """Multi-head attention for self-, cross-, causal, grouped-query and cached attention.

    Args:
        d_model: width ``D`` of queries and of the output.
        n_heads: number of query heads ``H``; must divide ``d_model``.
        n_kv_heads: key/value heads ``Hkv`` (grouped-query; 1 = multi-query); default ``n_heads``.
        d_context: width ``Dc`` of the keys' source in cross-attention; default ``d_model``.
        bias: biases on the four projections.
        dropout: dropout on attention weights, in training mode.
        positions: a ``RotaryEmbedding`` (rotates queries and keys) or ``ALiBi`` (biases scores);
            applied in self-attention only.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        d_context: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        positions: RotaryEmbedding | ALiBi | None = None,
    ) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        d_context = d_model if d_context is None else d_context
        if d_model <= 0 or n_heads <= 0 or n_kv_heads <= 0 or d_context <= 0:
            raise ValueError(
                f"d_model, n_heads, n_kv_heads and d_context must be positive, "
                f"got {d_model}, {n_heads}, {n_kv_heads}, {d_context}"
            )
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads ({n_heads}) must be divisible by n_kv_heads ({n_kv_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if positions is not None and not isinstance(positions, RotaryEmbedding | ALiBi):
            raise ValueError(f"positions must be RotaryEmbedding, ALiBi or None, got {type(positions).__name__}")
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        if isinstance(positions, RotaryEmbedding) and positions.head_dim != self.head_dim:
            raise ValueError(f"rotary head_dim {positions.head_dim} != attention head_dim {self.head_dim}")
        if isinstance(positions, ALiBi) and positions.n_heads != n_heads:
            raise ValueError(f"ALiBi built for {positions.n_heads} heads, attention has {n_heads}")
        self.dropout = dropout
        self.positions = positions
        kv_width = n_kv_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_context, kv_width, bias=bias)
        self.v_proj = nn.Linear(d_context, kv_width, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
        position_ids: Tensor | None = None,
        packing: Packing | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` to itself (``context=None``) or to ``context``.

        Args:
            x: queries' source ``(B, Tq, D)``.
            context: keys' source ``(B, Tk, Dc)`` for cross-attention. With a cache that is already
                filled, the cached keys are used and ``context`` is not projected again.
            mask: bool, True = may attend, broadcastable to ``(B, H, Tq, Tk)``; with a self-attention
                cache ``Tk`` counts the cached positions too.
            is_causal: causal self-attention; with a cache, the new queries are the last ``Tq`` positions.
            cache: a ``KVCache``; self-attention appends to it, cross-attention fills it once.
            need_weights: also return per-head weights ``(B, H, Tq, Tk)`` (computed only when asked).
            position_ids: positions of the queries ``(Tq,)`` or ``(B, Tq)`` for rotary embeddings;
                default ``cache.length + arange(Tq)``.
            packing: self-attention over a padded batch given as its real tokens: ``x`` is ``(N, D)``
                and so is the output; projections run on the ``N`` tokens only.

        Returns:
            output ``(B, Tq, D)`` (``(N, D)`` with ``packing``) and the weights or ``None``.
        """
        if packing is not None:
            if context is not None or cache is not None:
                raise ValueError("packing is for self-attention without a cache")
            if x.dim() != 2 or x.shape != (packing.index.numel(), self.d_model):
                raise ValueError(f"packed x must be (N, {self.d_model}) = ({packing.index.numel()}, "
                                 f"{self.d_model}), got shape {tuple(x.shape)}")
            batch, query_length = packing.batch, packing.length
        elif x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (B, Tq, {self.d_model}), got shape {tuple(x.shape)}")
        else:
            batch, query_length, _ = x.shape
        q = self._split_heads(self.q_proj(x), batch, query_length, self.n_heads, packing)  # (B, H, Tq, Dh)
        past = 0
        if context is not None:
            if cache is not None and cache.length > 0:
                k, v = cache.cached()
            else:
                k, v = self._project_keys_values(context, context.shape[0], context.shape[1])
                if cache is not None:
                    k, v = cache.update(k, v)
        else:
            past = 0 if cache is None else cache.length
            k, v = self._project_keys_values(x, batch, query_length, packing)
            if isinstance(self.positions, RotaryEmbedding):
                if position_ids is None:
                    position_ids = torch.arange(past, past + query_length, device=x.device)
                q, k = self.positions(q, position_ids), self.positions(k, position_ids)
            if cache is not None:
                k, v = cache.update(k, v)
        key_length = k.shape[2]

        bias = None
        if isinstance(self.positions, ALiBi) and context is None:
            key_positions = torch.arange(key_length, device=x.device)
            bias = self.positions(key_positions[past:past + query_length], key_positions)  # (1, H, Tq, Tk)
        if mask is not None:
            mask = validate_mask(mask, batch, self.n_heads, query_length, key_length)
        out, weights = scaled_dot_product(
            q, k, v,
            mask=mask,
            bias=bias,
            is_causal=is_causal,
            dropout=self.dropout if self.training else 0.0,
            need_weights=need_weights,
        )  # (B, H, Tq, Dh)
        out = out.transpose(1, 2).reshape(batch, query_length, self.d_model)  # (B, Tq, D)
        if packing is not None:
            out = packing.unpad(out)  # (N, D)
        return self.out_proj(out), weights

    @staticmethod
    def _split_heads(projected: Tensor, batch: int, length: int, heads: int, packing: Packing | None) -> Tensor:
        """``(B, T, heads * Dh)`` (or packed ``(N, heads * Dh)``) -> ``(B, heads, T, Dh)``."""
        if packing is not None:
            projected = packing.pad(projected)  # (B, T, heads * Dh)
        return projected.view(batch, length, heads, -1).transpose(1, 2)  # (B, heads, T, Dh)

    def _project_keys_values(
        self, source: Tensor, batch: int, length: int, packing: Packing | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(B, Tk, Dc)`` (or packed ``(N, D)``) -> keys and values ``(B, Hkv, Tk, Dh)``."""
        k = self._split_heads(self.k_proj(source), batch, length, self.n_kv_heads, packing)
        v = self._split_heads(self.v_proj(source), batch, length, self.n_kv_heads, packing)
        return k, v  # (B, Hkv, Tk, Dh) each

    def make_cache(
        self, *, batch_size: int, max_length: int, dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> KVCache:
        """A cache that fits this module's key/value heads."""
        weight = self.k_proj.weight
        return KVCache(batch_size=batch_size, max_length=max_length, n_kv_heads=self.n_kv_heads,
                       head_dim=self.head_dim, dtype=dtype or weight.dtype, device=device or weight.device)
