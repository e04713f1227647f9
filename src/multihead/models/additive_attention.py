"""``AdditiveAttention``: Bahdanau et al.'s (2015) score ``v^T tanh(W_q s + W_k h)``, masked over padding.

Shape legend: ``B`` batch, ``S`` source length, ``Dq`` query width, ``Dk`` key (memory) width, ``A`` attention width.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["AdditiveAttention"]


class AdditiveAttention(nn.Module):
    """One query per row attends over a memory; the keys are projected once per source (``project_keys``).

    Args:
        query_dim: width of the query (the decoder state).
        key_dim: width of the memory (the encoder outputs).
        attention_dim: width of the hidden layer inside the score.
    """

    def __init__(self, *, query_dim: int, key_dim: int, attention_dim: int) -> None:
        super().__init__()
        for name, value in (("query_dim", query_dim), ("key_dim", key_dim), ("attention_dim", attention_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"AdditiveAttention {name} must be a positive integer, got {value!r}")
        self.query = nn.Linear(query_dim, attention_dim, bias=False)
        self.key = nn.Linear(key_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)  # v

    def project_keys(self, memory: Tensor) -> Tensor:
        """``W_k h``: ``(B, S, Dk)`` -> ``(B, S, A)``; computed once and reused at every decoding step."""
        return self.key(memory)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Context vectors and attention weights for one query per row.

        Args:
            query: ``(B, Dq)`` decoder state.
            keys: ``(B, S, A)`` from ``project_keys(memory)``.
            memory: ``(B, S, Dk)`` the values.
            mask: ``(B, S)`` bool, True = real source token (may attend); ``None`` = every position.

        Returns:
            context ``(B, Dk)`` and weights ``(B, S)``: a distribution over real tokens (padding gets exactly 0;
            a row with no real token gets all-zero weights and a zero context, never NaN).
        """
        hidden = (self.query(query)[:, None, :] + keys).tanh()  # (B, S, A)
        scores = self.score(hidden).squeeze(-1).float()  # (B, S), softmax in float32
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
            any_real = mask.any(dim=-1, keepdim=True)  # (B, 1)
            scores = scores.masked_fill(~any_real, 0.0)  # a fully masked row: finite scores, weights zeroed below
        weights = scores.softmax(dim=-1)  # (B, S)
        if mask is not None:
            weights = weights * any_real
        context = weights.to(memory.dtype)[:, None, :].bmm(memory)[:, 0]  # (B, 1, S) x (B, S, Dk) -> (B, Dk)
        return context, weights
