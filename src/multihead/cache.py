"""Explicit, preallocated key/value caches for incremental decoding (in the manner of gpt-fast).

Shape legend: ``B`` batch (sentences x beams), ``Hkv`` key/value heads, ``T`` positions, ``Dh`` head width.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DecoderCache", "KVCache"]


class KVCache:
    """Keys and values of one attention module, stored in ``(B, Hkv, max_length, Dh)`` buffers
    (``Hkv`` may be 0 for a module whose heads were all pruned; the cache then only counts positions).

    Self-attention appends the keys of each new chunk at ``length``; cross-attention fills the cache
    once from the source and reads it at every later step.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        max_length: int,
        n_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("max_length", max_length),
                            ("n_kv_heads", n_kv_heads), ("head_dim", head_dim)):
            if value <= 0 and not (name == "n_kv_heads" and value == 0):  # 0: every head pruned
                raise ValueError(f"KVCache {name} must be positive, got {value}")
        shape = (batch_size, n_kv_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0

    @property
    def max_length(self) -> int:
        return self.keys.shape[2]

    @property
    def batch_size(self) -> int:
        return self.keys.shape[0]

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``(B, Hkv, T, Dh)`` keys/values at positions ``length .. length + T``.

        Returns:
            all cached keys and values so far, ``(B, Hkv, length, Dh)`` each (views, not copies).
        """
        expected = (self.batch_size, self.keys.shape[1], keys.shape[2], self.keys.shape[3])
        if tuple(keys.shape) != expected or tuple(values.shape) != expected:
            raise ValueError(
                f"KVCache.update expects keys and values of shape {expected}, "
                f"got {tuple(keys.shape)} and {tuple(values.shape)}"
            )
        end = self.length + keys.shape[2]
        if end > self.max_length:
            raise ValueError(
                f"KVCache is full: {self.length} + {keys.shape[2]} positions > max_length {self.max_length}"
            )
        self.keys[:, :, self.length : end] = keys
        self.values[:, :, self.length : end] = values
        self.length = end
        return self.cached()

    def cached(self) -> tuple[Tensor, Tensor]:
        """Keys and values written so far, ``(B, Hkv, length, Dh)`` each."""
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` ``(B',)`` in that order (beam search); ``B'`` may differ from ``B``."""
        if index.dim() != 1:
            raise ValueError(f"reorder index must be 1-D, got shape {tuple(index.shape)}")
        index = index.to(self.keys.device)
        if index.numel() == self.batch_size:
            filled = slice(0, self.length)
            self.keys[:, :, filled] = self.keys[:, :, filled].index_select(0, index)
            self.values[:, :, filled] = self.values[:, :, filled].index_select(0, index)
        else:
            self.keys = self.keys.index_select(0, index)
            self.values = self.values.index_select(0, index)

    def reset(self) -> None:
        """Forget every position; the buffers are kept."""
        self.length = 0

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` positions only (a shared prompt prefix); later ones are overwritten."""
        if not 0 <= length <= self.length:
            raise ValueError(f"truncate length must be in 0..{self.length}, got {length}")
        self.length = length


class DecoderCache:
    """The caches of a decoder stack: one self-attention cache per layer and, for encoder-decoders,
    one cross-attention cache per layer."""

    def __init__(self, self_attention: list[KVCache], cross_attention: list[KVCache] | None = None) -> None:
        if cross_attention is not None and len(cross_attention) != len(self_attention):
            raise ValueError(
                f"need one cross-attention cache per layer: {len(cross_attention)} != {len(self_attention)}"
            )
        self.self_attention = self_attention
        self.cross_attention = cross_attention

    @classmethod
    def allocate(
        cls,
        *,
        n_layers: int,
        cross_attention: bool,
        batch_size: int,
        max_length: int,
        n_kv_heads: int,
        head_dim: int,
        context_length: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> DecoderCache:
        """Preallocate caches for ``n_layers`` layers; cross caches hold ``context_length`` positions."""
        def make(length: int) -> KVCache:
            return KVCache(batch_size=batch_size, max_length=length, n_kv_heads=n_kv_heads,
                           head_dim=head_dim, dtype=dtype, device=device)

        if cross_attention and context_length <= 0:
            raise ValueError(f"cross-attention caches need context_length > 0, got {context_length}")
        selfs = [make(max_length) for _ in range(n_layers)]
        crosses = [make(context_length) for _ in range(n_layers)] if cross_attention else None
        return cls(selfs, crosses)

    @property
    def length(self) -> int:
        """Positions decoded so far."""
        return self.self_attention[0].length if self.self_attention else 0

    def reorder(self, index: Tensor, *, same_sources: bool = False) -> None:
        """Reorder (or select) batch rows of every cache, ``index`` ``(B',)``.

        ``same_sources``: row ``i`` and row ``index[i]`` attend to the same source (beams of one sentence), so the
        cross-attention caches, which depend on the source only, are left as they are.
        """
        for cache in self.self_attention + ([] if same_sources else self.cross_attention or []):
            cache.reorder(index)

    def reset(self) -> None:
        for cache in self.self_attention + (self.cross_attention or []):
            cache.reset()

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` decoded positions of every self-attention cache (cross caches stay)."""
        for cache in self.self_attention:
            cache.truncate(length)
