"""Logit processing and token choice: repetition penalty, temperature, top-k, top-p, argmax or a draw.

Everything here works on float32 logits ``(N, V)`` (``N`` rows, ``V`` vocabulary), whatever the
model's dtype. Filtered-out tokens get ``-inf``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from multihead.generation.config import GenerationConfig

__all__ = ["choose_tokens", "filter_logits", "penalise_repetitions", "top_k_filter", "top_p_filter"]


def penalise_repetitions(logits: Tensor, history: Tensor, history_mask: Tensor | None, penalty: float) -> Tensor:
    """CTRL's repetition penalty: for every token in ``history``, divide a positive logit by ``penalty``
    and multiply a negative one by it.

    Args:
        logits: ``(N, V)`` float32.
        history: ``(N, L)`` token ids seen so far.
        history_mask: ``(N, L)`` True = real token (padding is not "seen"); ``None`` = all real.
        penalty: > 1 discourages repeats, < 1 encourages them, 1 leaves ``logits`` unchanged.
    """
    if penalty == 1.0 or history.shape[1] == 0:
        return logits
    weight = torch.ones_like(history, dtype=logits.dtype) if history_mask is None else history_mask.to(logits.dtype)
    counts = torch.zeros_like(logits).scatter_add_(1, history, weight)  # (N, V) occurrences
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(counts > 0, penalised, logits)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row (ties with the ``k``-th are kept too), ``(N, V)``."""
    if k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[:, -1:]  # (N, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches ``p`` (always at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (N, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    drop_sorted = mass_before >= p
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter_(1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: Tensor, config: GenerationConfig) -> Tensor:
    """Temperature, then top-k, then top-p, as configured; ``(N, V)`` float32 in and out."""
    logits = logits / config.temperature
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    if config.top_p is not None:
        logits = top_p_filter(logits, config.top_p)
    return logits


def choose_tokens(logits: Tensor, config: GenerationConfig, generator: torch.Generator | None) -> Tensor:
    """Pick one token per row ``(N,)`` from processed logits ``(N, V)``: the argmax, or a draw from the
    filtered distribution with ``generator`` when ``config.do_sample``."""
    if not config.do_sample:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits, config).softmax(dim=-1)  # (N, V)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
