"""Task heads on an ``Encoder``: sequence classification, token classification, span extraction (QA).

Shape legend: ``B`` batch, ``T`` length, ``D`` model width, ``C`` classes, ``L`` token labels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from multihead.errors import ConfigError
from multihead.models.config import TransformerConfig
from multihead.models.embedding import init_weights
from multihead.models.encoder import Encoder

__all__ = ["SequenceClassifier", "SpanExtractor", "TokenClassifier", "best_spans", "pool"]

Pooling = Literal["cls", "mean", "max"]


def pool(hidden: Tensor, mask: Tensor | None, how: Pooling) -> Tensor:
    """``(B, T, D)`` -> ``(B, D)``: first token, or mean / max over real tokens (``mask`` ``(B, T)``)."""
    if how == "cls":
        return hidden[:, 0]
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    keep = mask[..., None]  # (B, T, 1)
    if how == "mean":
        count = keep.sum(dim=1).clamp(min=1)  # (B, 1)
        return hidden.masked_fill(~keep, 0.0).sum(dim=1) / count  # not hidden * keep: padding may hold NaN
    if how == "max":
        lowest = torch.finfo(hidden.dtype).min
        pooled = hidden.masked_fill(~keep, lowest).amax(dim=1)
        return pooled.masked_fill(~keep.any(dim=1), 0.0)
    raise ConfigError(f"pooling must be 'cls', 'mean' or 'max', got {how!r:.80}")


class SequenceClassifier(nn.Module):
    """Encoder, pooled, then a linear layer: ``(B, T)`` ids -> ``(B, C)`` logits.

    With ``config.pooler`` the pooled vector first goes through ``tanh(dense(.))``, BERT's pooler.
    """

    def __init__(self, config: TransformerConfig, *, n_classes: int, pooling: Pooling = "mean") -> None:
        super().__init__()
        if n_classes < 2:
            raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
        if pooling not in ("cls", "mean", "max"):
            raise ConfigError(f"pooling must be 'cls', 'mean' or 'max', got {pooling!r:.80}")
        self.config, self.pooling = config, pooling
        self.encoder = Encoder(config)
        self.pooler = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.Tanh()) if config.pooler else None
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, n_classes)
        init_weights(self.classifier)
        if self.pooler is not None:
            init_weights(self.pooler)

    def forward(self, ids: Tensor, *, mask: Tensor | None = None) -> Tensor:
        if mask is None and self.config.pad_id is not None:
            mask = ids != self.config.pad_id
        hidden = self.encoder(ids, mask=mask)  # (B, T, D)
        pooled = pool(hidden, mask, self.pooling)  # (B, D)
        if self.pooler is not None:
            pooled = self.pooler(pooled)
        return self.classifier(self.dropout(pooled))  # (B, C)


class TokenClassifier(nn.Module):
    """A label per token (tagging, extractive summarisation by sentence marker): ``(B, T)`` -> ``(B, T, L)``."""

    def __init__(self, config: TransformerConfig, *, n_labels: int) -> None:
        super().__init__()
        if n_labels < 2:
            raise ConfigError(f"n_labels must be >= 2, got {n_labels}")
        self.encoder = Encoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, n_labels)
        init_weights(self.classifier)

    def forward(self, ids: Tensor, *, mask: Tensor | None = None) -> Tensor:
        return self.classifier(self.dropout(self.encoder(ids, mask=mask)))  # (B, T, L)


class SpanExtractor(nn.Module):
    """Start and end logits for extractive QA: ``(B, T)`` ids -> two ``(B, T)`` tensors.

    Padding positions get the lowest finite logit of the dtype, so they are never chosen.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.span = nn.Linear(config.d_model, 2)
        init_weights(self.span)

    def forward(self, ids: Tensor, *, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if mask is None and self.config.pad_id is not None:
            mask = ids != self.config.pad_id
        logits = self.span(self.encoder(ids, mask=mask))  # (B, T, 2)
        if mask is not None:
            logits = logits.masked_fill(~mask[..., None], torch.finfo(logits.dtype).min)
        start, end = logits.unbind(dim=-1)  # (B, T) each
        return start, end


def best_spans(start_logits: Tensor, end_logits: Tensor, *, max_length: int = 30) -> Tensor:
    """The ``(start, end)`` pair with ``start <= end < start + max_length`` maximising the summed logits.

    Returns:
        ``(B, 2)`` long tensor of inclusive token indices.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    length = start_logits.shape[-1]
    scores = start_logits[:, :, None] + end_logits[:, None, :]  # (B, T_start, T_end)
    offsets = torch.arange(length, device=scores.device)
    gap = offsets[None, :] - offsets[:, None]  # (T_start, T_end): end - start
    allowed = (gap >= 0) & (gap < max_length)
    scores = scores.masked_fill(~allowed, float("-inf"))
    flat = scores.flatten(1).argmax(dim=1)  # (B,)
    return torch.stack((flat // length, flat % length), dim=1)
