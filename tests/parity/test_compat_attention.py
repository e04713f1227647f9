"""Parity of ``multihead.compat.MultiheadAttention`` with ``torch.nn.MultiheadAttention``.

Weights are copied with ``load_state_dict(strict=True)`` in both directions; outputs, attention
weights and gradients (of inputs and of every parameter) must agree to 1e-5 absolute in float32.
Shapes: ``B`` batch, ``L`` query length, ``S`` key length, ``E`` embed width, ``H`` heads.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from multihead import compat
from weights import randomize_parameters

E, H, B, L, S = 16, 4, 2, 5, 7
KDIM, VDIM = 8, 12
ATOL = 1e-5
NEG_INF = float("-inf")

Call = Callable[[nn.Module, list[Tensor]], tuple[Tensor, Tensor | None]]


def _pair(direction: str, **kwargs: object) -> tuple[nn.Module, nn.Module]:
    """A torch module and ours with the same weights, copied in the given direction."""
    reference, ours = nn.MultiheadAttention(**kwargs), compat.MultiheadAttention(**kwargs)
    source, target = (reference, ours) if direction == "torch_to_ours" else (ours, reference)
    randomize_parameters(source)
    target.load_state_dict(source.state_dict(), strict=True)
    return reference, ours


def _run(module: nn.Module, inputs: list[Tensor], call: Call) -> tuple[list[Tensor | None], list[Tensor | None]]:
    """Forward, then backward of a fixed random projection of every output; outputs and gradients."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    module.zero_grad(set_to_none=True)
    out, weights = call(module, leaves)
    generator = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=generator)).sum()
    if weights is not None:
        loss = loss + (weights * torch.randn(weights.shape, generator=generator)).sum()
    loss.backward()
    grads = [leaf.grad for leaf in leaves] + [p.grad for _, p in sorted(module.named_parameters())]
    return [out.detach(), None if weights is None else weights.detach()], grads


def _assert_parity(reference: nn.Module, ours: nn.Module, inputs: list[Tensor], call: Call) -> None:
    ref_outs, ref_grads = _run(reference, inputs, call)
    our_outs, our_grads = _run(ours, inputs, call)
    for ref, got in zip(ref_outs + ref_grads, our_outs + our_grads, strict=True):
        if ref is None or got is None:
            assert ref is None and got is None
            continue
        torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)


def _masks(case: str, batch: int, query_length: int, key_length: int) -> dict[str, Tensor]:
    """Torch-convention masks (True / -inf = ignore); every query row keeps at least key 0."""
    generator = torch.Generator().manual_seed(3)
    causal = torch.ones(query_length, key_length, dtype=torch.bool).triu(1)  # (L, S)
    padded = torch.zeros(batch, key_length, dtype=torch.bool)  # (B, S)
    padded[-1, key_length - 2:] = True
    per_head = torch.rand(batch * H, query_length, key_length, generator=generator) < 0.4  # (B*H, L, S)
    per_head[..., 0] = False
    finite = torch.randn(query_length, key_length, generator=generator)
    kpm_float = torch.randn(batch, key_length, generator=generator).masked_fill(padded, NEG_INF)
    return {
        "none": {},
        "causal_bool": {"attn_mask": causal},
        "causal_float": {"attn_mask": torch.zeros(query_length, key_length).masked_fill(causal, NEG_INF)},
        "causal_hint": {"attn_mask": causal, "is_causal": True},
        "additive_float": {"attn_mask": finite},
        "kpm_bool": {"key_padding_mask": padded},
        "kpm_float": {"key_padding_mask": kpm_float},
        "mask3d_bool": {"attn_mask": per_head},
        "mask3d_float": {"attn_mask": torch.randn(per_head.shape, generator=generator).masked_fill(per_head, NEG_INF)},
        "causal_and_kpm": {"attn_mask": causal, "key_padding_mask": padded},
    }[case]


MASK_CASES = [
    "none", "causal_bool", "causal_float", "causal_hint", "additive_float",
    "kpm_bool", "kpm_float", "mask3d_bool", "mask3d_float", "causal_and_kpm",
]
WEIGHTS = {"no_weights": (False, True), "averaged": (True, True), "per_head": (True, False)}
DIRECTIONS = ["torch_to_ours", "ours_to_torch"]


def _inputs(kind: str, batch_first: bool) -> tuple[dict[str, object], list[Tensor]]:
    """Constructor kwargs and input tensors for self-attention, cross-attention (other widths) or enc-dec."""
    generator = torch.Generator().manual_seed(1)

    def seq(length: int, width: int) -> Tensor:
        shape = (B, length, width) if batch_first else (length, B, width)
        return torch.randn(shape, generator=generator)

    if kind == "self":
        return {}, [seq(L, E)]
    if kind == "cross":
        return {"kdim": KDIM, "vdim": VDIM}, [seq(L, E), seq(S, KDIM), seq(S, VDIM)]
    return {}, [seq(L, E), seq(S, E)]  # "encdec": key is value, same widths


def _call(kind: str, masks: dict[str, Tensor], need_weights: bool, average: bool) -> Call:
    def call(module: nn.Module, xs: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        if kind == "self":
            query = key = value = xs[0]
        elif kind == "encdec":
            (query, key), value = xs, xs[1]
        else:
            query, key, value = xs
        return module(query, key, value, need_weights=need_weights, average_attn_weights=average, **masks)

    return call


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("case", MASK_CASES)
@pytest.mark.parametrize("kind", ["self", "cross", "encdec"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_matches_torch(batch_first: bool, kind: str, case: str, weights: str, direction: str) -> None:
    kwargs, inputs = _inputs(kind, batch_first)
    key_length = L if kind == "self" else S
    reference, ours = _pair(direction, embed_dim=E, num_heads=H, batch_first=batch_first, **kwargs)
    call = _call(kind, _masks(case, B, L, key_length), *WEIGHTS[weights])
    _assert_parity(reference, ours, inputs, call)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("case", ["none", "causal_float", "kpm_bool", "mask3d_bool"])
@pytest.mark.parametrize(
    "options",
    [{"add_bias_kv": True}, {"add_zero_attn": True}, {"add_bias_kv": True, "add_zero_attn": True}, {"bias": False}],
    ids=["bias_kv", "zero_attn", "bias_kv+zero_attn", "no_bias"],
)
def test_extra_keys_and_options(options: dict[str, bool], case: str, need_weights: bool, direction: str) -> None:
    kwargs, inputs = _inputs("cross", batch_first=False)
    reference, ours = _pair(direction, embed_dim=E, num_heads=H, **kwargs, **options)
    _assert_parity(reference, ours, inputs, _call("cross", _masks(case, B, L, S), need_weights, False))


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("case", ["none", "causal_bool", "kpm_float", "mask3d_bool"])
@pytest.mark.parametrize("kind", ["self", "cross"])
def test_unbatched(kind: str, case: str, need_weights: bool) -> None:
    kwargs, inputs = _inputs(kind, batch_first=True)
    inputs = [x[0] for x in inputs]  # (T, width): unbatched
    key_length = L if kind == "self" else S
    masks = _masks(case, 1, L, key_length)
    masks = {name: mask[0] if name == "key_padding_mask" else mask for name, mask in masks.items()}  # (S,)
    reference, ours = _pair("torch_to_ours", embed_dim=E, num_heads=H, **kwargs)
    _assert_parity(reference, ours, inputs, _call(kind, masks, need_weights, False))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("case", ["none", "causal_bool", "kpm_bool", "causal_and_kpm"])
def test_eval_mode(batch_first: bool, case: str) -> None:
    reference, ours = _pair("torch_to_ours", embed_dim=E, num_heads=H, dropout=0.2, batch_first=batch_first)
    reference.eval(), ours.eval()
    _, inputs = _inputs("self", batch_first)
    _assert_parity(reference, ours, inputs, _call("self", _masks(case, B, L, L), True, True))


@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("case", ["none", "causal_bool", "kpm_bool", "causal_and_kpm"])
def test_torch_native_fast_path(case: str, weights: str) -> None:
    """eval + no_grad + batch_first self-attention sends torch to ``_native_multi_head_attention``."""
    reference, ours = _pair("torch_to_ours", embed_dim=E, num_heads=H, batch_first=True)
    reference.eval(), ours.eval()
    _, (x,) = _inputs("self", batch_first=True)
    call = _call("self", _masks(case, B, L, L), *WEIGHTS[weights])
    with torch.no_grad():
        ref_out, ref_weights = call(reference, [x])
        out, got_weights = call(ours, [x])
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    if ref_weights is None:
        assert got_weights is None
    else:
        torch.testing.assert_close(got_weights, ref_weights, atol=ATOL, rtol=0)


@pytest.mark.parametrize("need_weights", [True, False])
def test_training_dropout_matches_torch_rng(need_weights: bool) -> None:
    """In training mode dropout hits the attention weights; on CPU even the random draws line up."""
    reference, ours = _pair("torch_to_ours", embed_dim=E, num_heads=H, dropout=0.3, batch_first=True)
    _, (x,) = _inputs("self", batch_first=True)
    results = []
    for module in (reference, ours):
        torch.manual_seed(11)
        results.append(module(x, x, x, need_weights=need_weights, average_attn_weights=False))
    torch.testing.assert_close(results[1][0], results[0][0], atol=ATOL, rtol=0)
    if need_weights:
        torch.testing.assert_close(results[1][1], results[0][1], atol=ATOL, rtol=0)
        assert (results[1][1] == 0).any()  # some weights dropped
    ours.eval()
    assert not torch.allclose(ours(x, x, x)[0], results[1][0])


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("options", [{}, {"add_bias_kv": True}], ids=["plain", "bias_kv"])
@pytest.mark.parametrize("length", [L, S], ids=["square", "rectangular"])
def test_is_causal_without_mask_builds_it(length: int, options: dict[str, bool], need_weights: bool) -> None:
    """torch raises without ``attn_mask``; ours equals torch given the (top-left) causal mask."""
    reference, ours = _pair("torch_to_ours", embed_dim=E, num_heads=H, **options)
    _, (query, memory) = _inputs("encdec", batch_first=False)
    memory = memory[:length]
    causal = torch.ones(L, length, dtype=torch.bool).triu(1)  # (L, S)
    with pytest.raises(RuntimeError):
        reference(query, memory, memory, is_causal=True)
    expected = reference(query, memory, memory, attn_mask=causal, need_weights=need_weights)
    got = ours(query, memory, memory, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(got[0], expected[0], atol=ATOL, rtol=0)
    if need_weights:
        torch.testing.assert_close(got[1], expected[1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("dtype", ["bool", "float"])
def test_fully_masked_rows_give_zeros_not_nan(dtype: str, need_weights: bool) -> None:
    reference, ours = _pair("torch_to_ours", embed_dim=E, num_heads=H, batch_first=True)
    _, (x,) = _inputs("self", batch_first=True)
    blocked = torch.zeros(L, L, dtype=torch.bool)  # (L, L)
    blocked[2] = True  # query 2 may attend nothing, in every batch element
    padded = torch.zeros(B, L, dtype=torch.bool)  # (B, L)
    padded[1] = True  # batch element 1 has no key at all
    if dtype == "float":
        blocked = torch.zeros(L, L).masked_fill(blocked, NEG_INF)
        padded = torch.zeros(B, L).masked_fill(padded, NEG_INF)
    masks = {"attn_mask": blocked, "key_padding_mask": padded}

    with torch.no_grad():
        ref_out, _ = reference(x, x, x, need_weights=need_weights, **masks)
    dead = torch.zeros(B, L, dtype=torch.bool)  # (B, L) query rows with no key
    dead[:, 2], dead[1] = True, True
    if need_weights:  # torch's explicit path: softmax over all -inf is NaN
        assert ref_out[dead].isnan().all()
    # torch's SDPA path (need_weights=False) may already give zeros there (CPU, torch >= 2.5): compare where finite.
    finite = ~ref_out.isnan().any(dim=-1)  # (B, L)
    assert finite[~dead].all()

    leaf = x.clone().requires_grad_(True)
    out, weights = ours(leaf, leaf, leaf, need_weights=need_weights, average_attn_weights=False, **masks)
    torch.testing.assert_close(out[dead], ours.out_proj.bias.detach().expand(int(dead.sum()), E), atol=0, rtol=0)
    torch.testing.assert_close(out[finite], ref_out[finite], atol=ATOL, rtol=0)
    if need_weights:
        assert weights is not None and (weights.transpose(1, 2)[dead] == 0).all()  # (B, L, H, L) indexed
    out.square().sum().backward()
    grads = [leaf.grad] + [p.grad for p in ours.parameters()]
    assert all(g is not None and g.isfinite().all() for g in grads)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"kdim": KDIM, "vdim": VDIM}, {"bias": False}, {"add_bias_kv": True, "add_zero_attn": True}],
    ids=["packed", "separate", "no_bias", "bias_kv"],
)
def test_same_keys_and_initialisation(kwargs: dict[str, object]) -> None:
    """Same seed -> the same parameters: same keys, shapes, init scheme and RNG order as torch."""
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(E, H, **kwargs)
    torch.manual_seed(0)
    ours = compat.MultiheadAttention(E, H, **kwargs)
    assert list(ours.state_dict()) == list(reference.state_dict())
    for name, tensor in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[name], tensor), name
    assert isinstance(ours.out_proj, nn.Linear)
    assert (ours.in_proj_weight is None) == (reference.in_proj_weight is None)
    for name in ("embed_dim", "kdim", "vdim", "num_heads", "head_dim", "dropout", "batch_first", "add_zero_attn"):
        assert getattr(ours, name) == getattr(reference, name)


def test_bad_masks_raise() -> None:
    ours = compat.MultiheadAttention(E, H)
    x = torch.randn(L, B, E)
    with pytest.raises(ValueError, match="attn_mask"):
        ours(x, x, x, attn_mask=torch.zeros(L, L + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding_mask"):
        ours(x, x, x, key_padding_mask=torch.zeros(B, L + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        ours(x, x, x, attn_mask=torch.zeros(L, L, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        compat.MultiheadAttention(E, 3)
