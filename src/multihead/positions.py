"""Position schemes: sinusoidal and learned absolute embeddings, rotary (RoPE) and ALiBi.

Absolute schemes map ``position_ids`` to vectors added to token embeddings; RoPE rotates queries and
keys inside attention; ALiBi adds a per-head linear distance penalty to attention scores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
        cos, sin = self.cos_sin(position_ids, compute)  # (B|., T, Dh) each
        if cos.dim() == 3:
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, Dh)
        half = self.head_dim // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # (B, H, T, Dh)
        return (x.to(compute) * cos + rotated.to(compute) * sin).to(x.dtype)

    def cos_sin(self, position_ids: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``cos`` and ``sin`` of the angles of ``position_ids`` ``(..., T)``, each ``(..., T, Dh)`` in ``dtype``.

        Eager calls on a CPU look them up in a table shared by every rotary module of the same ``head_dim``, base
        and dtype (grown by doubling; the same float64 angles, so the same values): a 30-layer model does not
        compute 60 sines and cosines per decoding step. Elsewhere (other devices, ``torch.compile``, ONNX
        export, negative positions, positions past ``_MAX_TABLE_POSITIONS``) they are computed.
        """
        if torch.compiler.is_compiling() or position_ids.numel() == 0 or position_ids.device.type != "cpu":
            return self._computed_cos_sin(position_ids, dtype)
        key = (self.head_dim, float(self.base), dtype)
        table = _ROTARY_TABLES.get(key)
        if table is not None:
            try:
                return F.embedding(position_ids, table[0]), F.embedding(position_ids, table[1])
            except IndexError:  # a position beyond the table, or a negative one
                pass
        if int(position_ids.min()) < 0 or int(position_ids.max()) >= _MAX_TABLE_POSITIONS:
            return self._computed_cos_sin(position_ids, dtype)
        length = max(256, 2 * (0 if table is None else table[0].shape[0]), 1 << int(position_ids.max()).bit_length())
        table = _ROTARY_TABLES[key] = _rotary_table(self.head_dim, self.base, dtype, length)
        return F.embedding(position_ids, table[0]), F.embedding(position_ids, table[1])

    def _computed_cos_sin(self, position_ids: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        angles = position_ids[..., None].double() * _inverse_frequencies(self.head_dim, self.base, position_ids.device)
        angles = torch.cat((angles, angles), dim=-1)  # (..., T, Dh)
        return angles.cos().to(dtype), angles.sin().to(dtype)


_MAX_TABLE_POSITIONS = 1 << 20
"""Positions a shared table covers at most (two tables of 1M x Dh); later positions are computed per call."""

_ROTARY_TABLES: dict[tuple[int, float, torch.dtype], tuple[Tensor, Tensor]] = {}
"""``(head_dim, base, dtype)`` -> CPU ``cos`` and ``sin`` tables ``(L, Dh)`` of positions ``0 .. L - 1``."""


def _rotary_table(head_dim: int, base: float, dtype: torch.dtype, length: int) -> tuple[Tensor, Tensor]:
    """CPU ``cos`` and ``sin`` ``(length, head_dim)`` of the rotate-half angles, computed in float64."""
    positions = torch.arange(length, dtype=torch.float64)
    angles = positions[:, None] * _inverse_frequencies(head_dim, base, positions.device)  # (L, Dh/2)
    angles = torch.cat((angles, angles), dim=-1)  # (L, Dh)
    return angles.cos().to(dtype), angles.sin().to(dtype)


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
