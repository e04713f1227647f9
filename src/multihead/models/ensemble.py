"""``ClassifierEnsemble``: several Transformer classifiers whose class probabilities are averaged.

Members share one architecture and one tokenizer and differ in their training seed. Averaging the
probabilities of independently trained networks (Hansen and Salamon, 1990; Lakshminarayanan et al., 2017)
lowers the variance of a single small model trained on a small data set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from multihead.errors import ConfigError
from multihead.models.config import TransformerConfig
from multihead.models.heads import Pooling, SequenceClassifier

__all__ = ["ClassifierEnsemble"]


class ClassifierEnsemble(nn.Module):
    """``size`` ``SequenceClassifier`` members: ``(B, T)`` ids -> ``(B, C)`` log mean probabilities.

    The output is ``log(mean_m softmax(logits_m))``: a softmax of it gives the averaged probabilities, so
    every consumer of a classifier's logits (cross-entropy, argmax, softmax) reads the ensemble unchanged.
    """

    def __init__(self, config: TransformerConfig, *, n_classes: int, pooling: Pooling = "mean", size: int) -> None:
        super().__init__()
        if size < 1:
            raise ConfigError(f"an ensemble needs size >= 1 members, got {size}")
        self.config, self.pooling = config, pooling
        self.members = nn.ModuleList(
            SequenceClassifier(config, n_classes=n_classes, pooling=pooling) for _ in range(size))

    @classmethod
    def from_members(cls, members: Sequence[SequenceClassifier]) -> ClassifierEnsemble:
        """An ensemble holding copies of the weights of trained ``members`` (same config, classes and pooling)."""
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for index, member in enumerate(members):
            if not isinstance(member, SequenceClassifier):
                raise ValueError(f"member {index} is a {type(member).__name__}, expected a SequenceClassifier")
            if (member.config, member.pooling, member.classifier.out_features) != (
                    first.config, first.pooling, first.classifier.out_features):
                raise ValueError(f"member {index} differs from member 0 in config, pooling or number of classes")
        ensemble = cls(first.config, n_classes=first.classifier.out_features, pooling=first.pooling,
                       size=len(members))
        for target, member in zip(ensemble.members, members, strict=True):
            target.load_state_dict(member.state_dict())
        return ensemble

    def architecture_args(self) -> dict[str, Any]:
        """Constructor arguments beyond the config, for ``config.json``."""
        return {"n_classes": self.members[0].classifier.out_features, "pooling": self.pooling,
                "size": len(self.members)}

    def forward(self, ids: Tensor, *, mask: Tensor | None = None) -> Tensor:
        log_probabilities = torch.stack(
            [member(ids, mask=mask).float().log_softmax(-1) for member in self.members])  # (M, B, C)
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))  # (B, C)
