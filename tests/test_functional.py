"""``scaled_dot_product``: the fused path, the explicit path and a float64 reference agree.

Shape legend: ``B`` batch, ``H`` query heads, ``Hkv`` key/value heads, ``Tq``/``Tk`` query/key length.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from multihead.functional import repeat_kv_heads, scaled_dot_product
from reference import reference_attention

B, H, TQ, TK, DH = 2, 4, 5, 7, 8
FP32_TOL = {"rtol": 1e-6, "atol": 1e-5}
FP64_TOL = {"rtol": 1e-12, "atol": 1e-12}


def make_qkv(
    *, heads: int = H, kv_heads: int | None = None, tq: int = TQ, tk: int = TK, dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Random ``q (B, H, Tq, Dh)``, ``k``/``v (B, Hkv, Tk, Dh)``."""
    gen = torch.Generator().manual_seed(seed)
    kv_heads = heads if kv_heads is None else kv_heads
    q = torch.randn(B, heads, tq, DH, generator=gen, dtype=dtype)
    k = torch.randn(B, kv_heads, tk, DH, generator=gen, dtype=dtype)
    v = torch.randn(B, kv_heads, tk, DH, generator=gen, dtype=dtype)
    return q, k, v


def random_mask(shape: tuple[int, ...], *, seed: int = 1) -> Tensor:
    """Bool mask of ``shape`` with every last-dim row holding at least one True."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=gen) > 0.4
    mask[..., 0] = True
    return mask


def alibi_like_bias(heads: int = H, tq: int = TQ, tk: int = TK) -> Tensor:
    """``(1, H, Tq, Tk)`` finite bias ``-slope_h * |i - j|``."""
    slopes = torch.tensor([2.0 ** -(h + 1) for h in range(heads)])
    distance = (torch.arange(tq)[:, None] - torch.arange(tk)[None, :]).abs().float()
    return -(slopes[:, None, None] * distance)[None]


def both_paths(q: Tensor, k: Tensor, v: Tensor, **kwargs: object) -> tuple[Tensor, Tensor, Tensor]:
    """Fused output, explicit output and explicit weights for the same call."""
    fused, none = scaled_dot_product(q, k, v, need_weights=False, **kwargs)
    assert none is None
    explicit, weights = scaled_dot_product(q, k, v, need_weights=True, **kwargs)
    assert weights is not None
    return fused, explicit, weights


MASK_SHAPES: dict[str, tuple[int, ...] | None] = {
    "none": None,
    "keys (Tk,)": (TK,),
    "rows (Tq, Tk)": (TQ, TK),
    "padding (B, 1, 1, Tk)": (B, 1, 1, TK),
    "full (B, H, Tq, Tk)": (B, H, TQ, TK),
}
MASK_CASES = [
    pytest.param(shape, need_weights, id=f"{name}-{'explicit' if need_weights else 'fused'}")
    for name, shape in MASK_SHAPES.items()
    for need_weights in (False, True)
]


@pytest.mark.parametrize(("shape", "need_weights"), MASK_CASES)
def test_paths_match_reference_for_mask_shapes(shape: tuple[int, ...] | None, need_weights: bool) -> None:
    """Each path agrees with the float64 reference in fp32 for every mask shape broadcastable to the scores."""
    q, k, v = make_qkv()
    mask = None if shape is None else random_mask(shape)
    out, weights = scaled_dot_product(q, k, v, mask=mask, need_weights=need_weights)
    ref_out, ref_weights = reference_attention(q, k, v, mask=mask)
    torch.testing.assert_close(out.double(), ref_out, **FP32_TOL)
    if not need_weights:
        assert weights is None
        return
    assert weights is not None and weights.shape == (B, H, TQ, TK)
    torch.testing.assert_close(weights.double(), ref_weights, **FP32_TOL)
    if mask is not None:
        assert bool((weights[~mask.expand(B, H, TQ, TK)] == 0).all()), "masked weights must be exactly 0"


def test_fused_path_accepts_1d_bias() -> None:
    """A ``(Tk,)`` float bias broadcasts to the scores on the fused path too."""
    q, k, v = make_qkv()
    bias = torch.linspace(-1.0, 0.0, TK)
    out, _ = scaled_dot_product(q, k, v, bias=bias)
    ref_out, _ = reference_attention(q, k, v, bias=bias)
    torch.testing.assert_close(out.double(), ref_out, **FP32_TOL)


@pytest.mark.parametrize(("tq", "tk"), [(6, 6), (3, 7), (1, 5)], ids=["Tq==Tk", "Tq<Tk", "one-query"])
def test_causal_matches_reference_bottom_right(tq: int, tk: int) -> None:
    """``is_causal`` is bottom-right aligned: query ``i`` sees keys ``0..Tk-Tq+i``, on both paths."""
    q, k, v = make_qkv(tq=tq, tk=tk)
    fused, explicit, weights = both_paths(q, k, v, is_causal=True)
    ref_out, ref_weights = reference_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(fused.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(explicit.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(weights.double(), ref_weights, **FP32_TOL)
    for i in range(tq):
        last = tk - tq + i
        assert bool((weights[..., i, last + 1 :] == 0).all())
        assert bool((weights[..., i, : last + 1] > 0).all())


def test_causal_combined_with_mask_and_bias() -> None:
    """A padding mask, a float bias and ``is_causal`` together still match the reference."""
    q, k, v = make_qkv(tq=4, tk=6)
    mask = random_mask((B, 1, 1, 6), seed=3)
    bias = alibi_like_bias(tq=4, tk=6)
    fused, explicit, weights = both_paths(q, k, v, mask=mask, bias=bias, is_causal=True)
    ref_out, ref_weights = reference_attention(q, k, v, mask=mask, bias=bias, is_causal=True)
    torch.testing.assert_close(fused.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(explicit.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(weights.double(), ref_weights, **FP32_TOL)


@pytest.mark.parametrize("with_mask", [False, True], ids=["bias-only", "bias+mask"])
def test_alibi_like_bias_matches_reference(with_mask: bool) -> None:
    """A finite float bias is added to the scores before softmax, with or without a bool mask."""
    q, k, v = make_qkv()
    bias = alibi_like_bias()
    mask = random_mask((TQ, TK), seed=4) if with_mask else None
    fused, explicit, weights = both_paths(q, k, v, bias=bias, mask=mask)
    ref_out, ref_weights = reference_attention(q, k, v, bias=bias, mask=mask)
    torch.testing.assert_close(fused.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(explicit.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(weights.double(), ref_weights, **FP32_TOL)


def test_scale_argument_is_used() -> None:
    """An explicit ``scale`` replaces ``1/sqrt(Dh)`` on both paths."""
    q, k, v = make_qkv()
    fused, explicit, weights = both_paths(q, k, v, scale=0.9)
    ref_out, ref_weights = reference_attention(q, k, v, scale=0.9)
    torch.testing.assert_close(fused.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(explicit.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(weights.double(), ref_weights, **FP32_TOL)


@pytest.mark.parametrize("kv_heads", [1, 2], ids=["MQA", "GQA"])
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_grouped_query_equals_reference_with_repeated_heads(kv_heads: int, is_causal: bool) -> None:
    """With ``Hkv < H`` query head ``h`` reads key head ``h // (H // Hkv)`` (heads repeated in blocks)."""
    q, k, v = make_qkv(kv_heads=kv_heads, tk=TQ)
    group = H // kv_heads
    k_full, v_full = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    fused, explicit, weights = both_paths(q, k, v, is_causal=is_causal)
    ref_out, ref_weights = reference_attention(q, k_full, v_full, is_causal=is_causal)
    torch.testing.assert_close(fused.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(explicit.double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(weights.double(), ref_weights, **FP32_TOL)
    torch.testing.assert_close(repeat_kv_heads(k, H), k_full, rtol=0, atol=0)


def test_heads_not_multiple_of_kv_heads_raise() -> None:
    """``H % Hkv != 0`` is rejected with a ValueError naming both counts."""
    q, _, _ = make_qkv(heads=4)
    _, k, v = make_qkv(heads=3)
    with pytest.raises(ValueError, match=r"\(4\).*\(3\)"):
        scaled_dot_product(q, k, v)


def test_causal_with_more_queries_than_keys_raises() -> None:
    """``is_causal`` with ``Tq > Tk`` has no bottom-right alignment and is rejected."""
    q, k, v = make_qkv(tq=5, tk=3)
    with pytest.raises(ValueError, match="5 > 3"):
        scaled_dot_product(q, k, v, is_causal=True, mask=torch.ones(5, 3, dtype=torch.bool))


@pytest.mark.parametrize(
    "case",
    ["plain", "mask", "causal", "causal-rect", "bias+mask", "gqa"],
)
def test_float64_inputs_match_reference_exactly(case: str) -> None:
    """Float64 inputs stay in float64 on both paths: agreement with the reference to 1e-12."""
    kv_heads = 2 if case == "gqa" else None
    tq = 3 if case == "causal-rect" else TQ
    q, k, v = make_qkv(dtype=torch.float64, kv_heads=kv_heads, tq=tq, tk=TQ if case == "causal" else TK)
    kwargs: dict[str, object] = {}
    if case in ("mask", "bias+mask"):
        kwargs["mask"] = random_mask((B, 1, tq, TK))
    if case == "bias+mask":
        kwargs["bias"] = alibi_like_bias().double()
    if case.startswith("causal"):
        kwargs["is_causal"] = True
    fused, explicit, weights = both_paths(q, k, v, **kwargs)
    assert fused.dtype == explicit.dtype == weights.dtype == torch.float64
    ref_out, ref_weights = reference_attention(q, k, v, **kwargs)  # type: ignore[arg-type]
    torch.testing.assert_close(fused, ref_out, **FP64_TOL)
    torch.testing.assert_close(explicit, ref_out, **FP64_TOL)
    torch.testing.assert_close(weights, ref_weights, **FP64_TOL)


GRAD_CASES: dict[str, Callable[[], dict[str, object]]] = {
    "plain": dict,
    "mask": lambda: {"mask": random_mask((B, 1, TQ, TK), seed=5)},
    "causal": lambda: {"is_causal": True},
    "bias+mask": lambda: {"bias": alibi_like_bias(), "mask": random_mask((TK,), seed=6)},
}


@pytest.mark.parametrize("need_weights", [False, True], ids=["fused", "explicit"])
@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_gradients_match_float64_reference(case: str, need_weights: bool) -> None:
    """d(loss)/d(q, k, v) in fp32 on each path equals the float64 reference gradients (GQA included)."""
    q, k, v = make_qkv(kv_heads=2, seed=7)
    kwargs = GRAD_CASES[case]()
    upstream = torch.randn(B, H, TQ, DH, generator=torch.Generator().manual_seed(8), dtype=torch.float64)

    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, _ = scaled_dot_product(*leaves, need_weights=need_weights, **kwargs)  # type: ignore[arg-type]
    (out.double() * upstream).sum().backward()

    ref_leaves = [t.double().requires_grad_() for t in (q, k, v)]
    ref_out, _ = reference_attention(*ref_leaves, **kwargs)  # type: ignore[arg-type]
    (ref_out * upstream).sum().backward()
    for got, want in zip(leaves, ref_leaves, strict=True):
        assert got.grad is not None and want.grad is not None
        torch.testing.assert_close(got.grad.double(), want.grad, rtol=1e-5, atol=1e-5)


def test_weight_gradients_match_float64_reference() -> None:
    """Gradients flowing through the returned weights (explicit path) match the reference."""
    q, k, v = make_qkv(seed=9)
    mask = random_mask((TQ, TK), seed=10)
    upstream = torch.randn(B, H, TQ, TK, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    _, weights = scaled_dot_product(*leaves, mask=mask, need_weights=True)
    assert weights is not None
    (weights.double() * upstream).sum().backward()
    ref_leaves = [t.double().requires_grad_() for t in (q, k, v)]
    _, ref_weights = reference_attention(*ref_leaves, mask=mask)
    (ref_weights * upstream).sum().backward()
    for got, want in zip(leaves[:2], ref_leaves[:2], strict=True):
        assert got.grad is not None and want.grad is not None
        torch.testing.assert_close(got.grad.double(), want.grad, rtol=1e-5, atol=1e-5)


def fully_masked_mask() -> Tensor:
    """``(B, 1, Tq, Tk)`` mask where query row 1 of batch 0 and every row of batch 1 query 3 see nothing."""
    mask = random_mask((B, 1, TQ, TK), seed=12)
    mask[0, :, 1] = False
    mask[1, :, 3] = False
    return mask


@pytest.mark.parametrize("need_weights", [False, True], ids=["fused", "explicit"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["mask", "mask+bias"])
def test_fully_masked_rows_are_zero_and_finite(need_weights: bool, with_bias: bool) -> None:
    """A query with no allowed key gives zero output, zero weights and finite, zero gradients."""
    q, k, v = make_qkv(seed=13)
    mask = fully_masked_mask()
    bias = alibi_like_bias() if with_bias else None
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, weights = scaled_dot_product(*leaves, mask=mask, bias=bias, need_weights=need_weights)
    assert torch.isfinite(out).all()
    assert bool((out[0, :, 1] == 0).all()) and bool((out[1, :, 3] == 0).all())
    if need_weights:
        assert weights is not None and torch.isfinite(weights).all()
        assert bool((weights[0, :, 1] == 0).all()) and bool((weights[1, :, 3] == 0).all())
    out.sum().backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert leaves[0].grad is not None
    assert bool((leaves[0].grad[0, :, 1] == 0).all()), "a fully masked query gets no gradient"
    ref_out, _ = reference_attention(q, k, v, mask=mask, bias=bias)
    torch.testing.assert_close(out.detach().double(), ref_out, **FP32_TOL)


@pytest.mark.parametrize("need_weights", [False, True], ids=["fused", "explicit"])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16], ids=["fp32-in", "bf16-in"])
def test_fully_masked_rows_finite_under_bf16_autocast(need_weights: bool, input_dtype: torch.dtype) -> None:
    """Under CPU bf16 autocast fully masked rows stay zero and nothing is NaN, forward or backward."""
    q, k, v = make_qkv(seed=14, dtype=input_dtype)
    mask = fully_masked_mask()
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, weights = scaled_dot_product(*leaves, mask=mask, bias=alibi_like_bias(), need_weights=need_weights)
        loss = out.float().sum()
    loss.backward()
    assert torch.isfinite(out).all()
    assert bool((out[0, :, 1] == 0).all()) and bool((out[1, :, 3] == 0).all())
    if need_weights:
        assert weights is not None and torch.isfinite(weights).all()
        assert bool((weights[0, :, 1] == 0).all())
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    ref_out, _ = reference_attention(q, k, v, mask=mask, bias=alibi_like_bias())
    torch.testing.assert_close(out.detach().double(), ref_out, rtol=0.05, atol=0.05)


def test_softmax_in_float32_under_bf16_autocast() -> None:
    """Under bf16 autocast, weights of fp32 inputs are float32 and each row sums to 1 to ~1e-6."""
    q, k, v = make_qkv(seed=15, tk=64)
    mask = random_mask((B, 1, TQ, 64), seed=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, weights = scaled_dot_product(q, k, v, mask=mask, need_weights=True)
    assert weights is not None
    assert weights.dtype == torch.float32
    sums = weights.double().sum(dim=-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-6)
    assert bool((weights[~mask.expand_as(weights)] == 0).all())


def test_bf16_inputs_return_float32_accurate_weights() -> None:
    """bf16 q/k/v under autocast still give rows summing to 1 to float32-ish accuracy (1e-5).

    The softmax is in float32; if the returned weights are rounded to bf16 afterwards, rows only sum
    to 1 within ~1e-2 and this test fails.
    """
    q, k, v = make_qkv(seed=17, tk=64, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, weights = scaled_dot_product(q, k, v, need_weights=True)
    assert weights is not None
    sums = weights.double().sum(dim=-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-5)
