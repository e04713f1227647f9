"""Boolean attention masks with one polarity everywhere: ``True`` means *may attend*.

Shape legend: ``B`` batch, ``H`` heads, ``Tq`` query length, ``Tk`` key length.
Every mask here broadcasts against attention scores of shape ``(B, H, Tq, Tk)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "causal_mask",
    "combine_masks",
    "key_padding_to_attention",
    "padding_mask_from_ids",
    "padding_mask_from_lengths",
    "sliding_window_mask",
    "validate_mask",
]


def causal_mask(
    query_length: int,
    key_length: int | None = None,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Lower-triangular mask aligned bottom-right, ``(Tq, Tk)``.

    With ``Tk > Tq`` (cached decoding) the queries are the *last* ``Tq`` positions, so query ``i`` may
    attend keys ``0 .. Tk - Tq + i``.
    """
    key_length = query_length if key_length is None else key_length
    if query_length < 0 or key_length < query_length:
        raise ValueError(
            f"causal_mask needs 0 <= query_length <= key_length, got {query_length} and {key_length}"
        )
    offset = key_length - query_length
    query_pos = torch.arange(query_length, device=device)[:, None] + offset  # (Tq, 1)
    key_pos = torch.arange(key_length, device=device)[None, :]  # (1, Tk)
    return key_pos <= query_pos


def sliding_window_mask(
    query_length: int, key_length: int | None = None, *, window: int, device: torch.device | str | None = None
) -> Tensor:
    """Causal mask that also forbids keys more than ``window - 1`` positions back, ``(Tq, Tk)``."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    key_length = query_length if key_length is None else key_length
    allowed = causal_mask(query_length, key_length, device=device)
    offset = key_length - query_length
    query_pos = torch.arange(query_length, device=device)[:, None] + offset  # (Tq, 1)
    key_pos = torch.arange(key_length, device=device)[None, :]  # (1, Tk)
    return allowed & (query_pos - key_pos < window)


def padding_mask_from_lengths(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """``(B,)`` lengths -> ``(B, T)`` mask, True on the first ``lengths[b]`` positions."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    longest = int(lengths.max()) if lengths.numel() else 0
    max_length = longest if max_length is None else max_length
    if max_length < longest:
        raise ValueError(f"max_length {max_length} is shorter than the longest length {longest}")
    positions = torch.arange(max_length, device=lengths.device)  # (T,)
    return positions[None, :] < lengths[:, None]


def padding_mask_from_ids(ids: Tensor, pad_id: int) -> Tensor:
    """``(B, T)`` token ids -> ``(B, T)`` mask, True where the token is not ``pad_id``."""
    return ids != pad_id


def key_padding_to_attention(key_mask: Tensor) -> Tensor:
    """``(B, Tk)`` key mask (True = real token) -> ``(B, 1, 1, Tk)``, broadcastable to scores."""
    if key_mask.dim() != 2:
        raise ValueError(f"key mask must be (B, Tk), got shape {tuple(key_mask.shape)}")
    return key_mask[:, None, None, :]  # (B, 1, 1, Tk)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of broadcastable boolean masks; ``None`` entries are ignored."""
    result: Tensor | None = None
    for mask in masks:
        if mask is None:
            continue
        result = mask if result is None else result & mask
    return result


def validate_mask(mask: Tensor, batch: int, heads: int, query_length: int, key_length: int) -> Tensor:
    """Check that ``mask`` is boolean and broadcasts to ``(B, H, Tq, Tk)``; return it as 4-D.

    Raises:
        ValueError: naming the dtype or shape that was given and what was expected.
    """
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}; "
            "convert an additive float mask with `mask == 0` or pass it to multihead.compat"
        )
    if mask.dim() > 4:
        raise ValueError(f"mask must have at most 4 dims (B, H, Tq, Tk), got shape {tuple(mask.shape)}")
    mask4 = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B|1, H|1, Tq|1, Tk|1)
    expected = (batch, heads, query_length, key_length)
    for got, want in zip(mask4.shape, expected, strict=True):
        if got not in (1, want):
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to (B, H, Tq, Tk) = {expected}"
            )
    return mask4
