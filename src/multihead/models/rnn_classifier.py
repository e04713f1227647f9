"""A bidirectional LSTM classifier: word vectors, a BiLSTM over the real tokens, pooling, dropout, linear.

A baseline with the same call as :class:`multihead.models.SequenceClassifier`: ``(B, T)`` ids and a ``(B, T)``
padding mask (True = real token) in, ``(B, C)`` logits out. Sequences are packed by length, so padding never
enters the recurrence and an example scores the same alone or in a padded batch. The mask must mark a prefix
of each row (right padding), as :func:`multihead.data.pad_batch` makes.

Shape legend: ``B`` batch, ``T`` length, ``E`` embedding width, ``H`` hidden width per direction, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from multihead.errors import ConfigError
from multihead.limits import check_sizes
from multihead.models.config_dict import DictConfig

__all__ = ["BiLSTMClassifier", "BiLSTMConfig"]

RnnPooling = Literal["last", "max", "mean"]
POOLINGS = ("last", "max", "mean")


@dataclass(frozen=True, kw_only=True)
class BiLSTMConfig(DictConfig):
    """Sizes of a BiLSTM classifier.

    Attributes:
        vocab_size, pad_id: from the tokenizer.
        d_embedding: word-vector width.
        d_hidden: LSTM units per direction.
        n_layers: stacked BiLSTM layers.
        dropout: on the word vectors, between layers and on the pooled vector.
    """

    vocab_size: int
    pad_id: int | None = None
    d_embedding: int = 300
    d_hidden: int = 150
    n_layers: int = 1
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ConfigError(f"vocab_size must be >= 1, got {self.vocab_size}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"pad_id must be in 0..{self.vocab_size - 1} or None, got {self.pad_id}")
        for name in ("d_embedding", "d_hidden", "n_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        check_sizes(self, where="BiLSTMConfig")


class BiLSTMClassifier(nn.Module):
    """BiLSTM over the real tokens, pooled: ``(B, T)`` ids -> ``(B, C)`` logits.

    Args:
        pooling: ``last`` (the final state of each direction, concatenated), or ``max`` / ``mean`` of the
            outputs over the real tokens.
    """

    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig, *, n_classes: int, pooling: RnnPooling = "max") -> None:
        super().__init__()
        if n_classes < 2:
            raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS} for a BiLSTM, got {pooling!r:.80}")
        self.config, self.pooling = config, pooling
        self.embedding = nn.Embedding(config.vocab_size, config.d_embedding, padding_idx=config.pad_id)
        self.lstm = nn.LSTM(config.d_embedding, config.d_hidden, num_layers=config.n_layers, batch_first=True,
                            bidirectional=True, dropout=config.dropout if config.n_layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * config.d_hidden, n_classes)

    def architecture_args(self) -> dict[str, Any]:
        """Constructor arguments beyond the config (for model directories)."""
        return {"n_classes": self.classifier.out_features, "pooling": self.pooling}

    def features(self, ids: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """The pooled vector ``(B, 2H)`` before dropout and the linear layer."""
        if mask is None:
            pad_id = self.config.pad_id
            mask = ids != pad_id if pad_id is not None else torch.ones_like(ids, dtype=torch.bool)  # (B, T)
        lengths = mask.sum(dim=1).clamp(min=1)  # (B,); an empty row reads its first (padding) token
        x = self.dropout(self.embedding(ids))  # (B, T, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, (hidden, _) = self.lstm(packed)
        if self.pooling == "last":
            return torch.cat((hidden[-2], hidden[-1]), dim=1)  # (B, 2H): forward and backward final states
        padded, _ = pad_packed_sequence(outputs, batch_first=True, total_length=ids.shape[1])  # (B, T, 2H)
        keep = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None])[..., None]  # (B, T, 1)
        if self.pooling == "mean":
            return (padded * keep).sum(dim=1) / lengths[:, None].to(padded.dtype)
        return padded.masked_fill(~keep, torch.finfo(padded.dtype).min).amax(dim=1)  # (B, 2H)

    def forward(self, ids: Tensor, *, mask: Tensor | None = None) -> Tensor:
        return self.classifier(self.dropout(self.features(ids, mask=mask)))  # (B, C)
