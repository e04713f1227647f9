"""``MultiHeadAttention`` against a float64 reference recomputed from its weights, and its caches.

Shape legend: ``B`` batch, ``Tq``/``Tk`` query/key length, ``D`` model width, ``H`` heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from torch import Tensor

from multihead.attention import MultiHeadAttention
from multihead.cache import KVCache
from multihead.masks import key_padding_to_attention, padding_mask_from_lengths
from multihead.positions import ALiBi, RotaryEmbedding
from reference import reference_mha

B, TQ, TK, D, H = 2, 5, 7, 16, 4
TOL = {"rtol": 1e-5, "atol": 1e-5}


@dataclass(frozen=True)
class Case:
    """One attention configuration: constructor options, forward options and how the reference sees it."""

    n_kv_heads: int | None = None
    d_context: int | None = None
    positions: str | None = None  # "rope" or "alibi"
    cross: bool = False
    is_causal: bool = False
    lengths: tuple[int, ...] | None = None  # key lengths -> padding mask
    extra: dict[str, object] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "self": Case(),
    "cross": Case(cross=True, d_context=12),
    "cross-padded": Case(cross=True, d_context=12, lengths=(7, 3)),
    "causal": Case(is_causal=True),
    "padded": Case(lengths=(5, 2)),
    "fully-padded-row": Case(lengths=(0, 4)),
    "causal-padded": Case(is_causal=True, lengths=(3, 5)),
    "gqa": Case(n_kv_heads=2),
    "gqa-causal-padded": Case(n_kv_heads=2, is_causal=True, lengths=(4, 5)),
    "mqa": Case(n_kv_heads=1),
    "mqa-cross": Case(n_kv_heads=1, cross=True, d_context=12),
    "rope": Case(positions="rope"),
    "rope-causal-gqa": Case(positions="rope", is_causal=True, n_kv_heads=2),
    "alibi": Case(positions="alibi"),
    "alibi-causal-padded": Case(positions="alibi", is_causal=True, lengths=(5, 3)),
}


def build(case: Case, *, seed: int = 0, dropout: float = 0.0) -> MultiHeadAttention:
    """A seeded module for ``case`` in eval mode."""
    torch.manual_seed(seed)
    positions: RotaryEmbedding | ALiBi | None = None
    if case.positions == "rope":
        positions = RotaryEmbedding(D // H)
    elif case.positions == "alibi":
        positions = ALiBi(H)
    module = MultiHeadAttention(
        D, H, n_kv_heads=case.n_kv_heads, d_context=case.d_context, dropout=dropout, positions=positions
    )
    return module.eval()


def inputs(case: Case, *, seed: int = 1) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``x (B, Tq, D)``, ``context (B, Tk, Dc)`` or None, and the bool mask or None."""
    gen = torch.Generator().manual_seed(seed)
    query_length = TQ if case.cross else TK
    x = torch.randn(B, query_length, D, generator=gen)
    context = torch.randn(B, TK, case.d_context or D, generator=gen) if case.cross else None
    mask = None
    if case.lengths is not None:
        mask = key_padding_to_attention(padding_mask_from_lengths(torch.tensor(case.lengths), max_length=TK))
    return x, context, mask


def reference(
    module: MultiHeadAttention, case: Case, x: Tensor, context: Tensor | None, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Float64 reference forward for ``case``."""
    return reference_mha(
        module,
        x,
        context,
        mask=mask,
        is_causal=case.is_causal,
        rotary=case.positions == "rope" and not case.cross,
        alibi=case.positions == "alibi" and not case.cross,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_matches_float64_reference(name: str) -> None:
    """Output (fused path) and output + weights (explicit path) equal the float64 reference."""
    case = CASES[name]
    module = build(case)
    x, context, mask = inputs(case)
    ref_out, ref_weights = reference(module, case, x, context, mask)
    with torch.no_grad():
        out, none = module(x, context, mask=mask, is_causal=case.is_causal)
        out_w, weights = module(x, context, mask=mask, is_causal=case.is_causal, need_weights=True)
    assert none is None
    assert out.shape == (B, x.shape[1], D)
    torch.testing.assert_close(out.double(), ref_out, **TOL)
    torch.testing.assert_close(out_w.double(), ref_out, **TOL)
    assert weights is not None
    assert weights.shape == (B, H, x.shape[1], TK)
    torch.testing.assert_close(weights.double(), ref_weights, **TOL)


def test_fully_padded_row_outputs_the_output_bias() -> None:
    """A batch row whose keys are all masked attends to nothing: its output is ``out_proj(0) = bias``."""
    case = CASES["fully-padded-row"]
    module = build(case)
    x, _, mask = inputs(case)
    with torch.no_grad():
        out, weights = module(x, mask=mask, need_weights=True)
    assert weights is not None and bool((weights[0] == 0).all())
    torch.testing.assert_close(out[0], module.out_proj.bias.expand(TK, D), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["self", "causal-padded", "gqa", "alibi", "cross"])
def test_outputs_equal_with_and_without_weights(name: str) -> None:
    """Asking for weights changes the kernel path, not the result; weights are ``(B, H, Tq, Tk)``."""
    case = CASES[name]
    module = build(case, seed=2)
    x, context, mask = inputs(case, seed=3)
    with torch.no_grad():
        fast, _ = module(x, context, mask=mask, is_causal=case.is_causal)
        slow, weights = module(x, context, mask=mask, is_causal=case.is_causal, need_weights=True)
    assert weights is not None and weights.shape == (B, H, x.shape[1], TK)
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-6)


def test_gradients_match_reference() -> None:
    """Input gradients of a causal padded GQA module equal those of the float64 reference (same weights)."""
    case = CASES["gqa-causal-padded"]
    module = build(case, seed=4)
    x, _, mask = inputs(case, seed=5)
    x32 = x.clone().requires_grad_()
    out, _ = module(x32, mask=mask, is_causal=True)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(6))
    (out * upstream).sum().backward()
    x64 = x.double().requires_grad_()
    ref_out, _ = reference(module, case, x64, None, mask)
    (ref_out * upstream.double()).sum().backward()
    assert x32.grad is not None and x64.grad is not None
    torch.testing.assert_close(x32.grad.double(), x64.grad, **TOL)


# --- cached incremental decoding ------------------------------------------------------------------------

DECODE_CASES_PLAIN = {
    "plain": Case(is_causal=True),
    "rope": Case(is_causal=True, positions="rope"),
    "alibi": Case(is_causal=True, positions="alibi"),
    "gqa": Case(is_causal=True, n_kv_heads=2),
    "mqa-rope": Case(is_causal=True, n_kv_heads=1, positions="rope"),
}


def decode_in_chunks(
    module: MultiHeadAttention, x: Tensor, sizes: list[int], mask: Tensor | None = None
) -> tuple[Tensor, KVCache]:
    """Feed ``x (B, T, D)`` through a fresh cache chunk by chunk with ``is_causal=True``; returns ``(B, T, D)``."""
    cache = module.make_cache(batch_size=x.shape[0], max_length=x.shape[1])
    outputs, start = [], 0
    for size in sizes:
        step_mask = None if mask is None else mask[..., : start + size]
        out, _ = module(x[:, start : start + size], mask=step_mask, is_causal=True, cache=cache)
        outputs.append(out)
        start += size
    assert start == x.shape[1] == cache.length
    return torch.cat(outputs, dim=1), cache


@pytest.mark.parametrize("name", list(DECODE_CASES_PLAIN))
@pytest.mark.parametrize("sizes", [[1] * 7, [3, 1, 2, 1], [7]], ids=["one-at-a-time", "chunks", "prefill-all"])
def test_cached_decoding_equals_full_causal_forward(name: str, sizes: list[int]) -> None:
    """Cached incremental decoding reproduces the full causal forward (which matches the reference)."""
    case = DECODE_CASES_PLAIN[name]
    module = build(case, seed=7)
    x, _, _ = inputs(case, seed=8)
    with torch.no_grad():
        full, _ = module(x, is_causal=True)
        cached, _ = decode_in_chunks(module, x, sizes)
    torch.testing.assert_close(cached, full, **TOL)
    ref_out, _ = reference(module, case, x, None, None)
    torch.testing.assert_close(cached.double(), ref_out, **TOL)


@pytest.mark.parametrize("name", ["alibi-causal-padded", "gqa-causal-padded"])
def test_cached_decoding_with_padding_mask(name: str) -> None:
    """With a key padding mask sliced to the keys seen so far, cached decoding equals the full forward."""
    case = CASES[name]
    module = build(case, seed=9)
    x, _, mask = inputs(case, seed=10)
    with torch.no_grad():
        full, _ = module(x, mask=mask, is_causal=True)
        cached, _ = decode_in_chunks(module, x, [2, 1, 3, 1], mask=mask)
    torch.testing.assert_close(cached, full, **TOL)


def test_cached_decoding_weights_cover_all_cached_keys() -> None:
    """One new query with a cache of ``t`` keys returns weights ``(B, H, 1, t)`` equal to the full forward's row."""
    case = CASES["rope-causal-gqa"]
    module = build(case, seed=11)
    x, _, _ = inputs(case, seed=12)
    with torch.no_grad():
        _, full_weights = module(x, is_causal=True, need_weights=True)
        cache = module.make_cache(batch_size=B, max_length=TK)
        module(x[:, :4], is_causal=True, cache=cache)
        _, step_weights = module(x[:, 4:5], is_causal=True, cache=cache, need_weights=True)
    assert full_weights is not None and step_weights is not None
    assert step_weights.shape == (B, H, 1, 5)
    torch.testing.assert_close(step_weights, full_weights[:, :, 4:5, :5], **TOL)


def test_cross_attention_cache_filled_once_and_reused() -> None:
    """The first call projects the context into the cache; later calls reuse it without projecting again."""
    case = CASES["cross"]
    module = build(case, seed=13)
    _, context, _ = inputs(case, seed=14)
    assert context is not None
    gen = torch.Generator().manual_seed(15)
    steps = [torch.randn(B, 1, D, generator=gen) for _ in range(3)]
    projections: list[int] = []
    module.k_proj.register_forward_hook(lambda *_: projections.append(1))
    cache = module.make_cache(batch_size=B, max_length=TK)
    with torch.no_grad():
        for step in steps:
            got, _ = module(step, context, cache=cache)
            expected, _ = module(step, context)
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
            ref_out, _ = reference_mha(module, step, context)
            torch.testing.assert_close(got.double(), ref_out, **TOL)
    assert cache.length == TK, "the cross cache is filled once, never appended to"
    assert len(projections) == 1 + len(steps), "only the first cached call projects the context"


@pytest.mark.parametrize(
    "index", [torch.tensor([1, 0]), torch.tensor([1, 1]), torch.tensor([1, 0, 1, 1])], ids=["swap", "dup", "grow"]
)
@pytest.mark.parametrize("name", ["plain", "rope", "alibi", "gqa"])
def test_reordered_cache_equals_running_on_reordered_inputs(name: str, index: Tensor) -> None:
    """Reordering a prefilled cache (beam search) equals decoding the reordered prefixes from scratch."""
    case = DECODE_CASES_PLAIN[name]
    module = build(case, seed=16)
    x, _, _ = inputs(case, seed=17)
    prefix, tail = x[:, :4], torch.randn(len(index), 2, D, generator=torch.Generator().manual_seed(18))
    cache = module.make_cache(batch_size=B, max_length=TK)
    with torch.no_grad():
        module(prefix, is_causal=True, cache=cache)
        cache.reorder(index)
        got = torch.cat([module(tail[:, t : t + 1], is_causal=True, cache=cache)[0] for t in range(2)], dim=1)
        expected, _ = module(torch.cat([prefix[index], tail], dim=1), is_causal=True)
    torch.testing.assert_close(got, expected[:, 4:], **TOL)


# --- dropout ------------------------------------------------------------------------------------------------


def test_dropout_only_in_training_mode() -> None:
    """With ``dropout > 0`` training forwards are random; eval forwards are deterministic and exact."""
    case = CASES["self"]
    module = build(case, seed=19, dropout=0.5)
    x, _, _ = inputs(case, seed=20)
    module.train()
    torch.manual_seed(21)
    with torch.no_grad():
        first, weights = module(x, need_weights=True)
        second, _ = module(x)
    assert not torch.allclose(first, second), "training-mode dropout must change the output"
    assert weights is not None
    assert bool((weights == 0).any()), "dropped weights are zeroed"
    assert float(weights.double().sum(dim=-1).sub(1).abs().max()) > 1e-3, "kept weights are rescaled by 1/(1-p)"
    module.eval()
    with torch.no_grad():
        eval_a, eval_w = module(x, need_weights=True)
        eval_b, _ = module(x)
    torch.testing.assert_close(eval_a, eval_b, rtol=1e-6, atol=1e-6)
    assert eval_w is not None
    ref_out, ref_weights = reference(module, case, x, None, None)
    torch.testing.assert_close(eval_a.double(), ref_out, **TOL)
    torch.testing.assert_close(eval_w.double(), ref_weights, **TOL)


def test_zero_dropout_training_equals_eval() -> None:
    """``dropout=0`` makes training mode identical to eval mode."""
    case = CASES["causal"]
    module = build(case, seed=22)
    x, _, _ = inputs(case, seed=23)
    train_out, _ = module.train()(x, is_causal=True)
    eval_out, _ = module.eval()(x, is_causal=True)
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)


# --- autocast -------------------------------------------------------------------------------------------------


def test_fully_masked_rows_finite_under_bf16_autocast() -> None:
    """Under CPU bf16 autocast a fully padded row gives finite outputs and finite gradients on both paths."""
    case = CASES["fully-padded-row"]
    module = build(case, seed=24)
    x, _, mask = inputs(case, seed=25)
    for need_weights in (False, True):
        module.zero_grad()
        leaf = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, weights = module(leaf, mask=mask, is_causal=True, need_weights=need_weights)
        out.float().sum().backward()
        assert torch.isfinite(out).all()
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
        if need_weights:
            assert weights is not None and bool((weights[0] == 0).all())


def test_weights_sum_to_one_under_bf16_autocast() -> None:
    """Softmax in float32 under autocast: returned weights sum to 1 to float32-ish accuracy (1e-5)."""
    case = CASES["padded"]
    module = build(case, seed=26)
    x, _, mask = inputs(case, seed=27)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        _, weights = module(x, mask=mask, need_weights=True)
    assert weights is not None
    sums = weights.double().sum(dim=-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-5)


# --- argument errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((10, 4), {}, r"d_model \(10\) must be divisible by n_heads \(4\)"),
        ((16, 4), {"n_kv_heads": 3}, r"n_heads \(4\) must be divisible by n_kv_heads \(3\)"),
        ((-16, 4), {}, r"-16"),
        ((16, -4), {}, r"-4"),
        ((16, 4), {"n_kv_heads": 0}, r"positive.*16, 4, 0, 16"),
        ((16, 4), {"d_context": -3}, r"-3"),
        ((16, 4), {"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ((16, 4), {"dropout": -0.1}, r"got -0.1"),
        ((16, 4), {"positions": RotaryEmbedding(8)}, r"rotary head_dim 8 != attention head_dim 4"),
        ((16, 4), {"positions": ALiBi(2)}, r"ALiBi built for 2 heads, attention has 4"),
        ((16, 4), {"positions": torch.nn.Identity()}, r"Identity"),
    ],
    ids=[
        "d_model%n_heads", "n_heads%n_kv_heads", "neg-d_model", "neg-n_heads", "zero-kv", "neg-d_context",
        "dropout-1", "dropout-neg", "rotary-dim", "alibi-heads", "positions-type",
    ],
)
def test_constructor_rejects_bad_arguments(args: tuple[int, int], kwargs: dict[str, object], match: str) -> None:
    """Each invalid constructor argument raises a ValueError naming the offending value."""
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "match"),
    [((5, D), r"\(5, 16\)"), ((B, 5, D + 1), r"\(2, 5, 17\)"), ((1, B, 5, D), r"\(1, 2, 5, 16\)")],
    ids=["2-D", "wrong-width", "4-D"],
)
def test_forward_rejects_wrong_x_shape(shape: tuple[int, ...], match: str) -> None:
    """``x`` must be ``(B, Tq, D)``; the error names the shape given."""
    module = build(Case())
    with pytest.raises(ValueError, match=match):
        module(torch.zeros(shape))


def test_forward_rejects_bad_masks() -> None:
    """A mask that does not broadcast to ``(B, H, Tq, Tk)``, or is not bool, is a ValueError naming it."""
    module = build(Case())
    x = torch.zeros(B, 5, D)
    with pytest.raises(ValueError, match=r"\(5, 6\)"):
        module(x, mask=torch.ones(5, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(3, 1, 1, 5\)"):
        module(x, mask=torch.ones(3, 1, 1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"torch\.float32"):
        module(x, mask=torch.zeros(5, 5))
    with pytest.raises(ValueError, match=r"torch\.int64"):
        module(x, mask=torch.ones(B, 1, 1, 5, dtype=torch.long))
