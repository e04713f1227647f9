"""``TrainingConfig``: the trainer's settings, frozen and validated."""

from __future__ import annotations

import math
from dataclasses import dataclass

from multihead.errors import ConfigError
from multihead.training.schedules import SCHEDULES

__all__ = ["PRECISIONS", "TrainingConfig"]

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_NUMBERS = ("max_minutes", "lr", "weight_decay", "layer_decay", "min_lr_ratio", "clip_norm", "ema_decay",
            "label_smoothing")


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """How to train.

    Attributes:
        steps: optimiser steps in total.
        max_minutes: also stop (evaluating and saving as at the last step) once training has run this many
            minutes of wall-clock time, resumed runs included (None = no time limit).
        batch_size: examples per optimiser step, over all processes and accumulation micro-batches.
        accumulation: micro-batches per optimiser step (gradient accumulation).
        lr, weight_decay, betas: AdamW; weight decay applies to matrices only.
        layer_decay: layer-wise learning-rate decay for fine-tuning: the head learns at ``lr``, layer ``i`` of
            ``L`` at ``lr * layer_decay ** (L - i)``, the embeddings at ``lr * layer_decay ** (L + 1)``
            (None = one rate for all). Depths come from parameter names (``layers.<i>.``), so it suits one stack
            (classifiers, language models); an encoder-decoder's two stacks share depths by layer index.
        schedule: ``linear``, ``cosine``, ``inverse_sqrt`` or ``constant`` after ``warmup_steps``.
        min_lr_ratio: where linear and cosine decays end, as a share of ``lr``.
        clip_norm: gradient norm clipping (None = off).
        ema_decay: keep an exponential moving average of the weights (e.g. 0.999) and evaluate, pick and save
            it as the model in ``best/`` (``last/`` keeps the raw weights, plus the average for resuming).
        label_smoothing: for classification and sequence losses.
        precision: ``fp32``; ``bf16`` autocast (CPU and GPU); ``fp16`` autocast with a gradient scaler (GPU);
            ``auto``: bf16 on a CUDA GPU that has it or a CPU with AMX, else fp32 (``training/precision.py``).
        eval_every: evaluate (and save ``last``) every this many steps, and at the end.
        metric, mode: the validation metric that picks ``best`` and drives early stopping (``max``/``min``).
        patience: stop after this many evaluations without improvement (None = never).
        log_every: steps between metrics-log lines.
        seed: seeds model init, dropout and data order; CPU runs with the same seed are repeatable.
        progress: show a progress bar; tensorboard: also log to TensorBoard (needs ``tensorboard``).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        compile: run the training forward and backward through ``torch.compile`` (evaluation stays eager). The
            first steps compile (seconds to minutes; batches of new lengths compile once more, with dynamic
            shapes); ``docs/results/deploy.md`` says when it pays.
    """

    steps: int = 1000
    max_minutes: float | None = None
    batch_size: int = 32
    accumulation: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    layer_decay: float | None = None
    schedule: str = "linear"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    clip_norm: float | None = 1.0
    ema_decay: float | None = None
    label_smoothing: float = 0.0
    precision: str = "fp32"
    eval_every: int = 200
    metric: str = "accuracy"
    mode: str = "max"
    patience: int | None = None
    log_every: int = 10
    seed: int = 0
    progress: bool = True
    tensorboard: bool = False
    device: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "accumulation", "eval_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"training.{name} must be a positive integer, got {value!r:.80}")
        for name in _NUMBERS:  # NaN and infinity pass every comparison below, and would train to nonsense
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise ConfigError(f"training.{name} must be a finite number, got {value!r:.80}")
        if not isinstance(self.betas, tuple | list) or not all(
                isinstance(beta, int | float) and math.isfinite(beta) for beta in self.betas):
            raise ConfigError(f"training.betas must be two finite numbers, got {self.betas!r:.80}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"training.max_minutes must be positive or null, got {self.max_minutes}")
        if self.batch_size % self.accumulation:
            raise ConfigError(
                f"training.batch_size ({self.batch_size}) must be divisible by "
                f"training.accumulation ({self.accumulation})"
            )
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"training.lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ConfigError(f"training.betas must be two numbers in [0, 1), got {self.betas!r:.80}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"training.schedule must be one of {SCHEDULES}, got {self.schedule!r:.80}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError(f"training.warmup_steps must be in 0..steps ({self.steps}), got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"training.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"training.layer_decay must be in (0, 1] or null, got {self.layer_decay}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"training.ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"training.clip_norm must be positive or null, got {self.clip_norm}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"training.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"training.precision must be one of {PRECISIONS}, got {self.precision!r:.80}")
        if self.mode not in ("max", "min"):
            raise ConfigError(f"training.mode must be 'max' or 'min', got {self.mode!r:.80}")
        if self.patience is not None and self.patience <= 0:
            raise ConfigError(f"training.patience must be positive or null, got {self.patience}")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"training.compile must be true or false, got {self.compile!r:.80}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"training.device must be 'auto', 'cpu' or 'cuda', got {self.device!r:.80}")
