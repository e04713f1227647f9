"""TextCNN (Kim, 2014): word vectors, convolutions of several widths, max-over-time pooling, dropout, linear.

A baseline classifier with the same call as :class:`multihead.models.SequenceClassifier`: ``(B, T)`` ids and a
``(B, T)`` padding mask (True = real token) in, ``(B, C)`` logits out. The convolutions are "wide" (every window
that overlaps at least one real token counts), padding embeddings are zero, and windows made only of padding
are left out of the max, so an example scores the same alone or in a padded batch.

Shape legend: ``B`` batch, ``T`` length, ``E`` embedding width, ``F`` feature maps per width, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.errors import ConfigError
from multihead.limits import check_sizes
from multihead.models.config_dict import DictConfig

__all__ = ["TextCNN", "TextCNNConfig"]


@dataclass(frozen=True, kw_only=True)
class TextCNNConfig(DictConfig):
    """Sizes of a TextCNN; the defaults are Kim's CNN-rand.

    Attributes:
        vocab_size, pad_id: from the tokenizer.
        d_embedding: word-vector width (Kim: 300, random init).
        widths: convolution widths in tokens (Kim: 3, 4, 5).
        n_filters: feature maps per width (Kim: 100).
        dropout: on the pooled features (Kim: 0.5).
        embedding_dropout: on the word vectors (Kim: none).
    """

    vocab_size: int
    pad_id: int | None = None
    d_embedding: int = 300
    widths: tuple[int, ...] = (3, 4, 5)
    n_filters: int = 100
    dropout: float = 0.5
    embedding_dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        if self.vocab_size < 1:
            raise ConfigError(f"vocab_size must be >= 1, got {self.vocab_size}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"pad_id must be in 0..{self.vocab_size - 1} or None, got {self.pad_id}")
        if self.d_embedding < 1 or self.n_filters < 1:
            raise ConfigError(f"d_embedding and n_filters must be >= 1, got {self.d_embedding} and {self.n_filters}")
        if not self.widths or any(not isinstance(w, int) or w < 1 for w in self.widths):
            raise ConfigError(f"widths must be a non-empty list of positive integers, got {self.widths!r:.80}")
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        check_sizes(self, where="TextCNNConfig")


class TextCNN(nn.Module):
    """Kim's CNN for sentence classification: ``(B, T)`` ids -> ``(B, C)`` logits."""

    config_class = TextCNNConfig

    def __init__(self, config: TextCNNConfig, *, n_classes: int) -> None:
        super().__init__()
        if n_classes < 2:
            raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_embedding, padding_idx=config.pad_id)
        nn.init.uniform_(self.embedding.weight, -0.25, 0.25)  # Kim's range for random vectors
        if config.pad_id is not None:
            with torch.no_grad():
                self.embedding.weight[config.pad_id].zero_()
        self.convolutions = nn.ModuleList(
            nn.Conv1d(config.d_embedding, config.n_filters, width, padding=width - 1) for width in config.widths)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.n_filters * len(config.widths), n_classes)

    def architecture_args(self) -> dict[str, Any]:
        """Constructor arguments beyond the config (for model directories)."""
        return {"n_classes": self.classifier.out_features}

    def features(self, ids: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """The pooled features ``(B, F * len(widths))`` before dropout and the linear layer."""
        if mask is None:
            pad_id = self.config.pad_id
            mask = ids != pad_id if pad_id is not None else torch.ones_like(ids, dtype=torch.bool)  # (B, T)
        x = self.embedding_dropout(self.embedding(ids)) * mask[..., None]  # (B, T, E), padding zeroed
        x = x.transpose(1, 2)  # (B, E, T)
        real = mask[:, None, :].float()  # (B, 1, T)
        pooled = []
        for convolution, width in zip(self.convolutions, self.config.widths, strict=True):
            maps = F.relu(convolution(x))  # (B, F, T + width - 1)
            # a window counts when it overlaps a real token: max of the mask over the window
            valid = F.max_pool1d(F.pad(real, (width - 1, width - 1)), width, stride=1) > 0  # (B, 1, T + width - 1)
            pooled.append(maps.masked_fill(~valid, 0.0).amax(dim=2))  # (B, F); ReLU >= 0, so 0 never wins
        return torch.cat(pooled, dim=1)  # (B, F * len(widths))

    def forward(self, ids: Tensor, *, mask: Tensor | None = None) -> Tensor:
        return self.classifier(self.dropout(self.features(ids, mask=mask)))  # (B, C)
