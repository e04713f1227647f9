"""``Decoder`` (a causal stack, with or without cross-attention) and ``DecoderLM`` (a language model).

Shape legend: ``B`` batch, ``T`` new target positions, ``P`` positions already cached, ``S`` context
length, ``D`` model width, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multihead.cache import DecoderCache
from multihead.layers import DecoderLayer
from multihead.masks import key_padding_to_attention
from multihead.models.config import TransformerConfig
from multihead.models.embedding import (
    Embeddings,
    apply_pruned_heads,
    default_position_ids,
    final_norm,
    init_weights,
    layer_options,
)

__all__ = ["Decoder", "DecoderLM"]


class Decoder(nn.Module):
    """Embeddings and a stack of causal ``DecoderLayer``s, returning hidden states ``(B, T, D)``.

    Args:
        config: sizes and choices; the stack has ``n_layers`` layers.
        cross_attention: attend to a context (encoder-decoder) or not (decoder-only LM).
        n_layers: override the number of layers (an encoder-decoder passes ``config.decoder_layers``).
        embeddings: an ``Embeddings`` to share; default a new one over ``config.vocab_size``.
    """

    def __init__(
        self,
        config: TransformerConfig,
        *,
        cross_attention: bool,
        n_layers: int | None = None,
        embeddings: Embeddings | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.embeddings = embeddings or Embeddings(config, vocab_size=config.vocab_size)
        options = layer_options(config)  # one position module shared by every layer
        self.layers = nn.ModuleList(
            DecoderLayer(config.d_model, config.n_heads, cross_attention=cross_attention, **options)
            for _ in range(n_layers or config.n_layers)
        )
        apply_pruned_heads(self.layers, config, stack="decoder")
        self.final_norm = final_norm(config)
        self.cross_attention = cross_attention
        init_weights(self)

    def forward(
        self,
        ids: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        context_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """Decode ``(B, T)`` new token ids into ``(B, T, D)``.

        Args:
            context: ``(B, S, D)`` encoder output (cross-attention only).
            mask: ``(B, P + T)`` bool key mask over cached and new positions, True = real token
                (needed only for left padding; causality is always applied).
            context_mask: ``(B, S)`` bool, True = real source token.
            cache: caches of every layer; new keys are appended, cross keys computed once.
            position_ids: ``(T,)`` or ``(B, T)`` positions, default ``P .. P + T - 1``.
        """
        past = 0 if cache is None else cache.length
        if position_ids is None:
            position_ids = default_position_ids(ids.shape[1], past=past, device=ids.device)
        x = self.embeddings(ids, position_ids)  # (B, T, D)
        self_mask = None if mask is None else key_padding_to_attention(mask)  # (B, 1, 1, P + T)
        cross_mask = None if context_mask is None else key_padding_to_attention(context_mask)  # (B, 1, 1, S)
        for index, layer in enumerate(self.layers):
            x = layer(
                x,
                context,
                mask=self_mask,
                context_mask=cross_mask,
                is_causal=True,
                cache=None if cache is None else cache.self_attention[index],
                cross_cache=None if cache is None or cache.cross_attention is None else cache.cross_attention[index],
                position_ids=position_ids,
            )
        return self.final_norm(x)

    def make_cache(
        self,
        *,
        batch_size: int,
        max_length: int | None = None,
        context_length: int = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> DecoderCache:
        """Preallocated caches for every layer (``max_length`` defaults to ``config.max_length``); a pruned
        model's caches fit each layer's remaining heads."""
        weight = self.embeddings.tokens.weight
        if self.config.pruned_heads:
            if self.cross_attention and context_length <= 0:
                raise ValueError(f"cross-attention caches need context_length > 0, got {context_length}")
            options = {"batch_size": batch_size, "dtype": dtype or weight.dtype, "device": device or weight.device}
            selfs = [layer.self_attn.make_cache(max_length=max_length or self.config.max_length, **options)
                     for layer in self.layers]
            crosses = [layer.cross_attn.make_cache(max_length=context_length, **options)
                       for layer in self.layers] if self.cross_attention else None
            return DecoderCache(selfs, crosses)
        return DecoderCache.allocate(
            n_layers=len(self.layers),
            cross_attention=self.cross_attention,
            batch_size=batch_size,
            max_length=max_length or self.config.max_length,
            n_kv_heads=self.config.n_kv_heads or self.config.n_heads,
            head_dim=self.config.head_dim,
            context_length=context_length,
            dtype=dtype or weight.dtype,
            device=device or weight.device,
        )


class DecoderLM(nn.Module):
    """A decoder-only causal language model: ``(B, T)`` ids -> ``(B, T, V)`` next-token logits."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = Decoder(config, cross_attention=False)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=config.output_bias)
        init_weights(self.lm_head)
        if config.tie_embeddings:
            self.lm_head.weight = self.decoder.embeddings.tokens.weight

    def forward(
        self,
        ids: Tensor,
        *,
        mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        position_ids: Tensor | None = None,
        last_only: bool = False,
    ) -> Tensor:
        """Logits ``(B, T, V)`` for ``(B, T)`` ids; with a cache, ``ids`` are the new tokens only. ``last_only``:
        logits ``(B, 1, V)`` of the last position alone (a prompt's prefill skips ``T - 1`` vocabulary
        projections and the ``(B, T, V)`` tensor)."""
        hidden = self.decoder(ids, mask=mask, cache=cache, position_ids=position_ids)  # (B, T, D)
        return self.lm_head(hidden[:, -1:] if last_only else hidden)  # (B, T or 1, V)

    def make_cache(
        self,
        *,
        batch_size: int,
        max_length: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> DecoderCache:
        """Caches for incremental decoding of ``batch_size`` sequences up to ``max_length`` tokens."""
        return self.decoder.make_cache(batch_size=batch_size, max_length=max_length, dtype=dtype, device=device)
