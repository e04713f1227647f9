"""AdamW with weight decay on matrices only (nanoGPT's rule: biases, norms and scalars are not decayed), and
optional layer-wise learning-rate decay for fine-tuning (ELECTRA, Clark et al. 2020)."""

from __future__ import annotations

import re

import torch
from torch import nn

from multihead.errors import ConfigError

__all__ = ["build_optimizer", "layer_depths", "parameter_groups"]

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")  # "encoder.layers.3.self_attn.q_proj.weight" -> 3
_EMBEDDING = re.compile(r"(?:^|\.)(?:embeddings|embedding|tokens|positions)\.")


def layer_depths(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{parameter name: (depth, top)}``: embeddings 0, ``layers.i`` i + 1, everything else (heads, final norms)
    ``top`` = number of layers + 1."""
    names = [name for name, _ in model.named_parameters()]
    indices = [int(match.group(1)) for name in names if (match := _LAYER.search(name))]
    top = max(indices, default=-1) + 2
    depths = {}
    for name in names:
        if match := _LAYER.search(name):
            depths[name] = (int(match.group(1)) + 1, top)
        else:
            depths[name] = (0 if _EMBEDDING.search(name) else top, top)
    return depths


def parameter_groups(model: nn.Module, *, weight_decay: float, lr: float | None = None,
                     layer_decay: float | None = None) -> list[dict[str, object]]:
    """Parameters with ``dim >= 2`` are decayed, the rest not; tied weights counted once.

    With ``layer_decay`` (and ``lr``), a parameter at depth ``d`` of ``top`` (see ``layer_depths``) gets the
    learning rate ``lr * layer_decay ** (top - d)``: the head trains at ``lr``, each layer below it slower.
    Without it, two groups.
    """
    if layer_decay is None:
        decayed, plain = [], []
        for parameter in model.parameters():  # .parameters() yields a shared (tied) tensor once
            if parameter.requires_grad:
                (decayed if parameter.dim() >= 2 else plain).append(parameter)
        return [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    if lr is None or not 0.0 < layer_decay <= 1.0:
        raise ConfigError(f"layer_decay must be in (0, 1] and needs lr, got {layer_decay} and lr={lr}")
    depths = layer_depths(model)
    groups: dict[tuple[bool, int], dict[str, object]] = {}
    for name, parameter in model.named_parameters():  # named_parameters() also yields tied tensors once
        if not parameter.requires_grad:
            continue
        depth, top = depths[name]
        key = (parameter.dim() >= 2, depth)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": weight_decay if key[0] else 0.0,
                           "lr": lr * layer_decay ** (top - depth)}
        groups[key]["params"].append(parameter)  # type: ignore[union-attr]
    return [groups[key] for key in sorted(groups)]


def build_optimizer(
    model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
    layer_decay: float | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``parameter_groups`` (each group's peak rate is what the schedule scales)."""
    if lr <= 0:
        raise ConfigError(f"learning rate must be positive, got {lr}")
    if weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
    groups = parameter_groups(model, weight_decay=weight_decay, lr=lr, layer_decay=layer_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
