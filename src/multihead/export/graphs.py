"""The PyTorch modules that are exported as ONNX graphs: an encoder (or classifier) forward, and the prefill and
one-step graphs of a ``DecoderLM`` or an ``EncoderDecoder`` with the key/value cache as inputs and outputs.

Each graph wraps a model and runs its own layers; only the cache differs: :class:`GrowingCache` stands in for a
preallocated ``KVCache`` and returns the past keys with the new ones concatenated, so that a graph's cache output
is one position longer than its input (the layout onnxruntime generation loops use).

Shape legend: ``B`` rows, ``T`` new tokens, ``P`` cached positions, ``S`` source length, ``H`` key/value heads of a
layer, ``Dh`` head width, ``D`` model width, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multihead.cache import DecoderCache
from multihead.models import DecoderLM, EncoderDecoder

__all__ = ["EncoderGraph", "GrowingCache", "LanguageModelPrefill", "LanguageModelStep", "Seq2SeqPrefill",
           "Seq2SeqStep"]


class GrowingCache:
    """A ``KVCache`` for tracing: ``update`` appends by concatenation and ``length`` is the (symbolic) number of
    positions held, so one graph serves every past length."""

    def __init__(self, keys: Tensor | None = None, values: Tensor | None = None) -> None:
        self.keys, self.values = keys, values

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``(B, H, T, Dh)`` keys and values; returns all of them, ``(B, H, P + T, Dh)`` each."""
        if self.keys is None or self.values is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat((self.keys, keys), dim=2)  # (B, H, P + T, Dh)
            self.values = torch.cat((self.values, values), dim=2)  # (B, H, P + T, Dh)
        return self.keys, self.values

    def cached(self) -> tuple[Tensor, Tensor]:
        assert self.keys is not None and self.values is not None
        return self.keys, self.values


def _decoder_cache(past: list[Tensor], cross: list[Tensor] | None, layers: int) -> DecoderCache:
    """A ``DecoderCache`` of growing caches from flat ``[key0, value0, key1, value1, ...]`` lists (empty = none)."""
    selfs = [GrowingCache(*past[2 * i:2 * i + 2]) if past else GrowingCache() for i in range(layers)]
    crosses = None
    if cross is not None:
        crosses = [GrowingCache(*cross[2 * i:2 * i + 2]) if cross else GrowingCache() for i in range(layers)]
    return DecoderCache(selfs, crosses)  # type: ignore[arg-type]


def _flat(caches: list[GrowingCache]) -> list[Tensor]:
    """``[key0, value0, key1, value1, ...]`` of every layer."""
    return [tensor for cache in caches for tensor in cache.cached()]


class EncoderGraph(nn.Module):
    """``model(ids, mask=mask)`` of an encoder or an encoder with a head: ``(B, T)`` ids and bool mask -> outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor | tuple[Tensor, ...]:
        return self.model(ids, mask=mask)


class LanguageModelPrefill(nn.Module):
    """A ``DecoderLM`` over a left-padded prompt: ids, key mask and positions ``(B, T)`` -> last logits ``(B, V)``
    and every layer's keys and values ``(B, H, T, Dh)``."""

    def __init__(self, model: DecoderLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, mask: Tensor, position_ids: Tensor) -> tuple[Tensor, ...]:
        cache = _decoder_cache([], None, len(self.model.decoder.layers))
        logits = self.model(ids, mask=mask, cache=cache, position_ids=position_ids)  # (B, T, V)
        return (logits[:, -1], *_flat(cache.self_attention))  # type: ignore[arg-type]


class LanguageModelStep(nn.Module):
    """One new token a row: ids ``(B, 1)``, key mask ``(B, P + 1)``, positions ``(B, 1)`` and the past keys and
    values ``(B, H, P, Dh)`` -> logits ``(B, V)`` and the keys and values ``(B, H, P + 1, Dh)``."""

    def __init__(self, model: DecoderLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, mask: Tensor, position_ids: Tensor, past: list[Tensor]) -> tuple[Tensor, ...]:
        cache = _decoder_cache(past, None, len(self.model.decoder.layers))
        logits = self.model(ids, mask=mask, cache=cache, position_ids=position_ids)  # (B, 1, V)
        return (logits[:, -1], *_flat(cache.self_attention))  # type: ignore[arg-type]


class Seq2SeqPrefill(nn.Module):
    """Encode the right-padded sources ``(B, S)`` (bool mask ``(B, S)``) and decode the first target tokens
    ``(B, T)`` -> last logits ``(B, V)``, self-attention keys and values ``(B, H, T, Dh)`` and cross-attention keys
    and values ``(B, H, S, Dh)`` of every layer."""

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, source_ids: Tensor, source_mask: Tensor, target_ids: Tensor) -> tuple[Tensor, ...]:
        memory = self.model.encode(source_ids, source_mask=source_mask)  # (B, S, D)
        cache = _decoder_cache([], [], len(self.model.decoder.layers))
        logits = self.model.decode(target_ids, memory, source_mask=source_mask, cache=cache)  # (B, T, V)
        assert cache.cross_attention is not None
        return (logits[:, -1], *_flat(cache.self_attention), *_flat(cache.cross_attention))  # type: ignore[arg-type]


class Seq2SeqStep(nn.Module):
    """One new target token a row: ids ``(B, 1)``, source mask ``(B, S)``, past self-attention keys and values
    ``(B, H, P, Dh)`` and the cross-attention ones ``(B, H, S, Dh)`` -> logits ``(B, V)`` and the self-attention
    keys and values ``(B, H, P + 1, Dh)``."""

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, source_mask: Tensor, past: list[Tensor], cross: list[Tensor]) -> tuple[Tensor, ...]:
        cache = _decoder_cache(past, cross, len(self.model.decoder.layers))
        # cross-attention reads its filled cache and never the context; a layer only checks that one is given
        context = cross[0].new_zeros(ids.shape[0], 0, self.model.config.d_model)  # (B, 0, D)
        logits = self.model.decode(ids, context, source_mask=source_mask, cache=cache)  # (B, 1, V)
        return (logits[:, -1], *_flat(cache.self_attention))  # type: ignore[arg-type]
