"""Packing: position-wise work on real tokens only gives the padded computation's numbers at real tokens."""

from __future__ import annotations

import pytest
import torch

from multihead import EncoderLayer, MultiHeadAttention
from multihead.masks import key_padding_to_attention
from multihead.packing import Packing


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    return torch.randn(3, 5, 16), mask


def test_round_trip_and_no_packing_without_padding() -> None:
    x, mask = padded_batch()
    packing = Packing.from_mask(mask)
    assert packing is not None and packing.unpad(x).shape == (9, 16)
    torch.testing.assert_close(packing.pad(packing.unpad(x))[mask], x[mask], atol=0, rtol=0)
    assert (packing.pad(packing.unpad(x))[~mask] == 0).all()
    assert Packing.from_mask(torch.ones(2, 4, dtype=torch.bool)) is None


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_packed_attention_and_layer_equal_padded(n_kv_heads: int) -> None:
    x, mask = padded_batch()
    packing = Packing.from_mask(mask)
    assert packing is not None
    attention = MultiHeadAttention(16, 4, n_kv_heads=n_kv_heads).eval()
    expected = attention(x, mask=key_padding_to_attention(mask))[0]
    got = attention(packing.unpad(x), mask=key_padding_to_attention(mask), packing=packing)[0]
    torch.testing.assert_close(got, expected[mask], atol=1e-6, rtol=0)

    layer = EncoderLayer(16, 4, d_ff=32, norm_first=False).eval()
    expected = layer(x, mask=key_padding_to_attention(mask))
    got = layer(packing.unpad(x), mask=key_padding_to_attention(mask), packing=packing)
    torch.testing.assert_close(got, expected[mask], atol=1e-6, rtol=0)


def test_packed_input_of_the_wrong_shape_is_named() -> None:
    x, mask = padded_batch()
    packing = Packing.from_mask(mask)
    with pytest.raises(ValueError, match=r"packed x must be \(N, 16\) = \(9, 16\)"):
        MultiHeadAttention(16, 4)(x, packing=packing)
