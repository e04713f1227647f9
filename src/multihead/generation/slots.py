"""``SlotCache``: the preallocated key/value rows of a continuous-batching scheduler, one row per sequence.

Every layer keeps ``(S, Hkv, C, Dh)`` buffers (``S`` slots, ``C`` context). Each row has its own length:
a decoding step writes one new key per row at that row's own column and attends over the first
``Lmax + 1`` columns with a key mask that hides what lies past each row's end; a prefill writes a
chunk of one row's prompt at its next columns. Occupied rows are kept contiguous (``0 .. A - 1``) so
that each step reads plain slices, never a gathered copy: when a row leaves, the last row moves into
its place.

The layer caches are ``KVCache`` subclasses that ``MultiHeadAttention`` uses like any cache; before each
forward ``SlotCache`` tells them which rows and columns the next ``update`` writes.

Shape legend: ``S`` slots, ``A`` occupied rows in a decoding step, ``Hkv`` key/value heads, ``C`` context,
``T`` new positions, ``Dh`` head width, ``Lmax`` the longest occupied row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from multihead.cache import DecoderCache, KVCache
from multihead.models.decoder import DecoderLM

__all__ = ["SlotCache", "SlotKVCache"]


class SlotKVCache(KVCache):
    """One layer's slot buffers; ``update`` writes where the owning ``SlotCache`` last said."""

    def __init__(self, *, slots: int, max_length: int, n_kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__(batch_size=slots, max_length=max_length, n_kv_heads=n_kv_heads, head_dim=head_dim,
                         dtype=dtype, device=device)
        self._rows = slice(0, 0)
        self._columns: Tensor | None = None  # (A,) write column of each row in a decoding step
        self._key_length = 0

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``(A, Hkv, 1, Dh)`` (a decoding step) or ``(1, Hkv, T, Dh)`` (a prefill chunk); returns the
        rows' keys and values over the first ``key_length`` columns (views)."""
        rows = self._rows
        if self._columns is not None:
            index = torch.arange(rows.start, rows.stop, device=keys.device)  # (A,)
            self.keys[index, :, self._columns] = keys[:, :, 0]  # (A, Hkv, Dh) at each row's own column
            self.values[index, :, self._columns] = values[:, :, 0]
        else:
            start = self.length
            self.keys[rows, :, start : start + keys.shape[2]] = keys
            self.values[rows, :, start : start + keys.shape[2]] = values
        return self.keys[rows, :, : self._key_length], self.values[rows, :, : self._key_length]

    def cached(self) -> tuple[Tensor, Tensor]:
        return self.keys[self._rows, :, : self._key_length], self.values[self._rows, :, : self._key_length]

    def reorder(self, index: Tensor) -> None:
        raise ValueError("slot caches are not reordered; SlotCache.move_row moves rows")

    def _plan(self, rows: slice, columns: Tensor | None, past: int, key_length: int) -> None:
        self._rows, self._columns, self.length, self._key_length = rows, columns, past, key_length


class SlotCache:
    """Key/value rows for ``slots`` sequences of up to ``max_length`` tokens each, for every layer of ``model``.

    Args:
        model: the ``DecoderLM`` whose layers the caches serve (pruned layers get their own head counts).
        slots: rows, i.e. sequences decoded at once.
        max_length: context of each row (default ``model.config.max_length``).
    """

    def __init__(self, model: DecoderLM, *, slots: int, max_length: int | None = None) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        max_length = max_length or model.config.max_length
        weight = model.decoder.embeddings.tokens.weight
        self.layers = [
            SlotKVCache(slots=slots, max_length=max_length, n_kv_heads=layer.self_attn.n_kv_heads,
                        head_dim=layer.self_attn.head_dim, dtype=weight.dtype, device=weight.device)
            for layer in model.decoder.layers
        ]
        self.decoder_cache = DecoderCache(list(self.layers))
        self.lengths = [0] * slots  # tokens cached in each row
        self.device = weight.device

    @property
    def slots(self) -> int:
        return len(self.lengths)

    @property
    def max_length(self) -> int:
        return self.layers[0].max_length if self.layers else 0

    @property
    def nbytes(self) -> int:
        """Memory held by the key and value buffers of every layer."""
        return sum(layer.keys.nbytes + layer.values.nbytes for layer in self.layers)

    def plan_prefill(self, row: int, count: int) -> Tensor:
        """Prepare the next forward to append ``count`` tokens to ``row``; returns their positions ``(T,)``."""
        start = self.lengths[row]
        if start + count > self.max_length:
            raise ValueError(f"row {row} holds {start} tokens; {count} more exceed the context of {self.max_length}")
        for layer in self.layers:
            layer._plan(slice(row, row + 1), None, start, start + count)
        self.lengths[row] = start + count
        return torch.arange(start, start + count, device=self.device)  # (T,)

    def plan_decode(self, rows: int) -> tuple[Tensor, Tensor]:
        """Prepare the next forward to append one token to each of rows ``0 .. rows - 1``.

        Returns:
            positions ``(A, 1)`` of the new tokens and the key mask ``(A, Lmax + 1)`` (True = real key).
        """
        lengths = self.lengths[:rows]
        if max(lengths) >= self.max_length:
            raise ValueError(f"a row is full: {max(lengths)} tokens in a context of {self.max_length}")
        columns = torch.tensor(lengths, device=self.device)  # (A,)
        key_length = max(lengths) + 1
        for layer in self.layers:
            layer._plan(slice(0, rows), columns, key_length - 1, key_length)
        for row in range(rows):
            self.lengths[row] += 1
        mask = torch.arange(key_length, device=self.device)[None, :] <= columns[:, None]  # (A, Lmax + 1)
        return columns[:, None], mask

    def move_row(self, source: int, target: int) -> None:
        """Copy row ``source`` (its filled columns) into row ``target``; ``source`` becomes empty."""
        if source == target:
            return
        length = self.lengths[source]
        for layer in self.layers:
            layer.keys[target, :, :length] = layer.keys[source, :, :length]
            layer.values[target, :, :length] = layer.values[source, :, :length]
        self.lengths[target], self.lengths[source] = length, 0

    def clear_row(self, row: int) -> None:
        """Forget the tokens of ``row`` (its buffers are overwritten later)."""
        self.lengths[row] = 0
