"""``Encoder``: embeddings and a stack of bidirectional ``EncoderLayer``s.

Shape legend: ``B`` batch, ``T`` length, ``D`` model width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multihead.layers import EncoderLayer
from multihead.masks import key_padding_to_attention
from multihead.models.config import TransformerConfig
from multihead.models.embedding import (
    Embeddings,
    apply_pruned_heads,
    default_position_ids,
    final_norm,
    init_weights,
    layer_options,
)
from multihead.packing import Packing

__all__ = ["Encoder"]


class Encoder(nn.Module):
    """Bidirectional Transformer encoder returning contextual vectors ``(B, T, D)``.

    Args:
        config: sizes and choices.
        embeddings: an ``Embeddings`` to share (e.g. with a decoder); default a new one.
    """

    def __init__(self, config: TransformerConfig, *, embeddings: Embeddings | None = None) -> None:
        super().__init__()
        self.config = config
        self.embeddings = embeddings or Embeddings(config, vocab_size=config.vocab_size)
        options = layer_options(config)  # one position module shared by every layer
        self.layers = nn.ModuleList(
            EncoderLayer(config.d_model, config.n_heads, **options) for _ in range(config.n_layers)
        )
        apply_pruned_heads(self.layers, config, stack="encoder")
        self.final_norm = final_norm(config)
        init_weights(self)

    def forward(self, ids: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """Encode ``(B, T)`` token ids into ``(B, T, D)``; padded positions come out as zeros.

        Args:
            mask: ``(B, T)`` bool, True = real token; default ``ids != config.pad_id`` (all real if no pad id).
        """
        if mask is None and self.config.pad_id is not None:
            mask = ids != self.config.pad_id
        position_ids = default_position_ids(ids.shape[1], past=0, device=ids.device)
        x = self.embeddings(ids, position_ids)  # (B, T, D)
        attention_mask = None if mask is None else key_padding_to_attention(mask)  # (B, 1, 1, T)
        # packing finds the real tokens from the mask's values, which a traced graph (torch.compile, ONNX) cannot
        packing = None if mask is None or torch.compiler.is_compiling() else Packing.from_mask(mask)
        if packing is not None:  # position-wise work on real tokens only; attention sees the grid
            x = packing.unpad(x)  # (N, D)
        for layer in self.layers:
            x = layer(x, mask=attention_mask, position_ids=position_ids, packing=packing)
        x = self.final_norm(x)
        if packing is not None:
            return packing.pad(x)  # (B, T, D), zeros at padding
        return x if mask is None else x.masked_fill(~mask[..., None], 0.0)  # (B, T, D), zeros at padding
