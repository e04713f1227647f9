"""Properties of attention that hold for every shape and mask (hypothesis, small shapes)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from multihead.attention import MultiHeadAttention
from multihead.functional import scaled_dot_product
from multihead.masks import key_padding_to_attention, padding_mask_from_lengths
from multihead.positions import ALiBi, RotaryEmbedding
from reference import reference_attention

SETTINGS = settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow])
TIGHT = {"rtol": 1e-6, "atol": 1e-6}


@st.composite
def attention_inputs(draw: st.DrawFn) -> dict[str, object]:
    """Random small ``q``, ``k``, ``v`` (grouped heads allowed), a random bool mask or None, and ``is_causal``."""
    batch = draw(st.integers(1, 3))
    kv_heads = draw(st.sampled_from([1, 2]))
    heads = kv_heads * draw(st.sampled_from([1, 2]))
    query_length = draw(st.integers(1, 6))
    key_length = draw(st.integers(query_length, 7))
    width = draw(st.sampled_from([2, 4, 8]))
    density = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    mask_shape = draw(
        st.sampled_from(
            [None, (batch, heads, query_length, key_length), (batch, 1, 1, key_length), (query_length, key_length)]
        )
    )
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.randn(batch, heads, query_length, width, generator=gen)
    k = torch.randn(batch, kv_heads, key_length, width, generator=gen)
    v = torch.randn(batch, kv_heads, key_length, width, generator=gen)
    mask = None if mask_shape is None else torch.rand(mask_shape, generator=gen) < density
    return {"q": q, "k": k, "v": v, "mask": mask, "is_causal": draw(st.booleans())}


def allowed_keys(case: dict[str, object]) -> Tensor:
    """The ``(B, H, Tq, Tk)`` bool of keys each query may attend (mask AND causal, bottom-right)."""
    q, k, mask = case["q"], case["k"], case["mask"]
    assert isinstance(q, Tensor) and isinstance(k, Tensor)
    batch, heads, query_length, _ = q.shape
    key_length = k.shape[2]
    allowed = torch.ones(batch, heads, query_length, key_length, dtype=torch.bool)
    if isinstance(mask, Tensor):
        allowed &= mask
    if case["is_causal"]:
        allowed &= torch.ones(query_length, key_length, dtype=torch.bool).tril(key_length - query_length)
    return allowed


@SETTINGS
@given(case=attention_inputs())
def test_weights_are_a_distribution_over_allowed_keys(case: dict[str, object]) -> None:
    """Weights >= 0; masked weights exactly 0; rows with an allowed key sum to 1; empty rows are all 0."""
    _, weights = scaled_dot_product(**case, need_weights=True)  # type: ignore[arg-type]
    assert weights is not None
    allowed = allowed_keys(case)
    assert bool((weights >= 0).all())
    assert bool((weights[~allowed] == 0).all()), "masked weights must be exactly 0"
    sums = weights.double().sum(dim=-1)
    has_key = allowed.any(dim=-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]), rtol=0, atol=1e-6)
    assert bool((sums[~has_key] == 0).all())


@SETTINGS
@given(case=attention_inputs())
def test_both_paths_match_reference_and_never_nan(case: dict[str, object]) -> None:
    """Fused and explicit outputs equal the float64 reference; fully masked rows are zero and gradients finite."""
    ref_out, _ = reference_attention(**case)  # type: ignore[arg-type]
    has_key = allowed_keys(case).any(dim=-1)  # (B, H, Tq)
    for need_weights in (False, True):
        leaves = {name: case[name].clone().requires_grad_() for name in ("q", "k", "v")}  # type: ignore[union-attr]
        options = {"mask": case["mask"], "is_causal": case["is_causal"], "need_weights": need_weights}
        out, _ = scaled_dot_product(**leaves, **options)  # type: ignore[arg-type]
        out.sum().backward()
        assert torch.isfinite(out).all()
        assert bool((out[~has_key] == 0).all())
        torch.testing.assert_close(out.detach().double(), ref_out, rtol=1e-5, atol=1e-5)
        for leaf in leaves.values():
            assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


@SETTINGS
@given(case=attention_inputs())
def test_masked_key_content_changes_nothing(case: dict[str, object]) -> None:
    """Replacing keys/values that no query may see (padding) leaves the output unchanged.

    Only key positions masked for every batch row, head and query are replaced, so every path is covered.
    """
    k, v = case["k"], case["v"]
    assert isinstance(k, Tensor) and isinstance(v, Tensor)
    hidden = ~allowed_keys(case).any(dim=(1, 2))  # (B, Tk): keys nobody in that example sees
    noise_k = torch.where(hidden[:, None, :, None], k * 1000 + 7, k)
    noise_v = torch.where(hidden[:, None, :, None], -v * 1000 - 7, v)
    for need_weights in (False, True):
        before, _ = scaled_dot_product(**case, need_weights=need_weights)  # type: ignore[arg-type]
        changed = {**case, "k": noise_k, "v": noise_v}
        after, _ = scaled_dot_product(**changed, need_weights=need_weights)  # type: ignore[arg-type]
        torch.testing.assert_close(after, before, **TIGHT)


def build_module(seed: int, *, positions: str | None, n_kv_heads: int | None = None) -> MultiHeadAttention:
    """A small ``MultiHeadAttention`` (D=8, H=2) with optional RoPE or ALiBi, in eval mode."""
    torch.manual_seed(seed)
    scheme: RotaryEmbedding | ALiBi | None = None
    if positions == "rope":
        scheme = RotaryEmbedding(4)
    elif positions == "alibi":
        scheme = ALiBi(2)
    return MultiHeadAttention(8, 2, n_kv_heads=n_kv_heads, positions=scheme).eval()


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    length=st.integers(2, 7),
    cut=st.integers(1, 6),
    positions=st.sampled_from([None, "rope", "alibi"]),
    n_kv_heads=st.sampled_from([None, 1]),
    need_weights=st.booleans(),
)
@torch.no_grad()
def test_causal_outputs_ignore_future_tokens(
    seed: int, length: int, cut: int, positions: str | None, n_kv_heads: int | None, need_weights: bool
) -> None:
    """Changing tokens at positions >= ``cut`` leaves causal outputs before ``cut`` unchanged."""
    cut = min(cut, length - 1)
    module = build_module(seed, positions=positions, n_kv_heads=n_kv_heads)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, length, 8, generator=gen)
    changed = x.clone()
    changed[:, cut:] = torch.randn(2, length - cut, 8, generator=gen) * 5
    before, _ = module(x, is_causal=True, need_weights=need_weights)
    after, _ = module(changed, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(after[:, :cut], before[:, :cut], **TIGHT)
    assert not torch.allclose(after[:, cut:], before[:, cut:]), "later outputs do see the change"


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    lengths=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    positions=st.sampled_from([None, "rope", "alibi"]),
    is_causal=st.booleans(),
    cross=st.booleans(),
)
@torch.no_grad()
def test_padded_content_changes_nothing(
    seed: int, lengths: list[int], positions: str | None, is_causal: bool, cross: bool
) -> None:
    """Changing padded tokens leaves every real position's output unchanged (self- and cross-attention)."""
    module = build_module(seed, positions=positions)
    gen = torch.Generator().manual_seed(seed + 2)
    batch, length = len(lengths), 6
    real = padding_mask_from_lengths(torch.tensor(lengths), max_length=length)  # (B, T)
    mask = key_padding_to_attention(real)
    x = torch.randn(batch, length, 8, generator=gen)
    context = torch.randn(batch, length, 8, generator=gen) if cross else None
    source = x if context is None else context
    noisy = torch.where(real[..., None], source, torch.randn(source.shape, generator=gen) * 10)
    before, _ = module(x, context, mask=mask, is_causal=is_causal)
    if cross:
        after, _ = module(x, noisy, mask=mask, is_causal=is_causal)
        torch.testing.assert_close(after, before, **TIGHT)
    else:
        after, _ = module(noisy, mask=mask, is_causal=is_causal)
        torch.testing.assert_close(after[real], before[real], **TIGHT)


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    batch=st.integers(2, 4),
    length=st.integers(1, 6),
    positions=st.sampled_from([None, "rope", "alibi"]),
    is_causal=st.booleans(),
    need_weights=st.booleans(),
)
@torch.no_grad()
def test_examples_in_a_batch_are_independent(
    seed: int, batch: int, length: int, positions: str | None, is_causal: bool, need_weights: bool
) -> None:
    """Each example's output (and weights) in a padded batch equals running it alone."""
    module = build_module(seed, positions=positions, n_kv_heads=1)
    gen = torch.Generator().manual_seed(seed + 3)
    x = torch.randn(batch, length, 8, generator=gen)
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    mask = key_padding_to_attention(padding_mask_from_lengths(lengths, max_length=length))
    together, weights = module(x, mask=mask, is_causal=is_causal, need_weights=need_weights)
    for b in range(batch):
        alone, alone_weights = module(
            x[b : b + 1], mask=mask[b : b + 1], is_causal=is_causal, need_weights=need_weights
        )
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-5, atol=1e-6)
        if need_weights:
            assert weights is not None and alone_weights is not None
            torch.testing.assert_close(weights[b : b + 1], alone_weights, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    kv_heads=st.sampled_from([1, 2, 4]),
    is_causal=st.booleans(),
    length=st.integers(1, 6),
)
@torch.no_grad()
def test_grouped_query_equals_plain_mha_with_repeated_projections(
    seed: int, kv_heads: int, is_causal: bool, length: int
) -> None:
    """GQA with ``Hkv`` heads equals plain MHA whose key/value projections repeat each group's head.

    With ``Hkv == H`` this is plain MHA with the same weights.
    """
    heads, width = 4, 3
    d_model = heads * width
    torch.manual_seed(seed)
    grouped = MultiHeadAttention(d_model, heads, n_kv_heads=kv_heads).eval()
    plain = MultiHeadAttention(d_model, heads).eval()
    state = grouped.state_dict()
    group = heads // kv_heads
    for name in ("k_proj", "v_proj"):
        weight = state[f"{name}.weight"].view(kv_heads, width, d_model)
        state[f"{name}.weight"] = weight.repeat_interleave(group, dim=0).reshape(d_model, d_model)
        state[f"{name}.bias"] = state[f"{name}.bias"].view(kv_heads, width).repeat_interleave(group, 0).reshape(-1)
    plain.load_state_dict(state)
    x = torch.randn(2, length, d_model, generator=torch.Generator().manual_seed(seed))
    got, got_weights = grouped(x, is_causal=is_causal, need_weights=True)
    want, want_weights = plain(x, is_causal=is_causal, need_weights=True)
    torch.testing.assert_close(got, want, **TIGHT)
    assert got_weights is not None and want_weights is not None
    torch.testing.assert_close(got_weights, want_weights, **TIGHT)


@SETTINGS
@given(
    seed=st.integers(0, 2**16),
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    positions=st.sampled_from([None, "rope", "alibi"]),
    n_kv_heads=st.sampled_from([None, 1]),
)
@torch.no_grad()
def test_cached_decoding_equals_full_forward(
    seed: int, sizes: list[int], positions: str | None, n_kv_heads: int | None
) -> None:
    """Feeding a sequence through a ``KVCache`` in any chunking equals the full causal forward."""
    module = build_module(seed, positions=positions, n_kv_heads=n_kv_heads)
    length = sum(sizes)
    x = torch.randn(2, length, 8, generator=torch.Generator().manual_seed(seed + 4))
    full, _ = module(x, is_causal=True)
    cache = module.make_cache(batch_size=2, max_length=length)
    start, pieces = 0, []
    for size in sizes:
        pieces.append(module(x[:, start : start + size], is_causal=True, cache=cache)[0])
        start += size
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("need_weights", [False, True])
def test_all_keys_masked_is_never_nan(need_weights: bool) -> None:
    """An all-False mask gives zero outputs and finite zero-ish gradients, never NaN."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 3, 4, requires_grad=True) for _ in range(3))
    mask = torch.zeros(2, 1, 1, 3, dtype=torch.bool)
    out, weights = scaled_dot_product(q, k, v, mask=mask, need_weights=need_weights)
    out.sum().backward()
    assert bool((out == 0).all())
    assert weights is None or bool((weights == 0).all())
    for leaf in (q, k, v):
        assert leaf.grad is not None and bool((leaf.grad == 0).all())
