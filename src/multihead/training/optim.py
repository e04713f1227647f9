"""AdamW with weight decay on matrices only (nanoGPT's rule: biases, norms and scalars are not decayed)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["build_optimizer", "parameter_groups"]


def parameter_groups(model: nn.Module, *, weight_decay: float) -> list[dict[str, object]]:
    """Two groups: parameters with ``dim >= 2`` (decayed) and the rest (not); tied weights counted once."""
    decayed, plain = [], []
    for parameter in model.parameters():  # .parameters() yields a shared (tied) tensor once
        if parameter.requires_grad:
            (decayed if parameter.dim() >= 2 else plain).append(parameter)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
) -> torch.optim.AdamW:
    """AdamW over ``parameter_groups``."""
    if lr <= 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    return torch.optim.AdamW(parameter_groups(model, weight_decay=weight_decay), lr=lr, betas=betas, eps=eps)
