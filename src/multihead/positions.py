"""Position schemes: sinusoidal and learned absolute embeddings, rotary (RoPE) and ALiBi.

Absolute schemes map ``position_ids`` to vectors added to token embeddings; RoPE rotates queries and
keys inside attention; ALiBi adds a per-head linear distance penalty to attention scores.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ALiBi", "LearnedPositions", "RotaryEmbedding", "SinusoidalPositions"]


class SinusoidalPositions(nn.Module):
    """Fixed encodings of Vaswani et al. (2017): ``PE[p, 2i] = sin(p / base^(2i/D))``, ``PE[p, 2i+1] = cos(...)``.

    Computed on the fly, so any position is valid. ``layout="halves"`` puts every sine first and every
    cosine after them (``PE[p, i] = sin(...)``, ``PE[p, D/2 + i] = cos(...)``), as Marian and fairseq do.
    """

    def __init__(self, d_model: int, *, base: float = 10000.0, layout: str = "interleaved") -> None:
        super().__init__()
        if d_model <= 0 or d_model % 2:
            raise ValueError(f"d_model must be a positive even number for sinusoidal positions, got {d_model}")
        if layout not in ("interleaved", "halves"):
            raise ValueError(f"layout must be 'interleaved' or 'halves', got {layout!r}")
        self.d_model, self.base, self.layout = d_model, base, layout

    def forward(self, position_ids: Tensor) -> Tensor:
        """``(..., T)`` integer positions -> ``(..., T, D)`` float32 encodings."""
        angles = position_ids[..., None].double() * _inverse_frequencies(self.d_model, self.base, position_ids.device)
        if self.layout == "halves":
            return torch.cat((angles.sin(), angles.cos()), dim=-1).float()  # (..., T, D): sines, then cosines
        stacked = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (..., T, D/2, 2)
        return stacked.flatten(-2).float()  # (..., T, D): sin, cos interleaved


def _inverse_frequencies(width: int, base: float, device: torch.device) -> Tensor:
    """``base^(-2i/width)`` for ``i < width/2``, float64 ``(width/2,)``; computed on call so that casting a
    model to half precision never rounds them."""
    return base ** (-torch.arange(0, width, 2, dtype=torch.float64, device=device) / width)


class LearnedPositions(nn.Module):
    """A trained embedding per position ``0 .. max_length - 1``."""

    def __init__(self, max_length: int, d_model: int) -> None:
        super().__init__()
        if max_length <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.max_length = max_length
        self.embedding = nn.Embedding(max_length, d_model)

    def forward(self, position_ids: Tensor) -> Tensor:
        """``(..., T)`` integer positions -> ``(..., T, D)``."""
        checked = position_ids.numel() and not torch.compiler.is_compiling()  # traced graphs read no tensor values
        if checked and not 0 <= int(position_ids.min()) <= int(position_ids.max()) < self.max_length:
            raise ValueError(
                f"positions {int(position_ids.min())}..{int(position_ids.max())} are outside the learned "
                f"positions 0..{self.max_length - 1}"
            )
        return self.embedding(position_ids)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al., 2021) in the rotate-half layout of GPT-NeoX and LLaMA.

    Channel ``j`` and ``j + Dh/2`` of each head form a pair rotated by ``position * base^(-2j/Dh)``,
    so that ``<rotate(q, m), rotate(k, n)>`` depends on ``m - n`` only.
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim <= 0 or head_dim % 2:
            raise ValueError(f"head_dim must be a positive even number for rotary embeddings, got {head_dim}")
        self.head_dim, self.base = head_dim, base

    def forward(self, x: Tensor, position_ids: Tensor) -> Tensor:
        """Rotate ``x`` ``(B, H, T, Dh)`` by ``position_ids`` ``(T,)`` or ``(B, T)``; returns ``(B, H, T, Dh)``.

        Angles are computed in float64 and the rotation in float32 (float64 for float64 inputs).
        """
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"rotary embedding built for head_dim {self.head_dim}, got width {x.shape[-1]}")
        compute = torch.promote_types(x.dtype, torch.float32)
        angles = position_ids[..., None].double() * _inverse_frequencies(self.head_dim, self.base, x.device)
        angles = torch.cat((angles, angles), dim=-1)  # (B|., T, Dh)
        if angles.dim() == 3:
            angles = angles[:, None]  # (B, 1, T, Dh)
        cos, sin = angles.cos().to(compute), angles.sin().to(compute)
        half = self.head_dim // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # (B, H, T, Dh)
        return (x.to(compute) * cos + rotated.to(compute) * sin).to(x.dtype)


class ALiBi(nn.Module):
    """Attention with linear biases (Press et al., 2022): head ``h`` adds ``-slope_h * |i - j|`` to scores.

    For causal attention this is the paper's bias; for bidirectional attention it is its symmetric form.
    """

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        if n_heads <= 0:
            raise ValueError(f"n_heads must be positive, got {n_heads}")
        self.n_heads = n_heads
        self.register_buffer("slopes", torch.tensor(self.head_slopes(n_heads)), persistent=False)

    @staticmethod
    def head_slopes(n_heads: int) -> list[float]:
        """Geometric slopes ``2^(-8/n), 2^(-16/n), ...``; for ``n`` not a power of two, the paper's interleaving."""
        closest = 2 ** math.floor(math.log2(n_heads))
        slopes = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
        if closest < n_heads:
            extra = [2 ** (-4 * (i + 1) / closest) for i in range(2 * closest)]
            slopes += extra[0::2][: n_heads - closest]
        return slopes

    def forward(self, query_positions: Tensor, key_positions: Tensor) -> Tensor:
        """``(Tq,)`` and ``(Tk,)`` positions -> ``(1, H, Tq, Tk)`` float32 bias."""
        distance = (query_positions[:, None] - key_positions[None, :]).abs().float()  # (Tq, Tk)
        return -(self.slopes[:, None, None] * distance)[None]  # (1, H, Tq, Tk)
