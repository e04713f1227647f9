"""Test helper: fill a module's parameters with random non-zero values."""

from __future__ import annotations

import torch
from torch import nn


def randomize_parameters(module: nn.Module, seed: int = 0) -> None:
    """Non-zero values everywhere (biases and norm parameters included), so that every parameter is tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
