"""Position schemes against their published formulas: sinusoidal, learned, RoPE and ALiBi."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.positions import ALiBi, LearnedPositions, RotaryEmbedding, SinusoidalPositions
from reference import alibi_slopes, reference_rotary

# --- sinusoidal -------------------------------------------------------------------------------------


def test_sinusoidal_matches_formula_in_float64() -> None:
    """``PE[p, 2i] = sin(p / 10000^(2i/D))`` and ``PE[p, 2i+1] = cos(p / 10000^(2i/D))``."""
    d_model, length = 16, 64
    encodings = SinusoidalPositions(d_model)(torch.arange(length))
    assert encodings.shape == (length, d_model)
    assert encodings.dtype == torch.float32
    expected = torch.empty(length, d_model, dtype=torch.float64)
    for p in range(length):
        for i in range(d_model // 2):
            angle = p / 10000.0 ** (2 * i / d_model)
            expected[p, 2 * i] = math.sin(angle)
            expected[p, 2 * i + 1] = math.cos(angle)
    torch.testing.assert_close(encodings.double(), expected, rtol=0, atol=2e-5)


def test_sinusoidal_batched_positions_and_base() -> None:
    """``(B, T)`` positions give ``(B, T, D)``; a custom ``base`` is honoured."""
    positions = torch.tensor([[0, 1, 2], [5, 6, 7]])
    encodings = SinusoidalPositions(4, base=100.0)(positions)
    assert encodings.shape == (2, 3, 4)
    p, i = 6, 1
    angle = p / 100.0 ** (2 * i / 4)
    assert encodings[1, 1, 2].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert encodings[1, 1, 3].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("d_model", [0, 7, -2])
def test_sinusoidal_rejects_bad_width(d_model: int) -> None:
    """An odd or non-positive width is a ValueError naming it."""
    with pytest.raises(ValueError, match=f"got {d_model}"):
        SinusoidalPositions(d_model)


# --- learned ----------------------------------------------------------------------------------------


def test_learned_positions_look_up_rows() -> None:
    """Position ``p`` returns row ``p`` of the embedding table."""
    torch.manual_seed(0)
    learned = LearnedPositions(10, 6)
    out = learned(torch.tensor([[0, 3, 9]]))
    assert out.shape == (1, 3, 6)
    torch.testing.assert_close(out[0], learned.embedding.weight[[0, 3, 9]])


def test_learned_positions_raise_beyond_max_length() -> None:
    """A position ``>= max_length`` is a ValueError naming the position and the limit."""
    learned = LearnedPositions(8, 4)
    with pytest.raises(ValueError, match=r"positions .*8 are outside the learned positions 0..7"):
        learned(torch.arange(9))
    with pytest.raises(ValueError, match="must be positive"):
        LearnedPositions(0, 4)


# --- rotary -----------------------------------------------------------------------------------------


def test_rotary_matches_float64_reference() -> None:
    """Rotate-half RoPE equals the per-pair rotation formula for ``(T,)`` and ``(B, T)`` positions."""
    torch.manual_seed(0)
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 5, 8)
    positions = torch.tensor([0, 1, 2, 7, 30])
    torch.testing.assert_close(rope(x, positions).double(), reference_rotary(x, positions), rtol=0, atol=1e-5)
    per_batch = torch.tensor([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])
    rotated = rope(x, per_batch)
    for b in range(2):
        torch.testing.assert_close(
            rotated[b].double(), reference_rotary(x[b], per_batch[b]), rtol=0, atol=1e-5
        )


def test_rotary_custom_base() -> None:
    """``base`` sets the frequencies ``base^(-2j/Dh)``."""
    torch.manual_seed(1)
    x = torch.randn(1, 1, 4, 6)
    positions = torch.arange(4)
    got = RotaryEmbedding(6, base=500.0)(x, positions)
    torch.testing.assert_close(got.double(), reference_rotary(x, positions, base=500.0), rtol=0, atol=1e-5)


@settings(deadline=None, max_examples=40)
@given(
    m=st.integers(0, 256),
    n=st.integers(0, 256),
    shift=st.integers(0, 256),
    seed=st.integers(0, 2**16),
)
def test_rotary_dot_product_depends_only_on_offset(m: int, n: int, shift: int, seed: int) -> None:
    """``<rot(q, m), rot(k, n)> == <rot(q, m + s), rot(k, n + s)> == <rot(q, m - n), k>``."""
    gen = torch.Generator().manual_seed(seed)
    rope = RotaryEmbedding(16)
    q, k = torch.randn(2, 1, 1, 1, 16, generator=gen)

    def dot(pos_q: int, pos_k: int) -> float:
        return float((rope(q, torch.tensor([pos_q])) * rope(k, torch.tensor([pos_k]))).sum())

    scale = float(q.norm() * k.norm())
    expected = float((reference_rotary(q, torch.tensor([m - n])) * k.double()).sum())
    assert dot(m, n) == pytest.approx(expected, abs=1e-4 * scale)
    assert dot(m + shift, n + shift) == pytest.approx(expected, abs=1e-4 * scale)


def test_rotary_preserves_norms() -> None:
    """Each ``(j, j + Dh/2)`` pair is rotated, so every head vector keeps its norm."""
    torch.manual_seed(2)
    rope = RotaryEmbedding(12)
    x = torch.randn(2, 3, 50, 12)
    rotated = rope(x, torch.arange(50) * 7)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)
    pair_norms = x[..., :6] ** 2 + x[..., 6:] ** 2
    torch.testing.assert_close(rotated[..., :6] ** 2 + rotated[..., 6:] ** 2, pair_norms, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(rotated[:, :, 1:], x[:, :, 1:]), "positions > 0 must actually rotate"


def test_rotary_position_zero_is_identity() -> None:
    """Position 0 leaves the vector unchanged."""
    torch.manual_seed(3)
    x = torch.randn(2, 2, 3, 8)
    torch.testing.assert_close(RotaryEmbedding(8)(x, torch.zeros(3, dtype=torch.long)), x, rtol=0, atol=0)


def test_rotary_keeps_dtype() -> None:
    """bf16 in, bf16 out (the rotation itself runs in float32)."""
    x = torch.randn(1, 1, 3, 8).bfloat16()
    assert RotaryEmbedding(8)(x, torch.arange(3)).dtype == torch.bfloat16


def test_rotary_float64_inputs_keep_float64_precision() -> None:
    """Float64 inputs are rotated in float64, matching the formula to 1e-12."""
    torch.manual_seed(4)
    x = torch.randn(1, 2, 6, 8, dtype=torch.float64)
    positions = torch.arange(6) * 50
    rotated = RotaryEmbedding(8)(x, positions)
    assert rotated.dtype == torch.float64
    torch.testing.assert_close(rotated, reference_rotary(x, positions), rtol=1e-12, atol=1e-12)


def test_rotary_errors() -> None:
    """Odd head width, and input of another width, are ValueErrors naming the width."""
    with pytest.raises(ValueError, match="got 7"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="head_dim 8, got width 6"):
        RotaryEmbedding(8)(torch.zeros(1, 1, 2, 6), torch.arange(2))


# --- ALiBi ------------------------------------------------------------------------------------------


def test_alibi_slopes_for_eight_heads() -> None:
    """8 heads: slopes ``2^-1, 2^-2, ..., 2^-8``."""
    assert ALiBi.head_slopes(8) == [2.0**-i for i in range(1, 9)]
    assert ALiBi(8).slopes.tolist() == [2.0**-i for i in range(1, 9)]


def test_alibi_slopes_for_six_heads_follow_paper() -> None:
    """6 heads: the 4-head slopes, then every other slope of the 8-head list (Press et al. code)."""
    expected = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    assert ALiBi.head_slopes(6) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("n_heads", [*range(1, 17), 24, 32])
def test_alibi_slopes_match_reference_code(n_heads: int) -> None:
    """Every head count matches the paper's ``get_slopes``."""
    assert ALiBi.head_slopes(n_heads) == pytest.approx(alibi_slopes(n_heads), rel=1e-12)


def test_alibi_bias_shape_and_values() -> None:
    """The bias is ``(1, H, Tq, Tk)`` with ``-slope_h * |i - j|`` at positions ``i``, ``j``."""
    alibi = ALiBi(4)
    query_positions, key_positions = torch.tensor([3, 4]), torch.arange(5)
    bias = alibi(query_positions, key_positions)
    assert bias.shape == (1, 4, 2, 5)
    assert bias.dtype == torch.float32
    slopes = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]
    for h, slope in enumerate(slopes):
        for a, i in enumerate(query_positions.tolist()):
            for j in key_positions.tolist():
                assert bias[0, h, a, j].item() == pytest.approx(-slope * abs(i - j), rel=1e-6)
    assert bool((bias <= 0).all())


def test_alibi_rejects_non_positive_heads() -> None:
    """``n_heads <= 0`` is a ValueError naming it."""
    with pytest.raises(ValueError, match="got 0"):
        ALiBi(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotary_table_lookup_equals_computed_angles_bit_for_bit(dtype: torch.dtype) -> None:
    """The shared CPU table gives the computed cos/sin exactly, as it grows, and past its cap."""
    rotary = RotaryEmbedding(16, base=500.0)
    # grows the table twice; a negative position; one past the table's cap
    cases = [torch.arange(7), torch.tensor([[0, 3, 9], [250, 251, 1030]]), torch.tensor([-3, 0, 2]),
             torch.arange(4095, 4100), torch.tensor([5]), torch.tensor([1 << 21])]
    for positions in cases:
        table = rotary.cos_sin(positions, dtype)
        computed = rotary._computed_cos_sin(positions, dtype)
        assert all(torch.equal(a, b) for a, b in zip(table, computed, strict=True))
        assert table[0].shape == (*positions.shape, 16) and table[0].dtype == dtype
