"""``EncoderDecoder``: a sequence-to-sequence Transformer (translation, abstractive summarisation).

Shape legend: ``B`` batch, ``S`` source length, ``T`` target length, ``D`` model width, ``V`` target vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multihead.cache import DecoderCache
from multihead.models.config import TransformerConfig
from multihead.models.copy import CopyCache, CopyGenerator
from multihead.models.decoder import Decoder
from multihead.models.embedding import Embeddings, init_weights
from multihead.models.encoder import Encoder

__all__ = ["EncoderDecoder"]


class EncoderDecoder(nn.Module):
    """Encoder over the source, causal decoder with cross-attention over the encoder's output.

    With ``config.target_vocab_size is None`` source and target share one vocabulary and one embedding;
    with ``config.tie_embeddings`` the output projection reuses the target embedding matrix. With
    ``config.copy_attention`` a ``CopyGenerator`` mixes in copying from the source: ``decode`` and ``forward``
    then return log-probabilities (a normalised distribution, usable wherever logits are) and ``decode`` needs
    the source ids.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        shared = None if config.target_vocab_size else Embeddings(config, vocab_size=config.vocab_size)
        self.encoder = Encoder(config, embeddings=shared)
        target = shared or Embeddings(config, vocab_size=config.output_vocab_size)
        self.decoder = Decoder(config, cross_attention=True, n_layers=config.decoder_layers, embeddings=target)
        self.lm_head = nn.Linear(config.d_model, config.output_vocab_size, bias=config.output_bias)
        init_weights(self.lm_head)
        if config.tie_embeddings:
            self.lm_head.weight = self.decoder.embeddings.tokens.weight
        self.copy_generator: CopyGenerator | None = None
        if config.copy_attention:
            self.copy_generator = CopyGenerator(config.d_model, match_previous=config.copy_previous_token)
            init_weights(self.copy_generator)

    def source_mask(self, source_ids: Tensor) -> Tensor | None:
        """``(B, S)`` True = real source token, from ``config.pad_id`` (``None`` without a pad id)."""
        return None if self.config.pad_id is None else source_ids != self.config.pad_id

    def encode(self, source_ids: Tensor, *, source_mask: Tensor | None = None) -> Tensor:
        """``(B, S)`` source ids -> ``(B, S, D)`` memory."""
        return self.encoder(source_ids, mask=source_mask)

    def decode(
        self,
        target_ids: Tensor,
        memory: Tensor,
        *,
        source_mask: Tensor | None = None,
        target_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        source_ids: Tensor | None = None,
    ) -> Tensor:
        """Next-token logits ``(B, T, V)`` for ``(B, T)`` target ids given ``(B, S, D)`` memory.

        Args:
            source_mask: ``(B, S)`` True = real source token.
            target_mask: ``(B, P + T)`` key mask for left-padded targets (causality is always applied).
            cache: from ``make_cache``; with it, ``target_ids`` are the new tokens only.
            source_ids: ``(B, S)`` the encoded source (needed, and only used, with ``copy_attention``).
        """
        hidden = self.decoder(target_ids, memory, mask=target_mask, context_mask=source_mask, cache=cache)
        logits = self.lm_head(hidden)
        if self.copy_generator is None:
            return logits
        if source_ids is None:
            raise ValueError("a model with copy_attention decodes with source_ids (B, S), the ids it copies from")
        copy_cache = cache.copy if isinstance(cache, CopyCache) else None
        inputs = self.decoder.embeddings.tokens(target_ids)  # (B, T, D) input token embeddings
        previous = None
        if self.config.copy_previous_token and (copy_cache is None or copy_cache.length == 0):
            fill = source_ids.new_full((source_ids.shape[0], 1), self.config.pad_id or 0)  # (B, 1)
            before = torch.cat([fill, source_ids[:, :-1]], dim=1)  # (B, S): the token before each position
            previous = self.encoder.embeddings.tokens(before)  # (B, S, D)
        return self.copy_generator(hidden, logits, memory, source_ids, inputs=inputs, source_mask=source_mask,
                                   cache=copy_cache, previous=previous)

    def forward(
        self,
        source_ids: Tensor,
        target_ids: Tensor,
        *,
        source_mask: Tensor | None = None,
        target_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits ``(B, T, V)``; ``source_mask`` defaults to ``source_ids != pad_id``."""
        if source_mask is None:
            source_mask = self.source_mask(source_ids)
        memory = self.encode(source_ids, source_mask=source_mask)
        return self.decode(target_ids, memory, source_mask=source_mask, target_mask=target_mask, source_ids=source_ids)

    def make_cache(
        self,
        *,
        batch_size: int,
        source_length: int,
        max_length: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> DecoderCache:
        """Self-attention caches of ``max_length`` and cross-attention caches of ``source_length`` positions
        (a ``CopyCache`` with ``copy_attention``)."""
        cache = self.decoder.make_cache(
            batch_size=batch_size, max_length=max_length, context_length=source_length, dtype=dtype, device=device
        )
        if self.copy_generator is None:
            return cache
        weight = self.decoder.embeddings.tokens.weight  # never quantized: its dtype is the activations'
        copy = self.copy_generator.make_cache(batch_size=batch_size, source_length=source_length,
                                              dtype=dtype or weight.dtype, device=device or weight.device)
        return CopyCache(cache, copy)
