"""``capture_attention`` against ``need_weights=True`` and ``torch.nn.MultiheadAttention``; untouched fast path."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import multihead.attention as attention_module
from multihead import Encoder, SequenceClassifier, TransformerConfig
from multihead.inspect import Site, attention_sites, capture_attention


def _config(**overrides: Any) -> TransformerConfig:
    options: dict[str, Any] = {"vocab_size": 20, "d_model": 16, "n_heads": 4, "n_layers": 3, "d_ff": 32,
                               "dropout": 0.0, "max_length": 16, "pad_id": 0, "positions": "sinusoidal"}
    options.update(overrides)
    return TransformerConfig(**options)


def _inputs_of(module: nn.Module) -> tuple[list[tuple[Any, ...]], Any]:
    """Record the args and kwargs of every call of ``module`` (a test hook, registered before the capture's)."""
    seen: list[tuple[Any, ...]] = []

    def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen.append((args, dict(kwargs)))

    return seen, module.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("padded", [False, True])
def test_captured_weights_equal_need_weights(padded: bool) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(_config(), n_classes=2).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9], [3, 4, 11, 0, 0]]) if padded else torch.tensor([[5, 6, 7, 8, 9]])
    modules = attention_sites(model)
    recorders = {site: _inputs_of(module) for site, module in modules.items()}
    with torch.no_grad(), capture_attention(model) as captured:
        model(ids)
    for site, (seen, handle) in recorders.items():
        handle.remove()
        (args, kwargs), = seen
        assert kwargs.get("packing") is not None if padded else True
        expected = modules[site](*args, **{**kwargs, "need_weights": True})[1]  # (B, H, T, T)
        got = captured.weights(site)
        assert got.shape == (ids.shape[0], 4, 5, 5)
        if padded:  # padded query rows are zeroed; real rows equal the module's own weights
            torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
            torch.testing.assert_close(got[1, :, :3], expected[1, :, :3], rtol=0, atol=0)
            assert got[1, :, 3:].abs().sum() == 0 and got[1, :, :3, 3:].abs().sum() == 0
        else:
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_padded_row_equals_the_sentence_alone() -> None:
    torch.manual_seed(1)
    model = SequenceClassifier(_config(), n_classes=2).eval()
    with torch.no_grad(), capture_attention(model) as batched:
        model(torch.tensor([[5, 6, 7, 8, 9], [3, 4, 11, 0, 0]]))
    with torch.no_grad(), capture_attention(model) as alone:
        model(torch.tensor([[3, 4, 11]]))
    for site in batched.sites:
        torch.testing.assert_close(batched.weights(site)[1, :, :3, :3], alone.weights(site)[0], rtol=1e-5, atol=1e-6)


def test_captured_weights_match_torch_multihead_attention() -> None:
    torch.manual_seed(2)
    model = Encoder(_config(n_layers=1, pad_id=None)).eval()
    ours = model.layers[0].self_attn
    seen, handle = _inputs_of(ours)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad(), capture_attention(model) as captured:
        model(ids)
    handle.remove()
    x = seen[0][0][0]  # (1, T, D), the normed input of the self-attention
    reference = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        reference.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        reference.out_proj.load_state_dict(ours.out_proj.state_dict())
        _, per_head = reference(x, x, x, need_weights=True, average_attn_weights=False)  # (1, H, T, T)
        _, averaged = reference(x, x, x, need_weights=True)  # (1, T, T)
    got = captured.weights(Site("encoder", 0, "self"))
    torch.testing.assert_close(got, per_head, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.mean(dim=1), averaged, rtol=1e-5, atol=1e-6)


def test_chosen_heads_in_the_order_given() -> None:
    torch.manual_seed(3)
    model = SequenceClassifier(_config(), n_classes=2).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad(), capture_attention(model) as every:
        model(ids)
    with torch.no_grad(), capture_attention(model, layers=[2], heads=[3, 1]) as some:
        model(ids)
    site = Site("encoder", 2, "self")
    assert some.sites == [site]
    torch.testing.assert_close(some.weights(site), every.weights(site)[:, [3, 1]], rtol=0, atol=0)


def test_only_captured_layers_leave_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(4)
    model = SequenceClassifier(_config(), n_classes=2).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    asked: list[bool] = []
    kernel = attention_module.scaled_dot_product

    def counting(*args: Any, **kwargs: Any) -> Any:
        asked.append(bool(kwargs.get("need_weights")))
        return kernel(*args, **kwargs)

    monkeypatch.setattr(attention_module, "scaled_dot_product", counting)
    with torch.no_grad():
        plain = model(ids)
        assert asked == [False, False, False]
        asked.clear()
        with capture_attention(model, layers=[1]) as captured:
            captured_logits = model(ids)
        assert asked == [False, True, False]  # layers 0 and 2 took the fused SDPA path
        asked.clear()
        model(ids)  # the hooks are gone after the block
        assert asked == [False, False, False]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in attention_sites(model).values())
    torch.testing.assert_close(captured_logits, plain, rtol=1e-5, atol=1e-6)
    assert len(captured.calls[Site("encoder", 1, "self")]) == 1


def test_caller_weights_are_kept_or_hidden_as_asked() -> None:
    torch.manual_seed(5)
    model = Encoder(_config(n_layers=1, pad_id=None)).eval()
    module = model.layers[0].self_attn
    x = torch.randn(1, 4, 16)
    with torch.no_grad(), capture_attention(model) as captured:
        assert module(x)[1] is None
        weights = module(x, need_weights=True)[1]
    assert weights is not None and len(captured.calls[Site("encoder", 0, "self")]) == 2
    torch.testing.assert_close(captured.calls[Site("encoder", 0, "self")][1], weights)


def test_bad_choices_name_what_was_expected() -> None:
    model = SequenceClassifier(_config(), n_classes=2)
    with pytest.raises(ValueError, match=r"layer 3 does not exist; expected 0..2"):
        capture_attention(model, layers=[3])
    with pytest.raises(ValueError, match=r"head numbers in 0..3"):
        capture_attention(model, heads=[4])
    with pytest.raises(ValueError, match="nothing to capture"):
        capture_attention(model, kinds=["cross"])
    with pytest.raises(ValueError, match="'self' or 'cross'"):
        capture_attention(model, kinds=["both"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="stack 'decoder' is not in this model"):
        capture_attention(model, stacks=["decoder"])
    with pytest.raises(ValueError, match="no multihead Encoder or Decoder"):
        capture_attention(nn.Linear(2, 2))
