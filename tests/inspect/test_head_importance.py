"""Head masks and head importance (Michel et al., 2019) against finite differences on tiny float64 models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead import EncoderDecoder, SequenceClassifier, TransformerConfig
from multihead.attention import MultiHeadAttention
from multihead.data import pad_batch
from multihead.inspect.importance import attention_modules, head_importance, head_masks, normalize_per_module


def tiny(**changes: object) -> TransformerConfig:
    values = {"vocab_size": 40, "d_model": 16, "n_heads": 4, "n_layers": 2, "d_ff": 32, "dropout": 0.0,
              "max_length": 32, "pad_id": 0, **changes}
    return TransformerConfig(**values)  # type: ignore[arg-type]


def classifier_batch() -> dict[str, torch.Tensor]:
    ids, mask = pad_batch([[5, 6, 7, 8, 9], [3, 4], [10, 11, 12]], pad_id=0)
    return {"ids": ids, "mask": mask, "labels": torch.tensor([0, 1, 1])}


def classifier_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch["ids"], mask=batch["mask"]), batch["labels"], reduction="sum")


def seq2seq_batch() -> dict[str, torch.Tensor]:
    source, _ = pad_batch([[5, 6, 7, 2], [8, 9, 2]], pad_id=0)
    target, mask = pad_batch([[1, 11, 12, 13, 2], [1, 14, 2]], pad_id=0)
    return {"source": source, "target_in": target[:, :-1], "target_out": target[:, 1:].masked_fill(~mask[:, 1:], -100)}


def seq2seq_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(batch["source"], batch["target_in"])
    return F.cross_entropy(logits.flatten(0, 1), batch["target_out"].flatten(), ignore_index=-100, reduction="sum")


def finite_difference_importance(model: torch.nn.Module, batch: dict[str, torch.Tensor], loss, *, eps: float = 1e-5
                                 ) -> dict[str, torch.Tensor]:
    """``mean_x |(L(x; xi_h = 1 + eps) - L(x; xi_h = 1 - eps)) / 2 eps|``, one example at a time, ``(H,)`` masks."""
    rows = next(iter(batch.values())).shape[0]
    scores = {}
    for name, module in attention_modules(model).items():
        total = torch.zeros(module.n_heads, dtype=torch.float64)
        for row in range(rows):
            example = {key: value[row:row + 1] for key, value in batch.items()}
            for head in range(module.n_heads):
                values = []
                for sign in (1.0, -1.0):
                    mask = torch.ones(module.n_heads, dtype=torch.float64)
                    mask[head] += sign * eps
                    with torch.no_grad(), head_masks(model, {name: mask}):
                        values.append(float(loss(model, example)))
                total[head] += abs(values[0] - values[1]) / (2 * eps)
        scores[name] = total / rows
    return scores


@pytest.mark.parametrize("kind", ["classifier", "seq2seq"])
def test_importance_equals_finite_differences(kind: str) -> None:
    """Per-example ``E_x |dL/dxi_h|`` from the batched ``(B, H)`` masks equals a central finite difference
    taken one example at a time, for encoder self, decoder self and decoder cross heads."""
    torch.manual_seed(0)
    if kind == "classifier":
        model: torch.nn.Module = SequenceClassifier(tiny(), n_classes=2)
        batch, loss = classifier_batch(), classifier_loss
    else:
        model, batch, loss = EncoderDecoder(tiny(n_layers=1, n_decoder_layers=2)), seq2seq_batch(), seq2seq_loss
    model = model.double().eval()
    with torch.no_grad():  # larger weights: gradients well above the finite-difference noise
        for parameter in model.parameters():
            parameter.mul_(8.0)
    got = head_importance(model, [batch], loss, normalize=False)
    expected = finite_difference_importance(model, batch, loss)
    assert list(got) == list(expected)
    if kind == "seq2seq":
        assert list(got) == ["encoder.0.self_attn", "decoder.0.cross_attn", "decoder.0.self_attn",
                             "decoder.1.cross_attn", "decoder.1.self_attn"]
    for name in expected:
        assert expected[name].abs().max() > 1e-3, "a degenerate model would make the comparison empty"
        torch.testing.assert_close(got[name].double(), expected[name], rtol=1e-4, atol=1e-7)


def test_importance_over_batches_is_the_mean_over_examples() -> None:
    """Splitting the data into batches of one gives the same importance as one batch (an expectation over x)."""
    torch.manual_seed(1)
    model = SequenceClassifier(tiny(), n_classes=2).eval()
    batch = classifier_batch()
    whole = head_importance(model, [batch], classifier_loss, normalize=False)
    singles = [{key: value[row:row + 1] for key, value in batch.items()} for row in range(3)]
    split = head_importance(model, singles, classifier_loss, normalize=False)
    for name in whole:
        torch.testing.assert_close(whole[name], split[name], rtol=1e-5, atol=1e-8)


def test_normalisation_is_per_module_l2() -> None:
    """Each module's scores have unit L2 norm; the order of heads within a module is unchanged."""
    torch.manual_seed(2)
    model = SequenceClassifier(tiny(), n_classes=2).eval()
    raw = head_importance(model, [classifier_batch()], classifier_loss, normalize=False)
    normalised = head_importance(model, [classifier_batch()], classifier_loss)
    for name in raw:
        torch.testing.assert_close(normalised[name].norm(), torch.tensor(1.0))
        torch.testing.assert_close(normalised[name], raw[name] / raw[name].norm())
    assert normalize_per_module({"x": torch.zeros(3)})["x"].tolist() == [0.0, 0.0, 0.0]


def test_removed_heads_score_zero_and_the_rest_see_the_mask() -> None:
    """With ``keep`` masking heads, those heads score 0 and the others are measured on the masked model."""
    torch.manual_seed(3)
    model = SequenceClassifier(tiny(), n_classes=2).double().eval()
    keep = {"encoder.0.self_attn": torch.tensor([1.0, 0.0, 1.0, 0.0])}
    scores = head_importance(model, [classifier_batch()], classifier_loss, keep=keep, normalize=False)
    assert scores["encoder.0.self_attn"][1] == 0 and scores["encoder.0.self_attn"][3] == 0
    unmasked = head_importance(model, [classifier_batch()], classifier_loss, normalize=False)
    assert not torch.allclose(scores["encoder.1.self_attn"], unmasked["encoder.1.self_attn"])
    assert all(module.head_mask is None for module in attention_modules(model).values())


def test_all_heads_masked_leaves_the_bias_and_the_residual() -> None:
    """Decision: masking every head of a module is allowed; the attention output is then ``out_proj``'s bias
    (zero without biases), never NaN, and the residual stream passes through the layer."""
    torch.manual_seed(4)
    attention = MultiHeadAttention(16, 4)
    x = torch.randn(2, 5, 16)
    attention.head_mask = torch.zeros(4, requires_grad=True)
    out, _ = attention(x, mask=torch.ones(2, 1, 1, 5, dtype=torch.bool))
    torch.testing.assert_close(out, attention.out_proj.bias.expand(2, 5, 16))
    out.sum().backward()
    assert attention.head_mask.grad is not None and torch.isfinite(attention.head_mask.grad).all()
    assert attention.head_mask.grad.abs().sum() > 0

    model = SequenceClassifier(tiny(bias=False, n_layers=1), n_classes=2).eval()
    layer = model.encoder.layers[0]
    h = torch.randn(1, 4, 16)
    with head_masks(model, {"encoder.0.self_attn": torch.zeros(4)}):
        masked = layer(h)
    torch.testing.assert_close(masked, h + layer.feed_forward(layer.ff_norm(h)))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=4, max_size=4), st.integers(0, 10_000))
def test_head_mask_scales_each_heads_contribution(values: list[float], seed: int) -> None:
    """The masked output equals ``sum_h mask_h * out_proj(head_h)`` + bias, computed from per-head parts."""
    torch.manual_seed(seed)
    attention = MultiHeadAttention(16, 4).double()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    bias = attention.out_proj.bias
    parts = []
    for head in range(4):
        attention.head_mask = torch.eye(4, dtype=torch.float64)[head]
        parts.append(attention(x)[0] - bias)
    attention.head_mask = torch.tensor(values, dtype=torch.float64)
    expected = sum(v * p for v, p in zip(values, parts, strict=True)) + bias
    torch.testing.assert_close(attention(x)[0], expected)


def test_per_example_mask_rows_are_independent_and_ones_change_nothing() -> None:
    """A ``(B, H)`` mask of ones equals no mask; one row's mask does not touch the other rows."""
    torch.manual_seed(5)
    attention = MultiHeadAttention(16, 4).eval()
    x = torch.randn(3, 4, 16)
    plain = attention(x)[0]
    attention.head_mask = torch.ones(3, 4)
    torch.testing.assert_close(attention(x)[0], plain, rtol=0, atol=0)
    attention.head_mask = torch.tensor([[1.0, 1, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1]])
    out = attention(x)[0]
    torch.testing.assert_close(out[[0, 2]], plain[[0, 2]], rtol=0, atol=0)
    assert not torch.allclose(out[1], plain[1])


def test_bad_masks_are_errors_that_name_the_shape() -> None:
    model = SequenceClassifier(tiny(), n_classes=2)
    with pytest.raises(ValueError, match="has 3 heads, the module has 4"), \
            head_masks(model, {"encoder.0.self_attn": torch.ones(3)}):
        pass
    with pytest.raises(ValueError, match=r"no attention modules \['decoder.0.self_attn'\]"), \
            head_masks(model, {"decoder.0.self_attn": torch.ones(4)}):
        pass
    attention = MultiHeadAttention(16, 4)
    attention.head_mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"head_mask must be \(4,\) or \(2, 4\), got shape \(2, 3\)"):
        attention(torch.randn(2, 3, 16))
