"""``compiled_step``: one cached decoding step through ``torch.compile`` over fixed-shape cache buffers
(``GenerationConfig(compile=True)``), in the manner of gpt-fast's static cache.

An eager step reads the cache up to its length, so every step sees a key length one longer than the last and
a compiled graph would be rebuilt (or made dynamic) step after step. Here the step writes the new keys and values
into the preallocated ``KVCache`` buffers at the cache position (``index_copy_`` with the position as a tensor)
and attends over every slot, the slots not yet written hidden by the key mask. Positions are passed as tensors
too, so no Python number that changes per step enters the graph. Shapes change only when rows leave the batch or
a new call brings other lengths; ``torch.compile``'s automatic dynamic shapes then compile one graph with those
dimensions symbolic, and later calls reuse it.

Shape legend: ``N`` rows, ``W`` cache slots (prompt or start token plus ``max_new_tokens``), ``S`` source length,
``D`` model width, ``V`` vocabulary, ``Hkv`` key/value heads, ``Dh`` head width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from multihead.cache import DecoderCache, KVCache
from multihead.errors import ConfigError
from multihead.models.decoder import DecoderLM
from multihead.models.seq2seq import EncoderDecoder

__all__ = ["check_compilable", "compiled_step"]

_COMPILED: Callable[..., Tensor] | None = None
"""``torch.compile(_step)``, made once: graphs are kept per model structure and shapes for later calls."""


class _StaticSlots:
    """A ``KVCache`` as a compiled step sees it: ``update`` writes at ``index`` ``(1,)`` and returns the whole
    buffers ``(N, Hkv, W, Dh)``. ``length`` is ``W - 1`` in every step, so that attention expects a key mask over
    all ``W`` slots (as with the scheduler's slot caches); positions are always given explicitly."""

    def __init__(self, cache: KVCache, index: Tensor) -> None:
        self.cache, self.index = cache, index

    @property
    def length(self) -> int:
        return self.cache.keys.shape[2] - 1

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        self.cache.keys.index_copy_(2, self.index, keys)  # (N, Hkv, W, Dh), one slot written
        self.cache.values.index_copy_(2, self.index, values)
        return self.cache.keys, self.cache.values


class _FilledCross:
    """A filled cross-attention ``KVCache`` read whole; its length comes from the buffer's shape, not a number."""

    def __init__(self, cache: KVCache) -> None:
        self.keys, self.values = cache.keys, cache.values

    @property
    def length(self) -> int:
        return self.keys.shape[2]

    def cached(self) -> tuple[Tensor, Tensor]:
        return self.keys, self.values


def _step(model: nn.Module, ids: Tensor, position_ids: Tensor, mask: Tensor, index: Tensor,
          selfs: list[KVCache], crosses: list[KVCache] | None, memory: Tensor | None,
          source_mask: Tensor | None) -> Tensor:
    """Logits ``(N, V)`` of ``ids`` ``(N, 1)`` at ``position_ids`` ``(N, 1)``, attending the slots ``mask``
    ``(N, W)`` allows; the new keys and values are written at slot ``index`` ``(1,)``."""
    cache = DecoderCache([_StaticSlots(c, index) for c in selfs],  # type: ignore[misc]
                         None if crosses is None else [_FilledCross(c) for c in crosses])  # type: ignore[misc]
    if crosses is None:
        return model(ids, mask=mask, cache=cache, position_ids=position_ids)[:, -1]
    hidden = model.decoder(ids, memory, mask=mask, context_mask=source_mask, cache=cache, position_ids=position_ids)
    return model.lm_head(hidden)[:, -1]


def check_compilable(model: nn.Module) -> None:
    """Raise ``ConfigError`` unless ``GenerationConfig(compile=True)`` can run ``model``."""
    if not isinstance(model, DecoderLM | EncoderDecoder):
        raise ConfigError(f"GenerationConfig.compile runs a DecoderLM or an EncoderDecoder, not a "
                          f"{type(model).__name__}")
    if model.config.positions == "alibi":
        raise ConfigError("GenerationConfig.compile does not run ALiBi models (the bias needs the position as a "
                          "number); decode them with compile=False")
    if getattr(model, "copy_generator", None) is not None:
        raise ConfigError("GenerationConfig.compile does not run copy_attention models; decode them with compile=False")


def compiled_step(model: nn.Module, ids: Tensor, position_ids: Tensor, key_mask: Tensor | None,
                  cache: DecoderCache, memory: Tensor | None = None, source_mask: Tensor | None = None) -> Tensor:
    """Decode one token a row with the compiled step and advance ``cache`` by one position.

    Args:
        model: a ``DecoderLM`` or ``EncoderDecoder`` (eval mode).
        ids: the new tokens ``(N, 1)``.
        position_ids: their positions ``(N, 1)``.
        key_mask: ``(N, W)`` True = a real token over every slot of the cache (left padding False), or None when
            nothing is padded; slots past the new token are hidden here.
        cache: the preallocated caches (``W`` slots), prefilled up to ``cache.length``.
        memory, source_mask: the encoder output ``(N, S, D)`` and source mask ``(N, S)`` of an ``EncoderDecoder``.

    Returns:
        next-token logits ``(N, V)``.
    """
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = torch.compile(_step)
    position = cache.length
    slots = cache.self_attention[0].max_length
    if position >= slots:
        raise ValueError(f"the cache is full: {position} of {slots} positions written")
    index = torch.tensor([position], device=ids.device)  # (1,)
    written = torch.arange(slots, device=ids.device) <= index  # (W,)
    mask = written[None, :].expand(ids.shape[0], slots) if key_mask is None else key_mask & written  # (N, W)
    logits = _COMPILED(model, ids, position_ids, mask, index, cache.self_attention, cache.cross_attention, memory,
                       source_mask)
    for layer in cache.self_attention:
        layer.length += 1
    return logits
