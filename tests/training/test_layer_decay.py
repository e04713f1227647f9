"""Layer-wise learning-rate decay: depths from parameter names, rates per group, one update checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from toy import make_trainer

from multihead.models import SequenceClassifier, TransformerConfig
from multihead.training import TrainingConfig
from multihead.training.optim import build_optimizer, layer_depths, parameter_groups


def classifier() -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(TransformerConfig(vocab_size=30, d_model=16, n_heads=2, n_layers=3, d_ff=32), n_classes=2)


def test_depths_follow_the_layer_index() -> None:
    depths = layer_depths(classifier())
    assert {depth for depth, _ in depths.values()} == {0, 1, 2, 3, 4}
    assert all(top == 4 for _, top in depths.values())
    for name, (depth, _) in depths.items():
        if ".layers." in f".{name}":
            assert depth == int(name.split("layers.")[1].split(".")[0]) + 1, name
        elif "embedding" in name:
            assert depth == 0, name
        else:
            assert depth == 4, name  # the head and any final norm train at the full rate


def test_groups_cover_every_parameter_once_with_geometric_rates() -> None:
    model = classifier()
    groups = parameter_groups(model, weight_decay=0.1, lr=1.0, layer_decay=0.5)
    seen = [id(p) for group in groups for p in group["params"]]  # type: ignore[union-attr]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    depths = layer_depths(model)
    rate_of = {id(p): group["lr"] for group in groups for p in group["params"]}  # type: ignore[union-attr]
    decay_of = {id(p): group["weight_decay"] for group in groups for p in group["params"]}  # type: ignore[union-attr]
    for name, parameter in model.named_parameters():
        depth, top = depths[name]
        assert rate_of[id(parameter)] == pytest.approx(0.5 ** (top - depth)), name
        assert decay_of[id(parameter)] == (0.1 if parameter.dim() >= 2 else 0.0), name


def test_one_step_matches_plain_adamw_at_each_layers_rate() -> None:
    """The first AdamW step moves each parameter by about its group's rate (Adam's first step is lr * sign)."""
    model = classifier()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.0, layer_decay=0.5, eps=1e-12)
    ids = torch.randint(1, 30, (4, 6))
    torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 1, 0, 1])).backward()
    optimizer.step()
    depths = layer_depths(model)
    for name, parameter in model.named_parameters():
        depth, top = depths[name]
        moved = (parameter.detach() - before[name]).abs()
        has_gradient = parameter.grad is not None and parameter.grad.abs() > 1e-7
        if has_gradient.any():
            expected = 1e-2 * 0.5 ** (top - depth)
            assert torch.allclose(moved[has_gradient], torch.full_like(moved[has_gradient], expected), rtol=1e-3), name


def test_trainer_trains_with_layer_decay_and_logs_the_head_rate(tmp_path: Path) -> None:
    trainer, _ = make_trainer(tmp_path, steps=40, layer_decay=0.8, schedule="constant", warmup_steps=0)
    result = trainer.fit()
    assert result.best_metric is not None and result.best_metric >= 0.9
    rates = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if '"lr"' in line]
    assert rates and all(rate == pytest.approx(3e-3) for rate in rates)


def test_bad_layer_decay_is_refused() -> None:
    with pytest.raises(ValueError, match="layer_decay"):
        TrainingConfig(layer_decay=1.5)
    with pytest.raises(ValueError, match="layer_decay"):
        parameter_groups(classifier(), weight_decay=0.0, layer_decay=0.5)  # no lr
