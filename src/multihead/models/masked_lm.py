"""``MaskedLM``: an ``Encoder`` with BERT's masked-token head (dense, GELU, norm, tied output projection).

Shape legend: ``B`` batch, ``T`` length, ``D`` model width, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.layers import make_norm
from multihead.models.config import TransformerConfig
from multihead.models.embedding import init_weights
from multihead.models.encoder import Encoder

__all__ = ["MaskedLM"]


class MaskedLM(nn.Module):
    """``(B, T)`` ids -> ``(B, T, V)`` logits of the original token at each position.

    The output projection shares the encoder's token embedding matrix (plus a bias), as in BERT, so that
    pretraining shapes the embeddings a classifier later reuses.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.transform = nn.Linear(config.d_model, config.d_model)
        self.norm = make_norm(config.norm, config.d_model, eps=config.eps)  # type: ignore[arg-type]
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        init_weights(self.transform)

    def forward(self, ids: Tensor, *, mask: Tensor | None = None) -> Tensor:
        hidden = self.encoder(ids, mask=mask)  # (B, T, D)
        hidden = self.norm(F.gelu(self.transform(hidden)))
        return F.linear(hidden, self.encoder.embeddings.tokens.weight, self.bias)  # (B, T, V)

