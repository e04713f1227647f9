"""Learning-rate schedules: linear warmup, then linear, cosine, inverse-square-root or constant."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from multihead.errors import ConfigError

__all__ = ["SCHEDULES", "build_scheduler", "lr_multiplier"]

SCHEDULES = ("linear", "cosine", "inverse_sqrt", "constant")


def lr_multiplier(step: int, *, kind: str, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Factor applied to the peak learning rate at optimiser ``step`` (0-based).

    Warmup rises linearly from ``1 / warmup_steps`` to 1; decays end at ``min_ratio`` at ``total_steps``
    (inverse-square-root decays as ``sqrt(warmup / step)`` and never ends).
    """
    if kind not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {SCHEDULES}, got {kind!r:.80}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    if kind == "inverse_sqrt":
        return math.sqrt(max(warmup_steps, 1) / (step + 1))
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "linear":
        return min_ratio + (1.0 - min_ratio) * (1.0 - progress)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: Optimizer, *, kind: str, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` over ``lr_multiplier``; its ``state_dict`` is plain numbers (safe to store as JSON)."""
    if warmup_steps < 0 or total_steps <= 0:
        raise ConfigError(f"need warmup_steps >= 0 and total_steps > 0, got {warmup_steps} and {total_steps}")
    lr_multiplier(0, kind=kind, warmup_steps=warmup_steps, total_steps=total_steps)  # validates kind

    def factor(step: int) -> float:
        return lr_multiplier(step, kind=kind, warmup_steps=warmup_steps, total_steps=total_steps, min_ratio=min_ratio)

    return LambdaLR(optimizer, factor)
