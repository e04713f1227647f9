"""``DecodingState``: the rows being decoded by a ``DecoderLM`` or an ``EncoderDecoder``, one step at a time.

It hides the two model kinds and the two ways of running them behind ``prefill`` (the first
next-token logits), ``advance`` (append one token per row, get the next logits) and ``select`` (keep,
repeat or reorder rows, for finished rows and beams).

- ``DecoderLM`` prompts are left-padded to a common length ``P``; a key mask over past and new
  positions hides the padding and ``position_ids`` make each row count from 0 at its first real token.
- ``EncoderDecoder`` sources are right-padded and encoded once; every row starts from ``bos_id``.
  With the cache, cross-attention keys and values are computed on the first decoding step and reused.
- With ``use_cache`` the prompt is run once and each later step feeds one token; without it, every
  step recomputes the whole prefix. With ``compile`` too, those one-token steps run through ``torch.compile``
  over the cache buffers (:mod:`multihead.generation.compiled`).
- Token ids and the key mask live in buffers preallocated for every step (as the KV cache is); a step writes
  one column, and ``ids``/``key_mask`` are views of the columns written so far.
- The recurrent baselines (``RNNEncoderDecoder``, ``LSTMLanguageModel``) have the same methods; their
  ``RecurrentState`` (hidden and cell states, rows reordered like a cache) takes the cache's place.

Shape legend: ``N`` rows, ``P`` prompt (or source) length, ``L`` tokens so far, ``S`` source length,
``D`` model width, ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from multihead.cache import DecoderCache
from multihead.generation.compiled import check_compilable, compiled_step
from multihead.masks import padding_mask_from_lengths
from multihead.models.decoder import DecoderLM
from multihead.models.recurrent_state import RecurrentState
from multihead.models.rnn_lm import LSTMLanguageModel
from multihead.models.rnn_seq2seq import RNNEncoderDecoder
from multihead.models.seq2seq import EncoderDecoder

__all__ = ["ENCODER_DECODERS", "LANGUAGE_MODELS", "DecodingState", "GenerativeModel"]

ENCODER_DECODERS = (EncoderDecoder, RNNEncoderDecoder)
"""Models decoded from a source: ``encode`` once, then ``decode`` with a cache or state."""
LANGUAGE_MODELS = (DecoderLM, LSTMLanguageModel)
"""Models that continue a prompt: ``model(ids, mask=, cache=, position_ids=)``."""
GenerativeModel = DecoderLM | EncoderDecoder | LSTMLanguageModel | RNNEncoderDecoder


class DecodingState:
    """Token history, masks, encoder memory and caches of ``N`` rows.

    Args:
        model: the model to run (in eval mode, under ``torch.inference_mode``).
        inputs: one token list per row: prompts of a ``DecoderLM`` or sources of an ``EncoderDecoder``.
        max_new_tokens: most tokens each row will be given (sizes the caches).
        use_cache: incremental decoding through ``DecoderCache`` (else full recomputation).
        bos_id: decoder start token (``EncoderDecoder`` only).
        pad_id: token id written at padded positions (masked everywhere).
        on_forward: called with the token ids so far of every row ``(N, L)`` before each model call
            (what attention capture needs to follow a row through reordering beams).
        compile: run the cached one-token steps through ``torch.compile`` (``GenerationConfig.compile``).
    """

    def __init__(
        self,
        model: GenerativeModel,
        inputs: Sequence[list[int]],
        *,
        max_new_tokens: int,
        use_cache: bool,
        bos_id: int | None,
        pad_id: int,
        on_forward: Callable[[Tensor], None] | None = None,
        compile: bool = False,
    ) -> None:
        if compile:
            check_compilable(model)
        self.compile = compile and use_cache
        self.model = model
        self.on_forward = on_forward
        self.use_cache = use_cache
        self.max_new_tokens = max_new_tokens
        self.device = next(model.parameters()).device
        self.cache: DecoderCache | RecurrentState | None = None
        self.memory: Tensor | None = None
        self.source_mask: Tensor | None = None
        lengths = torch.tensor([len(row) for row in inputs], device=self.device)  # (N,)
        longest = int(lengths.max())
        self.seq2seq = isinstance(model, ENCODER_DECODERS)
        if self.seq2seq:
            if bos_id is None:
                raise ValueError("an EncoderDecoder needs GenerationConfig.bos_id (the decoder start token)")
            source = torch.full((len(inputs), longest), pad_id, dtype=torch.long)  # (N, S), right-padded
            for row, tokens in enumerate(inputs):
                source[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            self.source = source.to(self.device)
            self.source_mask = padding_mask_from_lengths(lengths, longest)  # (N, S)
            self._ids = torch.full((len(inputs), 1 + max_new_tokens), pad_id, dtype=torch.long,
                                   device=self.device)  # (N, 1 + new)
            self._ids[:, 0] = bos_id
            self.length = 1
            self._key_mask: Tensor | None = None
        else:
            self._ids = torch.full((len(inputs), longest + max_new_tokens), pad_id, dtype=torch.long)  # (N, P + new)
            for row, tokens in enumerate(inputs):
                self._ids[row, longest - len(tokens):longest] = torch.tensor(tokens, dtype=torch.long)
            self._ids = self._ids.to(self.device)
            self.length = longest
            padded = bool((lengths < longest).any())  # left padding: the padding mask of the lengths, flipped
            self._key_mask = (padding_mask_from_lengths(longest - lengths, longest + max_new_tokens).logical_not()
                              if padded else None)  # (N, P + new)
            self.next_position = lengths.clone()  # (N,) position of each row's next token

    @property
    def ids(self) -> Tensor:
        """Token ids so far ``(N, L)``: a view of the preallocated buffer."""
        return self._ids[:, : self.length]

    @property
    def key_mask(self) -> Tensor | None:
        """Real-token mask of the ids so far ``(N, L)``; ``None`` when no row is padded."""
        return None if self._key_mask is None else self._key_mask[:, : self.length]

    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    def history(self) -> tuple[Tensor, Tensor | None]:
        """Token ids so far ``(N, L)`` (prompt and generated, or BOS and generated) and their real-token
        mask ``(N, L)`` (``None`` when no row is padded)."""
        return self.ids, self.key_mask

    def prefill(self) -> Tensor:
        """Run the prompts (or encode the sources and run BOS); returns next-token logits ``(N, V)``."""
        if self.seq2seq:
            model = self.model
            assert isinstance(model, ENCODER_DECODERS)
            self.memory = model.encode(self.source, source_mask=self.source_mask)  # (N, S, D)
            if self.use_cache:
                self.cache = model.make_cache(
                    batch_size=self.rows, source_length=self.source.shape[1], max_length=1 + self.max_new_tokens
                )
            return self._run(self.ids)
        if self.use_cache:
            assert isinstance(self.model, LANGUAGE_MODELS)
            self.cache = self.model.make_cache(batch_size=self.rows, max_length=self._ids.shape[1])
        return self._run(self.ids, position_ids=self._prefix_positions())

    def advance(self, tokens: Tensor) -> Tensor:
        """Append ``tokens`` ``(N,)`` (one per row); returns the next-token logits ``(N, V)``."""
        if tokens.shape != (self.rows,):
            raise ValueError(f"advance expects one token per row, shape ({self.rows},), got {tuple(tokens.shape)}")
        if self.length == self._ids.shape[1]:
            raise ValueError(f"advance past max_new_tokens={self.max_new_tokens}: the buffers hold "
                             f"{self._ids.shape[1]} tokens a row")
        new = tokens.to(device=self.device, dtype=torch.long)[:, None]  # (N, 1)
        self._ids[:, self.length] = new[:, 0]  # the key mask is already True from here on
        self.length += 1
        if not self.use_cache:
            return self._run(self.ids, position_ids=None if self.seq2seq else self._prefix_positions())
        position_ids = None
        if not self.seq2seq:
            position_ids = self.next_position[:, None]  # (N, 1)
            self.next_position = self.next_position + 1
        if self.compile:
            assert isinstance(self.cache, DecoderCache)
            if self.on_forward is not None:
                self.on_forward(self.ids)
            if position_ids is None:  # the decoder's positions count from 0 at the start token
                position_ids = torch.full((self.rows, 1), self.length - 1, device=self.device)  # (N, 1)
            return compiled_step(self.model, new, position_ids, self._key_mask, self.cache, self.memory,
                                 self.source_mask)
        return self._run(new, position_ids=position_ids)

    def select(self, index: Tensor, *, same_sources: bool = False) -> None:
        """Keep rows ``index`` ``(N',)`` in that order: drop finished rows, repeat rows, reorder beams.

        ``same_sources``: the caller promises that row ``i`` and row ``index[i]`` hold the same source (beams of
        one sentence reordered, none dropped); the source, the encoder output and the caches made from them are
        then already right and are not copied (in beam search they are most of what a reorder moves).
        """
        index = index.to(device=self.device, dtype=torch.long)
        if index.numel() == self.rows and bool((index == torch.arange(self.rows, device=self.device)).all()):
            return
        self._ids = self._ids.index_select(0, index)
        if self._key_mask is not None:
            self._key_mask = self._key_mask.index_select(0, index)
        if self.seq2seq and same_sources and isinstance(self.cache, DecoderCache):
            self.cache.reorder(index, same_sources=True)
            return
        if self.seq2seq:
            assert self.source_mask is not None
            self.source = self.source.index_select(0, index)
            self.source_mask = self.source_mask.index_select(0, index)
            if self.memory is not None:
                self.memory = self.memory.index_select(0, index)
        else:
            self.next_position = self.next_position.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index)

    def _prefix_positions(self) -> Tensor | None:
        """Positions of every token so far ``(N, L)``, counting from 0 at each row's first real token;
        ``None`` (the default ``0 .. L - 1``) when nothing is padded."""
        if self.key_mask is None:
            return None
        return (self.key_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (N, L)

    def _run(self, ids: Tensor, *, position_ids: Tensor | None = None) -> Tensor:
        """Logits of the last position ``(N, V)`` for ``ids`` ``(N, T)`` (new tokens only with a cache)."""
        if self.on_forward is not None:
            self.on_forward(self.ids)
        if self.seq2seq:
            assert isinstance(self.model, ENCODER_DECODERS) and self.memory is not None
            copies = {"source_ids": self.source} if getattr(self.model, "copy_generator", None) is not None else {}
            logits = self.model.decode(ids, self.memory, source_mask=self.source_mask, cache=self.cache, **copies)
        elif isinstance(self.model, DecoderLM):
            logits = self.model(ids, mask=self.key_mask, cache=self.cache, position_ids=position_ids, last_only=True)
        else:
            logits = self.model(ids, mask=self.key_mask, cache=self.cache, position_ids=position_ids)
        return logits[:, -1]  # (N, V)
