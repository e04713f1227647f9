"""NaN (or infinity) at masked padding positions never reaches a real token's output: on the fused and explicit
attention paths, through caches and single-query decoding steps, in cross-attention and in pooling."""

from __future__ import annotations

import pytest
import torch

from multihead.attention import MultiHeadAttention
from multihead.models.heads import pool

torch.manual_seed(0)


def _inputs(poison: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (2, 5, 16) whose first row is left-padded by two positions holding ``poison``; its key mask (2, 5)."""
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    x[0, :2] = poison
    real = torch.tensor([[False, False, True, True, True], [True] * 5])
    return x, real


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_padded_keys_holding_nan_change_nothing(need_weights: bool, kv_heads: int, poison: float) -> None:
    attention = MultiHeadAttention(16, 4, n_kv_heads=kv_heads).eval()
    clean, real = _inputs(0.0)
    dirty, _ = _inputs(poison)
    mask = real[:, None, None, :]  # (B, 1, 1, Tk)
    with torch.no_grad():
        expected, expected_weights = attention(clean, mask=mask, need_weights=need_weights)
        got, weights = attention(dirty, mask=mask, need_weights=need_weights)
        causal, _ = attention(dirty, mask=mask, is_causal=True)
        causal_expected, _ = attention(clean, mask=mask, is_causal=True)
    torch.testing.assert_close(got[real], expected[real])
    torch.testing.assert_close(causal[real], causal_expected[real])
    if need_weights:
        torch.testing.assert_close(weights[0, :, 2:], expected_weights[0, :, 2:])


def test_a_cache_never_serves_nan_padding_to_later_steps() -> None:
    attention = MultiHeadAttention(16, 4, n_kv_heads=2).eval()
    outputs = []
    for poison in (0.0, float("nan")):
        x, real = _inputs(poison)
        cache = attention.make_cache(batch_size=2, max_length=8)
        with torch.no_grad():
            first, _ = attention(x[:, :3], mask=real[:, None, None, :3], is_causal=True, cache=cache)
            steps = [first[:, 2:]]
            for position in range(3, 5):  # one query a step, attending the cached prompt
                step_mask = real[:, None, None, :position + 1]
                out, _ = attention(x[:, position:position + 1], mask=step_mask, is_causal=True, cache=cache)
                steps.append(out)
        outputs.append(torch.cat(steps, dim=1))
    assert torch.isfinite(outputs[1]).all()
    torch.testing.assert_close(outputs[1], outputs[0])


@pytest.mark.parametrize("cached", [False, True])
def test_cross_attention_with_one_query_ignores_nan_in_padded_memory(cached: bool) -> None:
    attention = MultiHeadAttention(16, 4).eval()
    query = torch.randn(2, 1, 16)
    results = []
    for poison in (0.0, float("nan")):
        memory, real = _inputs(poison)
        cache = attention.make_cache(batch_size=2, max_length=5) if cached else None
        with torch.no_grad():
            out, _ = attention(query, memory, mask=real[:, None, None, :], cache=cache)
            if cached:  # the second step reads the memory's keys from the cache
                out, _ = attention(query, memory, mask=real[:, None, None, :], cache=cache)
        results.append(out)
    torch.testing.assert_close(results[1], results[0])


@pytest.mark.parametrize("how", ["mean", "max"])
def test_pooling_ignores_nan_padding(how: str) -> None:
    hidden, real = _inputs(float("nan"))
    clean, _ = _inputs(0.0)
    torch.testing.assert_close(pool(hidden, real, how), pool(clean, real, how))  # type: ignore[arg-type]
