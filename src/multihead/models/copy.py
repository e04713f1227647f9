"""``CopyGenerator``: a pointer-generator output layer (See et al., 2017) for an ``EncoderDecoder``.

The next-token distribution mixes generating from the vocabulary with copying a source token::

    p(w) = p_gen * softmax(logits)(w) + (1 - p_gen) * sum_{s : source[s] = w} a(s)

``a`` is a copy attention over the encoder's output and ``p_gen = sigmoid(w . [h; c; x] + b)`` comes from the
decoder state ``h``, the copy attention's context ``c`` and the decoder input embedding ``x``. The result is
kept in log space (``log p``, a normalised distribution), so that cross-entropy, beam search and sampling
take it as they take logits: ``log_softmax`` of it is itself.

Design choices:
- The copy attention is its own single-head ``MultiHeadAttention`` whose query is the decoder's final hidden
  state (after the last feed-forward), not a head (or the mean of the heads) of the last layer's
  cross-attention. That state is the one that predicts the next token, the heads of the cross-attention stay
  free to gather context, and the decoder layers need not return weights. Its keys and values are projected
  from the encoder output once per decoding (``CopyCache``).
- No extended vocabulary: with a subword vocabulary (Unigram, BPE, WordPiece) every source word is a sequence
  of in-vocabulary pieces and so can be copied; only characters the tokenizer maps to its unknown token cannot
  (0.01% of BBC News source pieces), and an extended vocabulary would cost per-example ids through batching,
  decoding and detokenisation for them. Source and target therefore share one vocabulary.
- ``match_previous`` (``model.copy_previous_token``): the copy attention's keys also carry the embedding of
  the source token *before* each position, and its query the decoder's input token (the one just emitted).
  After copying source token ``s_j`` the query matches the key of position ``j + 1`` by content alone, so
  copying a run of subword pieces needs no position arithmetic (the induction pattern of Olsson et al., 2022,
  built in). Both are linear maps added to the attention's inputs: the decoder state (query) and the encoder
  output (keys and values, so that the copy context ``c`` also says which token precedes the copied one).

Shape legend: ``B`` batch, ``T`` target positions, ``S`` source length, ``D`` model width, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.attention import MultiHeadAttention
from multihead.cache import DecoderCache, KVCache
from multihead.masks import key_padding_to_attention

__all__ = ["CopyCache", "CopyGenerator", "copy_distribution"]

_TINY = torch.finfo(torch.float32).tiny
"""Floor of a copy probability before its log: zero-probability tokens get a finite log (about -87), so the
mixture's gradient stays finite; their share of the mixture (below 1e-38) is below float32 resolution."""


def copy_distribution(weights: Tensor, source_ids: Tensor, vocab_size: int) -> Tensor:
    """Attention over source positions summed per token id: ``(B, T, S)`` weights and ``(B, S)`` ids ->
    ``(B, T, V)`` probabilities (a token that occurs twice gets both positions' weight)."""
    if source_ids.dim() != 2 or weights.dim() != 3 or weights.shape[::2] != source_ids.shape:
        raise ValueError(f"copy weights (B, T, S) and source ids (B, S) must agree, got {tuple(weights.shape)} "
                         f"and {tuple(source_ids.shape)}")
    batch, length, _ = weights.shape
    index = source_ids[:, None, :].expand(batch, length, -1)  # (B, T, S)
    out = weights.new_zeros(batch, length, vocab_size)  # (B, T, V)
    return out.scatter_add_(2, index, weights)


class CopyCache(DecoderCache):
    """A decoder's caches plus the copy attention's, reordered together (beam search, finished rows)."""

    def __init__(self, decoder: DecoderCache, copy: KVCache) -> None:
        super().__init__(decoder.self_attention, decoder.cross_attention)
        self.copy = copy

    def reorder(self, index: Tensor, *, same_sources: bool = False) -> None:
        super().reorder(index, same_sources=same_sources)
        if not same_sources:  # the copy attention's keys and values depend on the source only
            self.copy.reorder(index)

    def reset(self) -> None:
        super().reset()
        self.copy.reset()


class CopyGenerator(nn.Module):
    """Mixes the vocabulary distribution with a copy distribution over the source tokens.

    Args:
        d_model: width ``D`` of the decoder state, the encoder output and the input embeddings.
        n_heads: heads of the copy attention; the copy distribution is their mean (default 1).
        match_previous: keys add the previous source token's embedding and the query the input token's
            (module docstring); ``forward`` then needs ``previous``.
    """

    def __init__(self, d_model: int, *, n_heads: int = 1, match_previous: bool = False) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(d_model, n_heads)
        self.switch = nn.Linear(3 * d_model, 1)  # [h; c; x] -> logit of p_gen
        self.previous_keys: nn.Linear | None = None
        self.input_queries: nn.Linear | None = None
        if match_previous:
            self.previous_keys = nn.Linear(d_model, d_model, bias=False)
            self.input_queries = nn.Linear(d_model, d_model, bias=False)

    def make_cache(self, *, batch_size: int, source_length: int, dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> KVCache:
        """A cache for the copy attention's keys and values over ``source_length`` positions."""
        return self.attention.make_cache(batch_size=batch_size, max_length=source_length, dtype=dtype, device=device)

    def forward(
        self,
        hidden: Tensor,
        logits: Tensor,
        memory: Tensor,
        source_ids: Tensor,
        *,
        inputs: Tensor,
        source_mask: Tensor | None = None,
        cache: KVCache | None = None,
        previous: Tensor | None = None,
    ) -> Tensor:
        """Log-probabilities ``(B, T, V)`` (float32) of the mixed distribution.

        Args:
            hidden: decoder output ``(B, T, D)``.
            logits: the generator's vocabulary logits ``(B, T, V)``.
            memory: encoder output ``(B, S, D)``.
            source_ids: source token ids ``(B, S)`` (padding is masked by ``source_mask``).
            inputs: decoder input embeddings ``(B, T, D)``.
            source_mask: ``(B, S)`` True = real source token.
            cache: the copy attention's ``KVCache`` (filled on the first step, then reused).
            previous: ``(B, S, D)`` embeddings of the token before each source position, with
                ``match_previous`` (not read once ``cache`` is filled).
        """
        return self.mix(hidden, logits, memory, source_ids, inputs=inputs, source_mask=source_mask, cache=cache,
                        previous=previous)[0]

    def mix(
        self,
        hidden: Tensor,
        logits: Tensor,
        memory: Tensor,
        source_ids: Tensor,
        *,
        inputs: Tensor,
        source_mask: Tensor | None = None,
        cache: KVCache | None = None,
        previous: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``forward``'s log-probabilities ``(B, T, V)`` with ``p_gen`` ``(B, T)`` and the copy attention
        ``(B, T, S)`` (all float32)."""
        mask = None if source_mask is None else key_padding_to_attention(source_mask)  # (B, 1, 1, S)
        query, keys_from = hidden, memory
        if self.previous_keys is not None and self.input_queries is not None:
            query = hidden + self.input_queries(inputs)  # (B, T, D)
            if cache is None or cache.length == 0:
                if previous is None:
                    raise ValueError("a copy attention with match_previous needs the previous source tokens' "
                                     "embeddings (B, S, D)")
                keys_from = memory + self.previous_keys(previous)  # (B, S, D)
        context, weights = self.attention(query, keys_from, mask=mask, cache=cache, need_weights=True)
        assert weights is not None
        attention = weights.float().mean(dim=1)  # (B, T, S)
        gate = self.switch(torch.cat([hidden, context, inputs], dim=-1)).float()  # (B, T, 1)
        copied = copy_distribution(attention, source_ids, logits.shape[-1])  # (B, T, V)
        log_probs = torch.logaddexp(F.logsigmoid(gate) + logits.float().log_softmax(dim=-1),
                                    F.logsigmoid(-gate) + copied.clamp_min(_TINY).log())
        return log_probs, torch.sigmoid(gate)[..., 0], attention
