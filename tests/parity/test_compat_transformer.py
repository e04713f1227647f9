"""Parity of ``multihead.compat``'s Transformer modules with ``torch.nn``'s.

Weights are copied with ``load_state_dict(strict=True)`` in both directions; outputs and gradients (of
inputs and of every parameter) must agree to 1e-5 absolute in float32, dropout 0 or eval mode.
Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` model width.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead import compat
from weights import randomize_parameters

E, NHEAD, FF, B, S, T = 16, 4, 32, 2, 7, 5
ATOL = 1e-5
NEG_INF = float("-inf")
DIRECTIONS = ["torch_to_ours", "ours_to_torch"]

pytestmark = [
    pytest.mark.filterwarnings("ignore:enable_nested_tensor is True"),
    pytest.mark.filterwarnings("ignore:Support for mismatched"),
    pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors"),
]

Call = Callable[[nn.Module, list[Tensor]], Tensor]


def _pair(name: str, direction: str, *args: object, **kwargs: object) -> tuple[nn.Module, nn.Module]:
    """``torch.nn.<name>`` and ``compat.<name>`` with the same weights, copied in the given direction."""
    reference, ours = getattr(nn, name)(*args, **kwargs), getattr(compat, name)(*args, **kwargs)
    source, target = (reference, ours) if direction == "torch_to_ours" else (ours, reference)
    randomize_parameters(source)
    target.load_state_dict(source.state_dict(), strict=True)
    return reference, ours


def _stack_pair(name: str, direction: str, batch_first: bool, norm_first: bool) -> tuple[nn.Module, nn.Module]:
    """Two-layer ``TransformerEncoder`` / ``TransformerDecoder`` with a final norm, torch's and ours."""
    layer_name = name + "Layer"
    layer_kwargs = {"dim_feedforward": FF, "dropout": 0.0, "batch_first": batch_first, "norm_first": norm_first}
    modules = []
    for namespace in (nn, compat):
        layer = getattr(namespace, layer_name)(E, NHEAD, **layer_kwargs)
        modules.append(getattr(namespace, name)(layer, 2, norm=nn.LayerNorm(E)))
    reference, ours = modules
    source, target = (reference, ours) if direction == "torch_to_ours" else (ours, reference)
    randomize_parameters(source)
    target.load_state_dict(source.state_dict(), strict=True)
    return reference, ours


def _run(module: nn.Module, inputs: list[Tensor], call: Call) -> list[Tensor | None]:
    """Output, then gradients of inputs and parameters for a fixed random projection of the output."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    module.zero_grad(set_to_none=True)
    out = call(module, leaves)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out * cotangent).sum().backward()
    return [out.detach()] + [leaf.grad for leaf in leaves] + [p.grad for _, p in sorted(module.named_parameters())]


def _assert_parity(reference: nn.Module, ours: nn.Module, inputs: list[Tensor], call: Call) -> None:
    for ref, got in zip(_run(reference, inputs, call), _run(ours, inputs, call), strict=True):
        if ref is None or got is None:
            assert ref is None and got is None
            continue
        torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)


def _seq(length: int, batch_first: bool, seed: int) -> Tensor:
    shape = (B, length, E) if batch_first else (length, B, E)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _padding(length: int, dtype: str = "bool") -> Tensor:
    """``(B, length)`` key padding mask, True (or -inf) on the last two positions of the last example."""
    padded = torch.zeros(B, length, dtype=torch.bool)
    padded[-1, length - 2:] = True
    return padded if dtype == "bool" else torch.zeros(B, length).masked_fill(padded, NEG_INF)


def _causal(length: int, dtype: str = "float") -> Tensor:
    mask = nn.Transformer.generate_square_subsequent_mask(length)  # (length, length), -inf above the diagonal
    return mask if dtype == "float" else mask.isinf()


ENCODER_MASKS: dict[str, Callable[[], dict[str, object]]] = {
    "none": lambda: {},
    "causal_float": lambda: {"src_mask": _causal(S)},
    "causal_bool": lambda: {"src_mask": _causal(S, "bool")},
    "causal_hint": lambda: {"src_mask": _causal(S), "is_causal": True},
    "padded": lambda: {"src_key_padding_mask": _padding(S)},
    "causal_and_padded": lambda: {"src_mask": _causal(S, "bool"), "src_key_padding_mask": _padding(S)},
}
DECODER_MASKS: dict[str, Callable[[], dict[str, object]]] = {
    "none": lambda: {},
    "causal": lambda: {"tgt_mask": _causal(T)},
    "causal_hint": lambda: {"tgt_mask": _causal(T), "tgt_is_causal": True},
    "causal_and_padded": lambda: {
        "tgt_mask": _causal(T, "bool"),
        "tgt_key_padding_mask": _padding(T),
        "memory_key_padding_mask": _padding(S),
    },
    "memory_float": lambda: {
        "tgt_mask": _causal(T),
        "memory_mask": torch.randn(T, S, generator=torch.Generator().manual_seed(5)),
        "memory_key_padding_mask": _padding(S, "float"),
    },
}


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("masks", list(ENCODER_MASKS))
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer(norm_first: bool, batch_first: bool, activation: str, masks: str, direction: str) -> None:
    reference, ours = _pair(
        "TransformerEncoderLayer", direction, E, NHEAD, dim_feedforward=FF, dropout=0.0,
        activation=activation, batch_first=batch_first, norm_first=norm_first,
    )
    kwargs = ENCODER_MASKS[masks]()
    _assert_parity(reference, ours, [_seq(S, batch_first, 1)], lambda module, xs: module(xs[0], **kwargs))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("masks", list(DECODER_MASKS))
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer(norm_first: bool, batch_first: bool, activation: str, masks: str, direction: str) -> None:
    reference, ours = _pair(
        "TransformerDecoderLayer", direction, E, NHEAD, dim_feedforward=FF, dropout=0.0,
        activation=activation, batch_first=batch_first, norm_first=norm_first,
    )
    kwargs = DECODER_MASKS[masks]()
    inputs = [_seq(T, batch_first, 1), _seq(S, batch_first, 2)]
    _assert_parity(reference, ours, inputs, lambda module, xs: module(xs[0], xs[1], **kwargs))


@pytest.mark.parametrize("name", ["TransformerEncoderLayer", "TransformerDecoderLayer"])
def test_layers_unbatched_eval_and_callable_activation(name: str) -> None:
    reference, ours = _pair(name, "torch_to_ours", E, NHEAD, dim_feedforward=FF, dropout=0.3, activation=F.silu)
    reference.eval(), ours.eval()
    inputs = [_seq(T, True, 1)[0], _seq(S, True, 2)[0]]  # (T, E), (S, E)
    if name == "TransformerEncoderLayer":
        call: Call = lambda module, xs: module(xs[0], src_mask=_causal(T))  # noqa: E731
    else:
        call = lambda module, xs: module(xs[0], xs[1], tgt_mask=_causal(T))  # noqa: E731
    _assert_parity(reference, ours, inputs, call)


@pytest.mark.parametrize("masks", ["none", "causal_float", "padded"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_torch_fast_path(norm_first: bool, masks: str) -> None:
    """eval + no_grad + batch_first sends torch to ``_transformer_encoder_layer_fwd``."""
    reference, ours = _pair(
        "TransformerEncoderLayer", "torch_to_ours", E, NHEAD,
        dim_feedforward=FF, batch_first=True, norm_first=norm_first,
    )
    reference.eval(), ours.eval()
    x, kwargs = _seq(S, True, 1), ENCODER_MASKS[masks]()
    with torch.no_grad():
        torch.testing.assert_close(ours(x, **kwargs), reference(x, **kwargs), atol=ATOL, rtol=0)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_with_final_norm(norm_first: bool, batch_first: bool, direction: str) -> None:
    reference, ours = _stack_pair("TransformerEncoder", direction, batch_first, norm_first)
    encoder_masks = {"mask": _causal(S, "bool"), "src_key_padding_mask": _padding(S)}
    _assert_parity(reference, ours, [_seq(S, batch_first, 1)], lambda module, xs: module(xs[0], **encoder_masks))

    reference, ours = _stack_pair("TransformerDecoder", direction, batch_first, norm_first)
    decoder_masks = DECODER_MASKS["causal_and_padded"]()
    inputs = [_seq(T, batch_first, 1), _seq(S, batch_first, 2)]
    _assert_parity(reference, ours, inputs, lambda module, xs: module(xs[0], xs[1], **decoder_masks))


def test_encoder_torch_nested_fast_path_matches_on_real_tokens() -> None:
    """torch's eval fast path runs nested tensors and zeroes padded outputs; compare real tokens only."""
    reference, ours = _stack_pair("TransformerEncoder", "torch_to_ours", batch_first=True, norm_first=False)
    assert reference.use_nested_tensor and not ours.use_nested_tensor
    reference.eval(), ours.eval()
    x, padded = _seq(S, True, 1), _padding(S)
    with torch.no_grad():
        expected, got = reference(x, src_key_padding_mask=padded), ours(x, src_key_padding_mask=padded)
    torch.testing.assert_close(got[~padded], expected[~padded], atol=ATOL, rtol=0)
    assert not torch.allclose(got[padded], expected[padded])  # the documented difference


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_full_transformer(norm_first: bool, batch_first: bool, direction: str) -> None:
    reference, ours = _pair(
        "Transformer", direction, E, NHEAD, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=FF,
        dropout=0.0, batch_first=batch_first, norm_first=norm_first,
    )
    masks = {
        "tgt_mask": compat.Transformer.generate_square_subsequent_mask(T),
        "src_key_padding_mask": _padding(S),
        "tgt_key_padding_mask": _padding(T),
        "memory_key_padding_mask": _padding(S),
    }
    inputs = [_seq(S, batch_first, 1), _seq(T, batch_first, 2)]
    _assert_parity(reference, ours, inputs, lambda module, xs: module(xs[0], xs[1], **masks))


def test_full_transformer_unbatched_and_generate_mask() -> None:
    reference, ours = _pair("Transformer", "ours_to_torch", E, NHEAD, 1, 1, FF, dropout=0.0)
    inputs = [_seq(S, True, 1)[0], _seq(T, True, 2)[0]]  # (S, E), (T, E)
    call: Call = lambda module, xs: module(xs[0], xs[1], tgt_mask=_causal(T), tgt_is_causal=True)  # noqa: E731
    _assert_parity(reference, ours, inputs, call)
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(
            compat.Transformer.generate_square_subsequent_mask(4, dtype=dtype),
            nn.Transformer.generate_square_subsequent_mask(4, dtype=dtype),
        )


CONFIGS = [
    ("TransformerEncoderLayer", {}),
    ("TransformerEncoderLayer", {"bias": False, "norm_first": True}),
    ("TransformerDecoderLayer", {}),
    ("TransformerDecoderLayer", {"bias": False, "activation": "gelu"}),
    ("Transformer", {"num_encoder_layers": 2, "num_decoder_layers": 1}),
    ("Transformer", {"num_encoder_layers": 1, "num_decoder_layers": 2, "bias": False, "batch_first": True}),
]


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_same_keys_and_initialisation(name: str, kwargs: dict[str, object]) -> None:
    """Same seed -> identical state dicts: same keys, shapes, init (Transformer's xavier too) and RNG order."""
    torch.manual_seed(0)
    reference = getattr(nn, name)(E, NHEAD, dim_feedforward=FF, **kwargs)
    torch.manual_seed(0)
    ours = getattr(compat, name)(E, NHEAD, dim_feedforward=FF, **kwargs)
    assert list(ours.state_dict()) == list(reference.state_dict())
    for key, tensor in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[key], tensor), key


def test_stack_deep_copies_layer_and_accepts_torch_keywords() -> None:
    layer = compat.TransformerEncoderLayer(E, NHEAD, dim_feedforward=FF)
    stack = compat.TransformerEncoder(layer, 3, enable_nested_tensor=False, mask_check=False)
    assert stack.num_layers == 3 and stack.norm is None and len({id(m) for m in stack.layers}) == 3
    assert all(m is not layer and torch.equal(m.linear1.weight, layer.linear1.weight) for m in stack.layers)
    decoder = compat.TransformerDecoder(compat.TransformerDecoderLayer(E, NHEAD), num_layers=2)
    assert decoder.layers[0] is not decoder.layers[1]


def test_torch_snippet_runs_with_compat() -> None:
    """Code written for torch.nn runs after changing only the import."""
    from multihead.compat import TransformerEncoderLayer

    d_model, nhead = 32, 4
    layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1)
    assert layer.self_attn.embed_dim == d_model and layer.self_attn.num_heads == nhead
    assert layer.linear1.out_features == 2048 and layer.linear2.in_features == 2048
    assert isinstance(layer.dropout, nn.Dropout) and layer.dropout.p == 0.1
    src = torch.rand(10, 3, d_model)  # (S, B, E)
    out = layer(src, src_mask=nn.Transformer.generate_square_subsequent_mask(10))
    assert out.shape == (10, 3, d_model)
    layer.eval()
    reference = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1).eval()
    reference.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(src), reference(src), atol=ATOL, rtol=0)


def test_activation_strings_and_errors() -> None:
    assert compat.TransformerEncoderLayer(E, NHEAD, activation="gelu").activation is F.gelu
    assert compat.TransformerDecoderLayer(E, NHEAD).activation is F.relu
    with pytest.raises(ValueError, match="activation"):
        compat.TransformerEncoderLayer(E, NHEAD, activation="swish")
    model = compat.Transformer(E, NHEAD, 1, 1, FF)
    with pytest.raises(ValueError, match="batch size"):
        model(torch.randn(S, 2, E), torch.randn(T, 3, E))


@pytest.mark.parametrize("norm_first", [False, True])
def test_fully_masked_rows_stay_finite(norm_first: bool) -> None:
    """A query with no allowed key: torch's need_weights path gives NaN, ours zeros; layers stay finite."""
    encoder, ours_encoder = _pair(
        "TransformerEncoderLayer", "torch_to_ours", E, NHEAD, dim_feedforward=FF, dropout=0.0, norm_first=norm_first
    )
    decoder, ours_decoder = _pair(
        "TransformerDecoderLayer", "torch_to_ours", E, NHEAD, dim_feedforward=FF, dropout=0.0, norm_first=norm_first
    )
    src, tgt = _seq(S, False, 1).requires_grad_(True), _seq(T, False, 2).requires_grad_(True)
    all_padded = torch.zeros(B, S, dtype=torch.bool)  # (B, S)
    all_padded[1] = True  # example 1 has no key at all
    tgt_mask = _causal(T)
    tgt_mask[3] = NEG_INF  # query 3 may attend nothing

    memory = ours_encoder(src, src_key_padding_mask=all_padded)
    out = ours_decoder(tgt, memory, tgt_mask=tgt_mask, memory_key_padding_mask=all_padded)
    out.square().sum().backward()
    grads = [src.grad, tgt.grad, *(p.grad for p in [*ours_encoder.parameters(), *ours_decoder.parameters()])]
    assert out.isfinite().all() and all(g is not None and g.isfinite().all() for g in grads)

    # Where torch is finite (the rows that have keys; torch's SDPA path may also give zeros), we agree.
    with torch.no_grad():
        expected = decoder(tgt, encoder(src, src_key_padding_mask=all_padded), tgt_mask=tgt_mask)
    finite = expected.isfinite().all(dim=-1)  # (T, B)
    assert finite[:, 0].any()
    torch.testing.assert_close(
        ours_decoder(tgt, memory, tgt_mask=tgt_mask)[finite].detach(), expected[finite], atol=ATOL, rtol=0
    )
