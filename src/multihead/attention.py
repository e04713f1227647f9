"""``MultiHeadAttention``: projections, position handling and caches around the attention kernel.

Shape legend: ``B`` batch, ``Tq`` query length, ``Tk`` key length (context or cache included),
``D`` model width, ``Dc`` context width, ``H`` query heads, ``Hkv`` key/value heads, ``Dh`` head width.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

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
        n_heads: number of query heads ``H``; must divide ``d_model`` unless ``head_dim`` is given.
        n_kv_heads: key/value heads ``Hkv`` (grouped-query; 1 = multi-query); default ``n_heads``.
        d_context: width ``Dc`` of the keys' source in cross-attention; default ``d_model``.
        bias: biases on the four projections.
        qkv_bias: biases on the query, key and value projections only; ``None`` (default) follows ``bias``
            (Qwen2: ``bias=False, qkv_bias=True``).
        dropout: dropout on attention weights, in training mode.
        positions: a ``RotaryEmbedding`` (rotates queries and keys) or ``ALiBi`` (biases scores);
            applied in self-attention only.
        head_dim: head width ``Dh``; default ``d_model // n_heads``. Given explicitly (by pruned modules),
            the inner width ``H * Dh`` may differ from ``D`` and ``H`` may be 0 (the output is then
            ``out_proj``'s bias).

    Attributes:
        head_mask: ``None`` (default), or a float tensor ``(H,)`` or ``(B, H)`` that multiplies each head's
            output before ``out_proj`` (Michel et al., 2019); gradients flow to it.
        head_ids: the original index of each remaining head (``0 .. H-1`` until heads are pruned).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        d_context: int | None = None,
        bias: bool = True,
        qkv_bias: bool | None = None,
        dropout: float = 0.0,
        positions: RotaryEmbedding | ALiBi | None = None,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        d_context = d_model if d_context is None else d_context
        fewest_heads = 1 if head_dim is None else 0  # a pruned module may have lost every head
        if d_model <= 0 or d_context <= 0 or n_heads < fewest_heads or n_kv_heads < fewest_heads:
            raise ValueError(
                f"d_model, n_heads, n_kv_heads and d_context must be positive, "
                f"got {d_model}, {n_heads}, {n_kv_heads}, {d_context}"
            )
        if head_dim is not None and head_dim <= 0:
            raise ValueError(f"head_dim must be positive, got {head_dim}")
        if head_dim is None and d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if (n_kv_heads == 0) != (n_heads == 0) or (n_kv_heads and n_heads % n_kv_heads):
            raise ValueError(f"n_heads ({n_heads}) must be divisible by n_kv_heads ({n_kv_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if positions is not None and not isinstance(positions, RotaryEmbedding | ALiBi):
            raise ValueError(f"positions must be RotaryEmbedding, ALiBi or None, got {type(positions).__name__}")
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.head_dim = d_model // n_heads if head_dim is None else head_dim
        self.head_ids: tuple[int, ...] = tuple(range(n_heads))
        self.head_mask: Tensor | None = None
        if isinstance(positions, RotaryEmbedding) and positions.head_dim != self.head_dim:
            raise ValueError(f"rotary head_dim {positions.head_dim} != attention head_dim {self.head_dim}")
        if isinstance(positions, ALiBi) and positions.n_heads != n_heads:
            raise ValueError(f"ALiBi built for {positions.n_heads} heads, attention has {n_heads}")
        self.dropout = dropout
        self.positions = positions
        inner, kv_width = n_heads * self.head_dim, n_kv_heads * self.head_dim
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.q_proj = _linear(d_model, inner, bias=qkv_bias)
        self.k_proj = _linear(d_context, kv_width, bias=qkv_bias)
        self.v_proj = _linear(d_context, kv_width, bias=qkv_bias)
        self.out_proj = _linear(inner, d_model, bias=bias)

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
        if self.n_heads == 0:
            return self._without_heads(x, context, cache, batch, query_length, need_weights)
        q = self._split_heads(self.q_proj(x), batch, query_length, self.n_heads, packing)  # (B, H, Tq, Dh)
        past = 0 if cache is None or context is not None else cache.length
        if mask is not None:
            filled = context is not None and cache is not None and cache.length > 0
            keys = (cache.length if filled else context.shape[1]) if context is not None else past + query_length
            mask = validate_mask(mask, batch, self.n_heads, query_length, keys)
        # New keys that no query may see are zeroed where the kernel does not do it (one query) and before a
        # cache keeps them for later steps: padding holding NaN must not reach any output. A decoding step's one
        # new self-attention key is its own token's (caches may write it at a column of its row's own).
        hide = mask is not None and (cache is not None or query_length == 1) and (context is not None
                                                                                 or query_length > 1)
        if context is not None:
            if cache is not None and cache.length > 0:
                k, v = cache.cached()
            else:
                k, v = self._project_keys_values(context, context.shape[0], context.shape[1])
                if hide:
                    k, v = _hide_unseen(k, v, mask, 0)
                if cache is not None:
                    k, v = cache.update(k, v)
        else:
            k, v = self._project_keys_values(x, batch, query_length, packing)
            if isinstance(self.positions, RotaryEmbedding):
                if position_ids is None:
                    position_ids = torch.arange(past, past + query_length, device=x.device)
                q, k = self.positions(q, position_ids), self.positions(k, position_ids)
            if hide:
                k, v = _hide_unseen(k, v, mask, past)
            if cache is not None:
                k, v = cache.update(k, v)
        key_length = k.shape[2]

        bias = None
        if isinstance(self.positions, ALiBi) and context is None:
            key_positions = torch.arange(key_length, device=x.device)
            bias = self.positions(key_positions[past:past + query_length], key_positions)  # (1, H, Tq, Tk)
        out, weights = scaled_dot_product(
            q, k, v,
            mask=mask,
            bias=bias,
            is_causal=is_causal,
            dropout=self.dropout if self.training else 0.0,
            need_weights=need_weights,
        )  # (B, H, Tq, Dh)
        if self.head_mask is not None:
            out = out * self._head_scale(batch).to(out.dtype)  # (B, H, Tq, Dh)
        out = out.transpose(1, 2).reshape(batch, query_length, self.n_heads * self.head_dim)  # (B, Tq, H * Dh)
        if packing is not None:
            out = packing.unpad(out)  # (N, H * Dh)
        return self.out_proj(out), weights

    def _head_scale(self, batch: int) -> Tensor:
        """``head_mask`` ``(H,)`` or ``(B, H)`` as a multiplier broadcastable to ``(B, H, Tq, Dh)``."""
        mask = self.head_mask
        assert mask is not None
        if mask.shape not in ((self.n_heads,), (batch, self.n_heads)):
            raise ValueError(f"head_mask must be ({self.n_heads},) or ({batch}, {self.n_heads}), "
                             f"got shape {tuple(mask.shape)}")
        return mask.reshape(-1 if mask.dim() == 2 else 1, self.n_heads, 1, 1)  # (B|1, H, 1, 1)

    def _without_heads(
        self, x: Tensor, context: Tensor | None, cache: KVCache | None, batch: int, query_length: int,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """A module whose heads were all pruned: every output row is ``out_proj``'s bias (zero without one).

        Caches still advance, so positions stay right in incremental decoding.
        """
        key_length = query_length if context is None else context.shape[1]
        if cache is not None:
            if context is None or cache.length == 0:
                empty = x.new_zeros(batch, 0, key_length, self.head_dim)  # (B, 0, Tk, Dh)
                cache.update(empty, empty)
            key_length = cache.length
        weights = x.new_zeros(batch, 0, query_length, key_length) if need_weights else None  # (B, 0, Tq, Tk)
        return self.out_proj(x.new_zeros(*x.shape[:-1], 0)), weights  # (B, Tq, D) or packed (N, D)

    def prune_heads(self, heads: Iterable[int]) -> None:
        """Remove heads in place: their rows of ``q_proj`` (and, with grouped-query attention, whole groups'
        rows of ``k_proj``/``v_proj``) and their columns of ``out_proj``.

        Args:
            heads: original head indices (members of ``head_ids``) to remove. With ``n_kv_heads < n_heads``,
                they must form whole groups of ``n_heads // n_kv_heads`` heads that share a key/value head.
        """
        position = {head: index for index, head in enumerate(self.head_ids)}
        heads = set(heads)
        unknown = sorted(heads - set(position))
        if unknown:
            raise ValueError(f"cannot prune heads {unknown}: this module's heads are {list(self.head_ids)}")
        if not heads:
            return
        if isinstance(self.positions, ALiBi):
            raise ValueError("pruning heads of ALiBi attention is not supported (the slopes are shared by layers)")
        removed = {position[head] for head in heads}
        group = self.n_heads // self.n_kv_heads
        removed_groups = {index // group for index in removed}
        partial = sorted(g for g in removed_groups if not all(g * group + i in removed for i in range(group)))
        if partial:
            members = [list(self.head_ids[g * group:(g + 1) * group]) for g in partial]
            raise ValueError(f"grouped-query attention ({self.n_heads} heads, {self.n_kv_heads} key/value heads) "
                             f"prunes whole groups; heads {sorted(heads)} split the groups {members}")
        keep = [i for i in range(self.n_heads) if i not in removed]
        keep_kv = [g for g in range(self.n_kv_heads) if g not in removed_groups]
        self.q_proj = _select_rows(self.q_proj, keep, self.head_dim)
        self.k_proj = _select_rows(self.k_proj, keep_kv, self.head_dim)
        self.v_proj = _select_rows(self.v_proj, keep_kv, self.head_dim)
        self.out_proj = _select_columns(self.out_proj, keep, self.head_dim)
        self.head_ids = tuple(self.head_ids[i] for i in keep)
        self.n_heads, self.n_kv_heads = len(keep), len(keep_kv)
        self.head_mask = None

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
        """A cache that fits this module's key/value heads; ``dtype`` and ``device`` default to the key
        projection's weight (a quantized projection has none: pass them)."""
        if dtype is None or device is None:
            weight = self.k_proj.weight
            dtype, device = dtype or weight.dtype, device or weight.device
        return KVCache(batch_size=batch_size, max_length=max_length, n_kv_heads=self.n_kv_heads,
                       head_dim=self.head_dim, dtype=dtype, device=device)


def _hide_unseen(k: Tensor, v: Tensor, mask: Tensor, start: int) -> tuple[Tensor, Tensor]:
    """Zero the rows of new keys and values ``(B, Hkv, Tn, Dh)`` (key positions ``start .. start + Tn``) that no
    query of any head may attend under ``mask`` ``(B|1, H|1, Tq|1, Tk|1)``; with ``where``, so NaN goes too."""
    columns = mask if mask.shape[-1] == 1 else mask[..., start:start + k.shape[2]]
    seen = columns.any(dim=-2).any(dim=1, keepdim=True).unsqueeze(-1)  # (B|1, 1, Tn|1, 1)
    return torch.where(seen, k, 0.0), torch.where(seen, v, 0.0)


def _linear(in_features: int, out_features: int, *, bias: bool, like: Tensor | None = None) -> nn.Linear:
    """``nn.Linear`` (on ``like``'s device and dtype); a zero-width one (all heads pruned) without the warning
    that initialising an empty tensor is a no-op."""
    options = {} if like is None else {"device": like.device, "dtype": like.dtype}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return nn.Linear(in_features, out_features, bias=bias, **options)


def _head_index(heads: list[int], head_dim: int, device: torch.device) -> Tensor:
    """Channel indices ``(len(heads) * Dh,)`` of ``heads`` in a ``(heads * Dh)``-wide projection."""
    index = torch.tensor(heads, dtype=torch.long, device=device)[:, None] * head_dim
    return (index + torch.arange(head_dim, device=device)).reshape(-1)  # (len(heads) * Dh,)


def _select_rows(linear: nn.Linear, heads: list[int], head_dim: int) -> nn.Linear:
    """A copy of ``linear`` keeping the output channels of ``heads``."""
    index = _head_index(heads, head_dim, linear.weight.device)
    smaller = _linear(linear.in_features, index.numel(), bias=linear.bias is not None, like=linear.weight)
    with torch.no_grad():
        smaller.weight.copy_(linear.weight.index_select(0, index))
        if linear.bias is not None:
            smaller.bias.copy_(linear.bias.index_select(0, index))
    return smaller


def _select_columns(linear: nn.Linear, heads: list[int], head_dim: int) -> nn.Linear:
    """A copy of ``linear`` keeping the input channels of ``heads`` (the bias is kept whole)."""
    index = _head_index(heads, head_dim, linear.weight.device)
    smaller = _linear(index.numel(), linear.out_features, bias=linear.bias is not None, like=linear.weight)
    with torch.no_grad():
        smaller.weight.copy_(linear.weight.index_select(1, index))
        if linear.bias is not None:
            smaller.bias.copy_(linear.bias)
    return smaller
