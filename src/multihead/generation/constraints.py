"""Hard constraints on the next token: no repeated n-gram (``no_repeat_ngram_size``) and no stop token before
a minimum length (``min_new_tokens``). Forbidden tokens get ``-inf``.

Shape legend: ``N`` rows, ``L`` tokens so far, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from multihead.generation.config import GenerationConfig

__all__ = ["apply_constraints", "repeated_ngram_tokens"]


def repeated_ngram_tokens(history: Tensor, history_mask: Tensor | None, n: int, vocab_size: int) -> Tensor:
    """Tokens that would complete an ``n``-gram already in each row: ``(N, V)`` bool, True = forbidden.

    Args:
        history: ``(N, L)`` token ids so far.
        history_mask: ``(N, L)`` True = real token; an n-gram touching padding is not "seen". ``None``: all real.
        n: n-gram size (1 forbids every token seen so far).
        vocab_size: ``V``.
    """
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    rows, length = history.shape
    banned = torch.zeros(rows, vocab_size, dtype=torch.long, device=history.device)  # (N, V) counts
    if length < n:
        return banned.bool()
    windows = history.unfold(1, n, 1)  # (N, L - n + 1, n) every complete n-gram
    suffix = history[:, length - n + 1:]  # (N, n - 1) what the next token would extend
    match = (windows[:, :, :-1] == suffix[:, None, :]).all(dim=-1)  # (N, L - n + 1)
    if history_mask is not None:
        real = history_mask.unfold(1, n, 1).all(dim=-1)  # (N, L - n + 1)
        match = match & real & history_mask[:, length - n + 1:].all(dim=-1, keepdim=True)
    banned.scatter_add_(1, windows[:, :, -1], match.long())
    return banned > 0


def apply_constraints(scores: Tensor, history: Tensor, history_mask: Tensor | None, config: GenerationConfig,
                      *, generated: int) -> Tensor:
    """``scores`` ``(N, V)`` (logits or log-probabilities) with forbidden tokens set to ``-inf``.

    Args:
        history, history_mask: each row's tokens so far ``(N, L)`` and their real-token mask (or ``None``),
            as ``DecodingState.history`` gives them.
        config: ``no_repeat_ngram_size`` and ``min_new_tokens`` (with ``eos_id`` and ``stop_token_ids``).
        generated: tokens each row has generated so far (the step number).
    """
    if config.no_repeat_ngram_size > 0:
        banned = repeated_ngram_tokens(history, history_mask, config.no_repeat_ngram_size, scores.shape[-1])
        scores = scores.masked_fill(banned, float("-inf"))
    if generated < config.min_new_tokens and config.stop_ids:
        stops = torch.tensor(sorted(config.stop_ids), device=scores.device)
        stops = stops[stops < scores.shape[-1]]
        scores = scores.index_fill(1, stops, float("-inf"))
    return scores
