"""``SentenceScorer``: one logit per sentence of a document, for extractive summarisation.

The document comes as one token sequence with a ``[CLS]`` before each sentence and a ``[SEP]`` after it, and the
index of each ``[CLS]``. Two designs read it:

- ``"flat"`` (BERTSum, Liu & Lapata 2019): an ``Encoder`` over all the tokens; a linear layer scores the hidden
  state at each sentence's ``[CLS]``. Optional interval segment embeddings add a learned vector A or B to the
  tokens of odd and even sentences. Attention is over tokens: ``O(T^2)``.
- ``"hierarchical"``: each sentence is the mean of its token embeddings; the encoder's layers then run over the
  sequence of sentence vectors (with sentence positions), and a linear layer scores each. Attention is over
  sentences, and the token-level work is an embedding lookup, so long documents are cheap.

Shape legend: ``B`` batch, ``T`` tokens, ``S`` sentences (the most in the batch), ``D`` model width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from multihead.errors import ConfigError
from multihead.masks import key_padding_to_attention
from multihead.models.config import TransformerConfig
from multihead.models.embedding import default_position_ids, init_weights
from multihead.models.encoder import Encoder
from multihead.packing import Packing

__all__ = ["DESIGNS", "SentenceScorer", "gather_sentences", "interval_segments", "sentence_means", "top_k_in_order"]

Design = Literal["flat", "hierarchical"]
DESIGNS = ("flat", "hierarchical")


def gather_sentences(hidden: Tensor, positions: Tensor) -> Tensor:
    """The vectors at each sentence's marker: ``(B, T, D)`` and ``(B, S)`` token indices -> ``(B, S, D)``."""
    if positions.dim() != 2 or positions.shape[0] != hidden.shape[0]:
        raise ValueError(f"positions must be (B, S) with B = {hidden.shape[0]}, got shape {tuple(positions.shape)}")
    index = positions[..., None].expand(-1, -1, hidden.shape[-1])  # (B, S, D)
    return hidden.gather(1, index)  # (B, S, D)


def sentence_of_token(positions: Tensor, sentence_mask: Tensor, length: int) -> Tensor:
    """``(B, T)``: the sentence each token belongs to, the last whose marker is at or before it (-1 before the first).

    Args:
        positions: ``(B, S)`` marker indices; sentence_mask: ``(B, S)``, True = a real sentence.
        length: ``T``.
    """
    starts = torch.zeros(positions.shape[0], length, dtype=torch.long, device=positions.device)  # (B, T)
    starts.scatter_add_(1, positions, sentence_mask.long())
    return starts.cumsum(dim=1) - 1  # (B, T)


def interval_segments(positions: Tensor, sentence_mask: Tensor, length: int) -> Tensor:
    """Segment ids ``(B, T)``: 0 for the tokens of sentences 0, 2, 4..., 1 for sentences 1, 3, 5...; tokens
    before the first marker get 0."""
    return sentence_of_token(positions, sentence_mask, length).clamp(min=0) % 2  # (B, T)


def sentence_means(vectors: Tensor, mask: Tensor, positions: Tensor, sentence_mask: Tensor) -> Tensor:
    """The mean of each sentence's token vectors: ``(B, T, D)`` -> ``(B, S, D)`` (zeros for padded sentences).

    Args:
        vectors: ``(B, T, D)`` token vectors; mask: ``(B, T)``, True = real token.
        positions: ``(B, S)`` marker indices; sentence_mask: ``(B, S)``, True = a real sentence.
    """
    batch, length, width = vectors.shape
    n_sentences = positions.shape[1]
    owner = sentence_of_token(positions, sentence_mask, length)  # (B, T)
    keep = (mask & (owner >= 0)).flatten()  # (B*T,)
    slot = (owner + torch.arange(batch, device=owner.device)[:, None] * n_sentences).flatten()[keep]  # (N,)
    sums = vectors.new_zeros(batch * n_sentences, width).index_add(0, slot, vectors.reshape(-1, width)[keep])
    counts = vectors.new_zeros(batch * n_sentences).index_add(0, slot, vectors.new_ones(slot.shape[0]))
    means = sums / counts.clamp(min=1)[:, None]  # (B*S, D)
    return means.view(batch, n_sentences, width)  # (B, S, D)


class SentenceScorer(nn.Module):
    """An encoder over a document, then a linear layer per sentence: one logit per sentence.

    Args:
        config: sizes and choices of the encoder; ``max_length`` bounds the tokens (``"flat"``) or the sentences
            (``"hierarchical"`` with learned positions) of a document.
        design: ``"flat"`` or ``"hierarchical"`` (see the module docstring).
        segment_embeddings: add interval segment embeddings (BERTSum's A/B by sentence parity); ``"flat"`` only.
    """

    def __init__(self, config: TransformerConfig, *, design: Design = "flat", segment_embeddings: bool = False) -> None:
        super().__init__()
        if design not in DESIGNS:
            raise ConfigError(f"design must be one of {DESIGNS}, got {design!r:.80}")
        if not isinstance(segment_embeddings, bool):
            raise ConfigError(f"segment_embeddings must be True or False, got {segment_embeddings!r:.80}")
        if segment_embeddings and design != "flat":
            raise ConfigError("segment_embeddings apply to the 'flat' design only (hierarchical has no token layers)")
        self.config, self.design = config, design
        self.encoder = Encoder(config)
        self.segments = nn.Embedding(2, config.d_model) if segment_embeddings else None
        self.dropout = nn.Dropout(config.dropout)
        self.scorer = nn.Linear(config.d_model, 1)
        init_weights(self.scorer)
        if self.segments is not None:
            init_weights(self.segments)

    def forward(self, ids: Tensor, *, positions: Tensor, sentence_mask: Tensor, mask: Tensor | None = None) -> Tensor:
        """Score each sentence.

        Args:
            ids: ``(B, T)`` token ids.
            positions: ``(B, S)`` index of each sentence's ``[CLS]`` (any valid index where ``sentence_mask`` is
                False).
            sentence_mask: ``(B, S)`` bool, True = a real sentence.
            mask: ``(B, T)`` bool, True = real token; default ``ids != config.pad_id``.

        Returns:
            ``(B, S)`` logits; padded sentences get the lowest finite value of the dtype, so they are never chosen.
        """
        if positions.shape != sentence_mask.shape:
            raise ValueError(f"positions {tuple(positions.shape)} and sentence_mask {tuple(sentence_mask.shape)} "
                             f"must have the same shape (B, S)")
        if mask is None and self.config.pad_id is not None:
            mask = ids != self.config.pad_id
        if self.design == "hierarchical":
            sentences = self._encode_sentences(ids, mask, positions, sentence_mask)  # (B, S, D)
        else:
            sentences = gather_sentences(self._encode(ids, mask, positions, sentence_mask), positions)  # (B, S, D)
        logits = self.scorer(self.dropout(sentences)).squeeze(-1)  # (B, S)
        return logits.masked_fill(~sentence_mask, torch.finfo(logits.dtype).min)

    def _encode_sentences(self, ids: Tensor, mask: Tensor | None, positions: Tensor, sentence_mask: Tensor) -> Tensor:
        """Mean token embedding per sentence, plus sentence positions, through the encoder's layers."""
        embeddings = self.encoder.embeddings
        tokens = embeddings.tokens(ids) * embeddings.scale  # (B, T, D)
        token_mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask
        x = sentence_means(tokens, token_mask, positions, sentence_mask)  # (B, S, D)
        sentence_ids = default_position_ids(x.shape[1], past=0, device=ids.device)  # (S,)
        if embeddings.positions is not None:
            x = x + embeddings.positions(sentence_ids).to(x.dtype)
        x = embeddings.dropout(x)
        attention_mask = key_padding_to_attention(sentence_mask)  # (B, 1, 1, S)
        packing = Packing.from_mask(sentence_mask)
        if packing is not None:
            x = packing.unpad(x)  # (N, D)
        for layer in self.encoder.layers:
            x = layer(x, mask=attention_mask, position_ids=sentence_ids, packing=packing)
        x = self.encoder.final_norm(x)
        return x if packing is None else packing.pad(x)  # (B, S, D)

    def _encode(self, ids: Tensor, mask: Tensor | None, positions: Tensor, sentence_mask: Tensor) -> Tensor:
        """``Encoder.forward``, with the segment embeddings added to the token embeddings when configured."""
        if self.segments is None:
            return self.encoder(ids, mask=mask)
        encoder = self.encoder
        position_ids = default_position_ids(ids.shape[1], past=0, device=ids.device)
        x = encoder.embeddings(ids, position_ids)  # (B, T, D)
        x = x + self.segments(interval_segments(positions, sentence_mask, ids.shape[1]))  # (B, T, D)
        attention_mask = None if mask is None else key_padding_to_attention(mask)  # (B, 1, 1, T)
        packing = None if mask is None else Packing.from_mask(mask)
        if packing is not None:
            x = packing.unpad(x)  # (N, D)
        for layer in encoder.layers:
            x = layer(x, mask=attention_mask, position_ids=position_ids, packing=packing)
        x = encoder.final_norm(x)
        return x if packing is None else packing.pad(x)  # (B, T, D)


def top_k_in_order(scores: Sequence[float] | Tensor, k: int) -> list[int]:
    """The indices of the ``k`` highest scores, in ascending (document) order; ties go to the earlier sentence.

    Fewer than ``k`` scores give them all.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    values = scores.detach().float().cpu().tolist() if isinstance(scores, Tensor) else [float(s) for s in scores]
    ranked = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return sorted(ranked[:k])
