"""Token embeddings with absolute positions, the per-attention position schemes, and weight init.

Shape legend: ``B`` batch, ``T`` length, ``D`` model width, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from multihead.layers import make_norm
from multihead.models.config import TransformerConfig
from multihead.positions import ALiBi, LearnedPositions, RotaryEmbedding, SinusoidalPositions

__all__ = [
    "Embeddings",
    "apply_pruned_heads",
    "attention_positions",
    "default_position_ids",
    "final_norm",
    "init_weights",
    "layer_options",
]


class Embeddings(nn.Module):
    """``ids`` -> token embedding (times ``sqrt(D)`` if configured) + absolute position -> norm (if
    ``config.embedding_norm``) -> dropout."""

    def __init__(self, config: TransformerConfig, *, vocab_size: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, config.d_model)
        self.positions: nn.Module | None = None
        if config.positions == "sinusoidal":
            self.positions = SinusoidalPositions(config.d_model, layout=config.sinusoid_layout)
        elif config.positions == "learned":
            self.positions = LearnedPositions(config.max_length, config.d_model)
        self.scale = 1.0
        if config.scales_embeddings:
            self.scale = math.sqrt(config.d_model)
            self.tokens.init_std = config.d_model**-0.5  # read by init_weights
        self.norm: nn.Module | None = None
        if config.embedding_norm:
            self.norm = make_norm(config.norm, config.d_model, eps=config.eps)  # type: ignore[arg-type]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, ids: Tensor, position_ids: Tensor) -> Tensor:
        """``(B, T)`` ids and ``(T,)`` or ``(B, T)`` positions -> ``(B, T, D)``."""
        vocab_size = self.tokens.num_embeddings
        # a traced graph (torch.compile, torch.export and ONNX) reads no tensor values; eager calls check every id
        if ids.numel() and not torch.compiler.is_compiling() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
            bad = ids[(ids < 0) | (ids >= vocab_size)][0].item()
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{vocab_size - 1})")
        x = self.tokens(ids) * self.scale
        if self.positions is not None:
            x = x + self.positions(position_ids).to(x.dtype)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


def attention_positions(config: TransformerConfig) -> RotaryEmbedding | ALiBi | None:
    """The position module shared by every self-attention of a stack (none for absolute schemes)."""
    if config.positions == "rope":
        return RotaryEmbedding(config.head_dim, base=config.rope_theta)
    if config.positions == "alibi":
        return ALiBi(config.n_heads)
    return None


def layer_options(config: TransformerConfig) -> dict[str, Any]:
    """Keyword arguments that ``EncoderLayer`` and ``DecoderLayer`` take from a config."""
    return {
        "d_ff": config.feed_forward_width,
        "n_kv_heads": config.n_kv_heads,
        "dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout,
        "activation": config.activation,
        "norm_first": config.norm_first,
        "norm": config.norm,
        "eps": config.eps,
        "bias": config.bias,
        "qkv_bias": config.qkv_bias,
        "positions": attention_positions(config),
    }


def apply_pruned_heads(layers: nn.ModuleList, config: TransformerConfig, *, stack: str) -> None:
    """Remove the heads ``config.pruned_heads`` lists for ``stack`` (``encoder`` or ``decoder``) from ``layers``."""
    for key, heads in (config.pruned_heads or {}).items():
        name, index, attention = key.split(".")
        if name != stack:
            continue
        module = getattr(layers[int(index)], attention, None) if int(index) < len(layers) else None
        if module is None:
            raise ValueError(f"TransformerConfig.pruned_heads names {key!r}, but this {stack} has "
                             f"{len(layers)} layers" + ("" if attention == "self_attn" else " without cross-attention"))
        module.prune_heads(heads)


def default_position_ids(length: int, *, past: int, device: torch.device) -> Tensor:
    """Positions ``past .. past + length - 1``, ``(T,)``."""
    return torch.arange(past, past + length, device=device)


def final_norm(config: TransformerConfig) -> nn.Module:
    """The norm after the last layer of a pre-norm stack; post-norm stacks end normalised already."""
    return make_norm(config.norm, config.d_model, eps=config.eps) if config.norm_first else nn.Identity()  # type: ignore[arg-type]


def init_weights(module: nn.Module, *, std: float = 0.02) -> None:
    """GPT-2 style: normal(0, std) for linear and embedding weights (an embedding may carry its own
    ``init_std``), zero biases; norms keep ones and zeros."""
    for child in module.modules():
        if isinstance(child, nn.Linear):
            nn.init.normal_(child.weight, mean=0.0, std=std)
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.Embedding):
            nn.init.normal_(child.weight, mean=0.0, std=getattr(child, "init_std", std))
