"""``OneRowWeights``: one-row products against transposed weight copies equal ``nn.Linear``, and decoding with
them (``GenerationConfig.transposed_weights``) gives the tokens and scores of decoding without them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_models import BOS, EOS, tiny_lm, tiny_seq2seq
from torch import nn

import multihead.generation.one_row as one_row
from multihead.generation import GenerationConfig, generate, stream
from multihead.generation.one_row import OneRowWeights


@pytest.mark.parametrize("shape", [(1, 12), (2, 12), (1, 1, 12), (2, 1, 12), (1, 2, 12)])
@pytest.mark.parametrize("bias", [True, False])
def test_small_inputs_equal_linear(shape: tuple[int, ...], bias: bool) -> None:
    torch.manual_seed(0)
    layer, x = nn.Linear(12, 7, bias=bias), torch.randn(shape)
    expected = layer(x).detach()
    copies = OneRowWeights(layer, min_elements=0)
    with torch.no_grad(), copies.active():
        assert "forward" in layer.__dict__  # the copy path is in place
        got = layer(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert "forward" not in layer.__dict__  # restored


def test_large_inputs_and_gradients_take_linear_unchanged() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(12, 7)
    copies = OneRowWeights(layer, min_elements=0, max_rows=2)
    big = torch.randn(3, 12)
    with copies.active():
        with torch.no_grad():
            assert torch.equal(layer(big), torch.nn.functional.linear(big, layer.weight, layer.bias))
        one = torch.randn(1, 12, requires_grad=True)
        layer(one).sum().backward()  # grad enabled: nn.Linear's own path, gradients flow
    assert one.grad is not None and layer.weight.grad is not None


def test_restored_after_an_error_and_refreshed_after_a_weight_change() -> None:
    torch.manual_seed(0)
    layer, x = nn.Linear(6, 5), torch.randn(1, 6)
    copies = OneRowWeights(layer, min_elements=0)
    with pytest.raises(RuntimeError, match="boom"), copies.active():
        raise RuntimeError("boom")
    assert "forward" not in layer.__dict__
    with torch.no_grad():
        with copies.active():
            layer(x)
        layer.weight.mul_(2.0)  # a training step between two decodings
        with copies.active():
            got = layer(x)
    torch.testing.assert_close(got, torch.nn.functional.linear(x, layer.weight, layer.bias))


def test_only_large_weights_get_copies() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(64, 64))
    assert OneRowWeights(model, min_elements=1000).layers == [model[1]]
    with pytest.raises(ValueError, match="max_rows must be >= 1"):
        OneRowWeights(model, max_rows=0)


@pytest.mark.parametrize("seq2seq", [False, True])
@pytest.mark.parametrize("beams", [1, 3])
def test_decoding_with_copies_equals_decoding_without(monkeypatch: pytest.MonkeyPatch, seq2seq: bool,
                                                      beams: int) -> None:
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    inputs = [[3, 4, 5], [6], [7, 8, 9, 10]]
    config = GenerationConfig(max_new_tokens=8, num_beams=beams, num_return_sequences=beams, bos_id=BOS, eos_id=EOS)
    without = generate(model, inputs, config, batch_size=1)
    monkeypatch.setattr(one_row, "MIN_ELEMENTS", 0)  # every linear layer copied; one row per step at batch 1
    config = dataclasses.replace(config, transposed_weights=True)
    calls = {"count": 0}
    original = OneRowWeights._forward

    def counting(self: OneRowWeights, layer: nn.Linear, transposed: torch.Tensor):  # type: ignore[no-untyped-def]
        inner = original(self, layer, transposed)

        def forward(x: torch.Tensor) -> torch.Tensor:
            calls["count"] += 1
            return inner(x)

        return forward

    monkeypatch.setattr(OneRowWeights, "_forward", counting)
    with_copies = generate(model, inputs, config, batch_size=1)
    assert calls["count"] > 0
    for a, b in zip(without, with_copies, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        for x, y in zip(a, b, strict=True):
            assert x.log_prob == pytest.approx(y.log_prob, abs=1e-4)
    greedy = GenerationConfig(max_new_tokens=8, bos_id=BOS, eos_id=EOS)
    streamed = list(stream(model, inputs[0], dataclasses.replace(greedy, transposed_weights=True), decode=str))[-1]
    assert streamed == generate(model, [inputs[0]], greedy, decode=str)[0][0].text  # without the copies
    assert all("forward" not in module.__dict__ for module in model.modules())
