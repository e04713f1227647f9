"""``RNNEncoderDecoder`` (``model.architecture: rnn-attention``): a bidirectional GRU/LSTM encoder and a GRU/LSTM
decoder with additive (Bahdanau) attention, the recurrent baseline for translation.

The decoder follows Bahdanau et al. (2015), not Luong's input feeding: at step ``i`` the previous decoder state
``s_{i-1}`` (top layer) queries the encoder outputs, ``c_i = sum_j a_ij h_j`` with
``a_i = softmax_j(v^T tanh(W_q s_{i-1} + W_k h_j))`` over real source tokens; the decoder reads
``[E y_{i-1}; c_i]`` and moves to ``s_i``; the output layer is ``t_i = tanh(W_o [s_i; c_i; E y_{i-1}])`` (a tanh
in place of the paper's maxout) and the logits ``U t_i`` (``U`` tied to the target embedding by default). The
first state is ``s_0 = tanh(W_s h_1_backward)``, the backward encoder's summary of the whole source (LSTM cell
states start at zero).

It has the ``EncoderDecoder`` interface that ``multihead.generation`` drives: ``encode`` once, ``decode`` with a
``RecurrentState`` from ``make_cache`` (the per-step state that beam search reorders).

Shape legend: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding width, ``H`` hidden width,
``V`` target vocabulary, ``L`` decoder layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from multihead.errors import ConfigError
from multihead.limits import check_sizes
from multihead.models.additive_attention import AdditiveAttention
from multihead.models.config_dict import DictConfig
from multihead.models.recurrent_state import RecurrentState

__all__ = ["RNNEncoderDecoder", "RNNSeq2SeqConfig"]

CELLS = ("gru", "lstm")


@dataclass(frozen=True, kw_only=True)
class RNNSeq2SeqConfig(DictConfig):
    """Sizes of an ``RNNEncoderDecoder``.

    Attributes:
        vocab_size: tokens of the (source) vocabulary.
        pad_id: padding token; source masks come from it.
        target_vocab_size: tokens of a separate target vocabulary; ``None`` shares one vocabulary and one embedding.
        cell: ``gru`` or ``lstm`` (encoder and decoder).
        embedding_dim: token embedding width ``E`` (also the output layer's width, for tying).
        hidden_size: ``H``, the width of each encoder direction and of the decoder.
        encoder_layers, decoder_layers: stacked recurrent layers.
        attention_dim: hidden width of the additive score.
        dropout: on embeddings, between stacked layers and on the output layer.
        tie_embeddings: the output projection reuses the target embedding matrix.
    """

    vocab_size: int
    pad_id: int | None = 0
    target_vocab_size: int | None = None
    cell: str = "gru"
    embedding_dim: int = 256
    hidden_size: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    attention_dim: int = 256
    dropout: float = 0.2
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "hidden_size", "encoder_layers", "decoder_layers", "attention_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"RNNSeq2SeqConfig.{name} must be a positive integer, got {value!r:.80}")
        if self.target_vocab_size is not None and (
            not isinstance(self.target_vocab_size, int) or self.target_vocab_size <= 0
        ):
            raise ConfigError(f"RNNSeq2SeqConfig.target_vocab_size must be a positive integer or None, "
                              f"got {self.target_vocab_size!r:.80}")
        if self.cell not in CELLS:
            raise ConfigError(f"RNNSeq2SeqConfig.cell must be one of {CELLS}, got {self.cell!r:.80}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"RNNSeq2SeqConfig.dropout must be in [0, 1), got {self.dropout!r:.80}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"RNNSeq2SeqConfig.pad_id {self.pad_id} is outside the vocabulary "
                              f"(0..{self.vocab_size - 1})")
        check_sizes(self, where="RNNSeq2SeqConfig")

    @property
    def output_vocab_size(self) -> int:
        return self.target_vocab_size or self.vocab_size


class RNNEncoderDecoder(nn.Module):
    """Recurrent encoder-decoder with additive attention: ``(B, S)`` source and ``(B, T)`` target ids ->
    ``(B, T, V)`` next-token logits (teacher forcing)."""

    config_class = RNNSeq2SeqConfig

    def __init__(self, config: RNNSeq2SeqConfig) -> None:
        super().__init__()
        if not isinstance(config, RNNSeq2SeqConfig):
            raise ValueError(f"RNNEncoderDecoder needs an RNNSeq2SeqConfig, got {type(config).__name__}")
        self.config = config
        E, H = config.embedding_dim, config.hidden_size
        self.source_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_id)
        self.target_embeddings = self.source_embeddings if config.target_vocab_size is None else nn.Embedding(
            config.target_vocab_size, E, padding_idx=config.pad_id)
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        self.encoder = rnn(E, H, num_layers=config.encoder_layers, batch_first=True, bidirectional=True,
                           dropout=config.dropout if config.encoder_layers > 1 else 0.0)
        self.bridge = nn.Linear(H, config.decoder_layers * H)  # W_s
        self.attention = AdditiveAttention(query_dim=H, key_dim=2 * H, attention_dim=config.attention_dim)
        self.decoder = rnn(E + 2 * H, H, num_layers=config.decoder_layers, batch_first=True,
                           dropout=config.dropout if config.decoder_layers > 1 else 0.0)
        self.pre_output = nn.Linear(H + 2 * H + E, E)  # W_o
        self.lm_head = nn.Linear(E, config.output_vocab_size)  # U
        self.dropout = nn.Dropout(config.dropout)
        for embedding in {self.source_embeddings, self.target_embeddings}:
            nn.init.normal_(embedding.weight, std=E ** -0.5)  # tied logits start near unit scale
            if config.pad_id is not None:
                with torch.no_grad():
                    embedding.weight[config.pad_id].zero_()
        if config.tie_embeddings:
            self.lm_head.weight = self.target_embeddings.weight

    def architecture_args(self) -> dict[str, Any]:
        """Constructor arguments beyond the config (none)."""
        return {}

    def source_mask(self, source_ids: Tensor) -> Tensor | None:
        """``(B, S)`` True = real source token, from ``config.pad_id`` (``None`` without a pad id)."""
        return None if self.config.pad_id is None else source_ids != self.config.pad_id

    def encode(self, source_ids: Tensor, *, source_mask: Tensor | None = None) -> Tensor:
        """``(B, S)`` right-padded source ids -> ``(B, S, 2H)`` memory (zeros at padding).

        ``source_mask`` ``(B, S)`` (True = real token) gives each row's length; padding never enters the
        recurrence, so a padded row encodes as it would alone.
        """
        length = source_ids.shape[1]
        embedded = self.dropout(self.source_embeddings(source_ids))  # (B, S, E)
        if source_mask is None:
            out, _ = self.encoder(embedded)
            return out
        lengths = source_mask.sum(dim=1).clamp(min=1).cpu()  # (B,)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=length)  # (B, S, 2H)
        return memory

    def initial_state(self, memory: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """``s_0 = tanh(W_s h_1_backward)`` for every decoder layer: ``(L, B, H)`` (with zero cells for an LSTM)."""
        H, layers = self.config.hidden_size, self.config.decoder_layers
        backward_first = memory[:, 0, H:]  # (B, H): the backward encoder after reading the whole source
        hidden = self.bridge(backward_first).tanh()  # (B, L * H)
        hidden = hidden.view(-1, layers, H).transpose(0, 1).contiguous()  # (L, B, H)
        return hidden if self.config.cell == "gru" else (hidden, torch.zeros_like(hidden))

    def decode(
        self,
        target_ids: Tensor,
        memory: Tensor,
        *,
        source_mask: Tensor | None = None,
        cache: RecurrentState | None = None,
    ) -> Tensor:
        """Next-token logits ``(B, T, V)`` for ``(B, T)`` target ids given ``(B, S, 2H)`` memory.

        Args:
            source_mask: ``(B, S)`` True = real source token (attention ignores the rest).
            cache: from ``make_cache``; with it, ``target_ids`` are the new tokens only and the state after
                them is stored in it.
        """
        logits, _ = self._decode(target_ids, memory, source_mask=source_mask, cache=cache)
        return logits

    def forward(self, source_ids: Tensor, target_ids: Tensor, *, source_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits ``(B, T, V)``; ``source_mask`` defaults to ``source_ids != pad_id``."""
        if source_mask is None:
            source_mask = self.source_mask(source_ids)
        memory = self.encode(source_ids, source_mask=source_mask)
        return self.decode(target_ids, memory, source_mask=source_mask)

    def attention_weights(
        self, source_ids: Tensor, target_ids: Tensor, *, source_mask: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced attention weights ``(B, T, S)``: row ``i`` is the distribution that produced token ``i``."""
        if source_mask is None:
            source_mask = self.source_mask(source_ids)
        memory = self.encode(source_ids, source_mask=source_mask)
        _, weights = self._decode(target_ids, memory, source_mask=source_mask, cache=None)
        return weights

    def make_cache(
        self,
        *,
        batch_size: int,
        source_length: int = 0,
        max_length: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> RecurrentState:
        """An empty ``RecurrentState`` for ``batch_size`` rows; the first ``decode`` fills it from the memory.
        (A recurrent state does not grow with length: the other arguments exist for interface parity.)"""
        return RecurrentState(batch_size=batch_size)

    def _decode(
        self, target_ids: Tensor, memory: Tensor, *, source_mask: Tensor | None, cache: RecurrentState | None
    ) -> tuple[Tensor, Tensor]:
        """Logits ``(B, T, V)`` and attention weights ``(B, T, S)``, one decoder step per target position."""
        if cache is not None and cache.started:
            state, keys = cache.get(), cache.keys
        else:
            state, keys = self.initial_state(memory), None
        if keys is None:
            keys = self.attention.project_keys(memory)  # (B, S, A), once per source
        embedded = self.dropout(self.target_embeddings(target_ids))  # (B, T, E)
        features, weights = [], []
        for step in range(target_ids.shape[1]):
            word = embedded[:, step]  # (B, E)
            top = state[0][-1] if isinstance(state, tuple) else state[-1]  # (B, H): s_{i-1} of the top layer
            context, step_weights = self.attention(top, keys, memory, source_mask)  # (B, 2H), (B, S)
            rnn_input = torch.cat([word, context.to(word.dtype)], dim=-1)[:, None]  # (B, 1, E + 2H)
            out, state = self.decoder(rnn_input, state)  # (B, 1, H)
            features.append(torch.cat([out[:, 0], context.to(out.dtype), word.to(out.dtype)], dim=-1))
            weights.append(step_weights)
        if cache is not None:
            cache.set(state, steps=target_ids.shape[1])
            cache.keys = keys
        hidden = torch.stack(features, dim=1)  # (B, T, 3H + E)
        output = self.dropout(self.pre_output(hidden).tanh())  # (B, T, E)
        return self.lm_head(output), torch.stack(weights, dim=1)  # (B, T, V), (B, T, S)
