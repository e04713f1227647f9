"""``LSTMLanguageModel`` (``model.architecture: lstm-lm``): the recurrent baseline for language modelling.

Embeddings, a stack of LSTM layers and a next-token head (tied to the embeddings by default, through a
projection when the hidden width differs). Training windows of ``max_length`` tokens each start from a zero
state, as the Transformer's windows start from an empty context. It has the ``DecoderLM`` call signature that
``multihead.generation`` drives, with a ``RecurrentState`` in place of the key/value cache.

Shape legend: ``B`` batch, ``T`` new tokens, ``P`` tokens already consumed, ``E`` embedding width,
``H`` hidden width, ``L`` layers, ``V`` vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from multihead.errors import ConfigError
from multihead.limits import check_sizes
from multihead.models.config_dict import DictConfig
from multihead.models.recurrent_state import RecurrentState

__all__ = ["LSTMLMConfig", "LSTMLanguageModel"]


@dataclass(frozen=True, kw_only=True)
class LSTMLMConfig(DictConfig):
    """Sizes of an ``LSTMLanguageModel``.

    Attributes:
        vocab_size: tokens of the vocabulary.
        pad_id: padding token (left-padded prompts are masked by the decoding code).
        embedding_dim: token embedding width ``E``.
        hidden_size: LSTM width ``H``.
        n_layers: stacked LSTM layers.
        dropout: on embeddings, between layers and before the head.
        tie_embeddings: the head reuses the embedding matrix (after a ``H -> E`` projection when ``H != E``).
        max_length: tokens per training window (truncated back-propagation through time) and per
            evaluation window; generation has no length limit.
    """

    vocab_size: int
    pad_id: int | None = 0
    embedding_dim: int = 256
    hidden_size: int = 512
    n_layers: int = 2
    dropout: float = 0.2
    tie_embeddings: bool = True
    max_length: int = 128

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "hidden_size", "n_layers", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"LSTMLMConfig.{name} must be a positive integer, got {value!r:.80}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LSTMLMConfig.dropout must be in [0, 1), got {self.dropout!r:.80}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"LSTMLMConfig.pad_id {self.pad_id} is outside the vocabulary (0..{self.vocab_size - 1})")
        check_sizes(self, where="LSTMLMConfig")

    @property
    def output_vocab_size(self) -> int:
        return self.vocab_size


class LSTMLanguageModel(nn.Module):
    """An LSTM language model: ``(B, T)`` ids -> ``(B, T, V)`` next-token logits."""

    config_class = LSTMLMConfig

    def __init__(self, config: LSTMLMConfig) -> None:
        super().__init__()
        if not isinstance(config, LSTMLMConfig):
            raise ValueError(f"LSTMLanguageModel needs an LSTMLMConfig, got {type(config).__name__}")
        self.config = config
        E, H = config.embedding_dim, config.hidden_size
        self.embeddings = nn.Embedding(config.vocab_size, E)
        self.lstm = nn.LSTM(E, H, num_layers=config.n_layers, batch_first=True,
                            dropout=config.dropout if config.n_layers > 1 else 0.0)
        self.projection = nn.Linear(H, E) if config.tie_embeddings and H != E else None
        self.lm_head = nn.Linear(E if config.tie_embeddings else H, config.vocab_size)
        self.dropout = nn.Dropout(config.dropout)
        nn.init.normal_(self.embeddings.weight, std=E ** -0.5)  # tied logits start near unit scale
        if config.tie_embeddings:
            self.lm_head.weight = self.embeddings.weight

    def architecture_args(self) -> dict[str, Any]:
        """Constructor arguments beyond the config (none)."""
        return {}

    def forward(
        self,
        ids: Tensor,
        *,
        mask: Tensor | None = None,
        cache: RecurrentState | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """Logits ``(B, T, V)`` for ``(B, T)`` ids; with a cache, ``ids`` are the new tokens only.

        Args:
            mask: ``(B, P + T)`` bool, True = real token; a padded (False) position leaves the state as it
                was, so a left-padded prompt gives the same logits as the prompt alone.
            cache: from ``make_cache``; the state starts from it (zeros when empty) and is stored back.
            position_ids: ignored (a recurrent model counts positions by itself); accepted for the
                ``DecoderLM`` interface.
        """
        embedded = self.dropout(self.embeddings(ids))  # (B, T, E)
        state = cache.get() if cache is not None and cache.started else None
        new_mask = None if mask is None else mask[:, -ids.shape[1]:]  # (B, T)
        if new_mask is None or bool(new_mask.all()):
            out, state = self.lstm(embedded, state)  # (B, T, H)
        else:
            out, state = self._masked(embedded, new_mask, state)
        if cache is not None:
            cache.set(state, steps=ids.shape[1])
        hidden = self.dropout(out)
        if self.projection is not None:
            hidden = self.projection(hidden)  # (B, T, E)
        return self.lm_head(hidden)

    def make_cache(
        self,
        *,
        batch_size: int,
        max_length: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> RecurrentState:
        """An empty ``RecurrentState`` for ``batch_size`` rows (it does not grow with length, so ``max_length``,
        ``dtype`` and ``device`` exist for interface parity only)."""
        return RecurrentState(batch_size=batch_size)

    def _masked(
        self, embedded: Tensor, mask: Tensor, state: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One step at a time; rows whose token is padding keep their state and output zeros."""
        batch = embedded.shape[0]
        if state is None:
            shape = (self.config.n_layers, batch, self.config.hidden_size)
            zeros = embedded.new_zeros(shape)
            state = (zeros, zeros)
        hidden, cell = state
        outputs = []
        for step in range(embedded.shape[1]):
            out, (new_hidden, new_cell) = self.lstm(embedded[:, step:step + 1], (hidden, cell))  # (B, 1, H)
            keep = mask[:, step]  # (B,)
            hidden = torch.where(keep[None, :, None], new_hidden, hidden)  # (L, B, H)
            cell = torch.where(keep[None, :, None], new_cell, cell)
            outputs.append(out[:, 0] * keep[:, None].to(out.dtype))
        return torch.stack(outputs, dim=1), (hidden, cell)  # (B, T, H)
