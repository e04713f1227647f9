"""Masks: one polarity (True = may attend), shapes that broadcast to ``(B, H, Tq, Tk)``, clear errors."""

from __future__ import annotations

import pytest
import torch

from multihead.masks import (
    causal_mask,
    combine_masks,
    key_padding_to_attention,
    padding_mask_from_ids,
    padding_mask_from_lengths,
    sliding_window_mask,
    validate_mask,
)
from reference import reference_causal_mask


def test_causal_mask_square_is_lower_triangular() -> None:
    """For ``Tq == Tk`` query ``i`` may attend keys ``0..i`` only."""
    expected = torch.tensor(
        [
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [1, 1, 1, 0],
            [1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    mask = causal_mask(4)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_causal_mask_bottom_right_offset() -> None:
    """For ``Tk > Tq`` the queries are the last positions: query ``i`` sees keys ``0..Tk-Tq+i``."""
    expected = torch.tensor(
        [
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(causal_mask(2, 5), expected)
    assert torch.equal(causal_mask(1, 6), torch.ones(1, 6, dtype=torch.bool))


@pytest.mark.parametrize(("tq", "tk"), [(1, 1), (3, 3), (2, 7), (5, 9), (0, 4)])
def test_causal_mask_matches_reference(tq: int, tk: int) -> None:
    """``causal_mask`` equals the plain loop definition for several shapes."""
    assert torch.equal(causal_mask(tq, tk), reference_causal_mask(tq, tk))


@pytest.mark.parametrize(("tq", "tk"), [(4, 3), (-1, 2)])
def test_causal_mask_rejects_bad_lengths(tq: int, tk: int) -> None:
    """More queries than keys (or a negative length) is a ValueError naming both lengths."""
    with pytest.raises(ValueError, match=f"{tq} and {tk}"):
        causal_mask(tq, tk)


def test_sliding_window_mask_values() -> None:
    """A window of 2 lets query ``i`` see keys ``i-1`` and ``i``, never the future."""
    expected = torch.tensor(
        [
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(sliding_window_mask(4, window=2), expected)


@pytest.mark.parametrize(("tq", "tk", "window"), [(5, 5, 1), (5, 5, 3), (3, 8, 2), (4, 6, 10)])
def test_sliding_window_mask_matches_definition(tq: int, tk: int, window: int) -> None:
    """Query at position ``p = Tk - Tq + i`` sees keys ``j`` with ``p - window < j <= p``."""
    mask = sliding_window_mask(tq, tk, window=window)
    for i in range(tq):
        p = tk - tq + i
        for j in range(tk):
            assert bool(mask[i, j]) == (p - window < j <= p), (i, j)


def test_sliding_window_wide_window_is_causal() -> None:
    """A window at least as long as the keys is the plain causal mask."""
    assert torch.equal(sliding_window_mask(3, 6, window=6), causal_mask(3, 6))


def test_sliding_window_rejects_zero_window() -> None:
    """``window < 1`` would mask everything and is a ValueError naming it."""
    with pytest.raises(ValueError, match="got 0"):
        sliding_window_mask(3, window=0)


def test_padding_mask_from_lengths() -> None:
    """Lengths ``(B,)`` give True on the first ``length`` positions, ``(B, T)``."""
    mask = padding_mask_from_lengths(torch.tensor([3, 1, 0, 4]))
    expected = torch.tensor(
        [
            [1, 1, 1, 0],
            [1, 0, 0, 0],
            [0, 0, 0, 0],
            [1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)
    padded = padding_mask_from_lengths(torch.tensor([2, 1]), max_length=5)
    assert padded.shape == (2, 5)
    assert padded.sum(dim=1).tolist() == [2, 1]


@pytest.mark.parametrize(
    ("lengths", "max_length", "match"),
    [
        (torch.tensor([[1, 2]]), None, r"\(1, 2\)"),
        (torch.tensor([2, -1]), None, r"-1"),
        (torch.tensor([2, 6]), 4, r"max_length 4 .* 6"),
    ],
    ids=["2-D", "negative", "too-short"],
)
def test_padding_mask_from_lengths_errors(lengths: torch.Tensor, max_length: int | None, match: str) -> None:
    """Bad lengths raise ValueError naming the offending shape or value."""
    with pytest.raises(ValueError, match=match):
        padding_mask_from_lengths(lengths, max_length)


def test_padding_mask_from_ids() -> None:
    """Ids equal to ``pad_id`` are False, all others True."""
    ids = torch.tensor([[5, 6, 0, 0], [0, 7, 8, 9]])
    mask = padding_mask_from_ids(ids, pad_id=0)
    assert torch.equal(mask, torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.bool))
    assert torch.equal(padding_mask_from_ids(ids, pad_id=9), ids != 9)


def test_padding_from_lengths_and_ids_agree() -> None:
    """Right-padded ids and their lengths give the same mask."""
    ids = torch.tensor([[4, 5, 6, 1, 1], [7, 1, 1, 1, 1]])
    from_ids = padding_mask_from_ids(ids, pad_id=1)
    from_lengths = padding_mask_from_lengths(torch.tensor([3, 1]), max_length=5)
    assert torch.equal(from_ids, from_lengths)


def test_key_padding_to_attention_broadcasts_over_heads_and_queries() -> None:
    """``(B, Tk)`` becomes ``(B, 1, 1, Tk)`` with every query of every head seeing the same keys."""
    key_mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    mask4 = key_padding_to_attention(key_mask)
    assert mask4.shape == (2, 1, 1, 3)
    full = mask4.expand(2, 4, 5, 3)
    for b in range(2):
        for h in range(4):
            for i in range(5):
                assert torch.equal(full[b, h, i], key_mask[b])


def test_key_padding_to_attention_rejects_wrong_rank() -> None:
    """A 3-D key mask is a ValueError naming its shape."""
    with pytest.raises(ValueError, match=r"\(2, 1, 3\)"):
        key_padding_to_attention(torch.ones(2, 1, 3, dtype=torch.bool))


def test_combine_masks_is_logical_and_with_broadcasting() -> None:
    """Combining a ``(B, 1, 1, Tk)`` padding mask and a ``(Tq, Tk)`` causal mask ANDs them."""
    padding = key_padding_to_attention(torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool))
    causal = causal_mask(3)
    combined = combine_masks(padding, None, causal)
    assert combined is not None and combined.shape == (2, 1, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                assert bool(combined[b, 0, i, j]) == (bool(padding[b, 0, 0, j]) and j <= i)


def test_combine_masks_ignores_none() -> None:
    """``None`` entries are skipped; all-``None`` gives ``None``; one mask is returned unchanged."""
    mask = causal_mask(3)
    assert combine_masks() is None
    assert combine_masks(None, None) is None
    only = combine_masks(None, mask)
    assert only is not None and torch.equal(only, mask)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((5,), (1, 1, 1, 5)),
        ((3, 5), (1, 1, 3, 5)),
        ((2, 1, 1, 5), (2, 1, 1, 5)),
        ((2, 4, 3, 5), (2, 4, 3, 5)),
        ((1, 3, 1), (1, 1, 3, 1)),
    ],
)
def test_validate_mask_returns_4d(shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """Valid bool masks come back 4-D with their values intact."""
    mask = torch.rand(shape) > 0.5
    mask4 = validate_mask(mask, batch=2, heads=4, query_length=3, key_length=5)
    assert mask4.shape == expected
    assert torch.equal(mask4.reshape(shape), mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8])
def test_validate_mask_rejects_non_bool_dtype(dtype: torch.dtype) -> None:
    """A float/int mask (e.g. an additive ``-inf`` mask) is a ValueError naming the dtype."""
    with pytest.raises(ValueError, match=str(dtype).replace(".", r"\.")):
        validate_mask(torch.zeros(3, 5, dtype=dtype), batch=2, heads=4, query_length=3, key_length=5)


@pytest.mark.parametrize(
    "shape",
    [(4,), (3, 4), (3, 3, 5), (2, 2, 3, 5), (1, 1, 1, 1, 5)],
    ids=["wrong-Tk", "wrong-Tk-2d", "wrong-B", "wrong-H", "5-D"],
)
def test_validate_mask_rejects_shape_that_does_not_broadcast(shape: tuple[int, ...]) -> None:
    """A mask that does not broadcast to ``(B, H, Tq, Tk)`` is a ValueError naming its shape."""
    mask = torch.ones(shape, dtype=torch.bool)
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        validate_mask(mask, batch=2, heads=4, query_length=3, key_length=5)
