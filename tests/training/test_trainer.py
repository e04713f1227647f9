"""The trainer: learning, checkpoints, exact resume, accumulation, early stopping, precision, metrics log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from toy import PAD, make_trainer, toy_examples

from multihead.model_dir import load_model_dir
from multihead.training import TrainingConfig


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_loss_falls_and_checkpoints_are_written(tmp_path: Path) -> None:
    trainer, _ = make_trainer(tmp_path, steps=60)
    result = trainer.fit()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if "loss" in line]
    assert losses[-1] < 0.5 * losses[0]
    assert result.best_metric is not None and result.best_metric >= 0.9
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert (tmp_path / "last" / "training_state.safetensors").is_file()
    evaluations = [line for line in lines if "validation" in line]
    assert [line["step"] for line in evaluations] == [10, 20, 30, 40, 50, 60]


def test_saved_model_gives_identical_predictions(tmp_path: Path) -> None:
    trainer, model = make_trainer(tmp_path, steps=20, eval_every=20)
    trainer.fit()
    loaded = load_model_dir(tmp_path / "last").model
    model.eval()
    batch = toy_examples(8, seed=5).collate(list(range(8)), pad_id=PAD)
    with torch.no_grad():
        assert torch.equal(loaded(batch["ids"], mask=batch["mask"]), model(batch["ids"], mask=batch["mask"]))


def test_resume_gives_identical_weights(tmp_path: Path) -> None:
    """N steps straight equals N/2 steps, stop, resume in a new trainer, N/2 more (dropout on: RNG restored)."""
    straight, straight_model = make_trainer(tmp_path / "straight", steps=30, eval_every=7)
    straight.fit()
    first, _ = make_trainer(tmp_path / "split", steps=30, eval_every=7)
    assert first.fit(stop_after_steps=15).step == 15
    second, resumed_model = make_trainer(tmp_path / "split", steps=30, eval_every=7)
    result = second.fit(resume=True)
    assert result.step == 30
    expected, got = weights(straight_model), weights(resumed_model)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    trainer, whole = make_trainer(tmp_path / "a", dropout=0.0, steps=5)
    trainer.fit()
    accumulated_trainer, accumulated = make_trainer(tmp_path / "b", dropout=0.0, steps=5, accumulation=4)
    accumulated_trainer.fit()
    for (name, expected), got in zip(whole.state_dict().items(), accumulated.state_dict().values(), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4, msg=name)


def test_early_stopping_stops(tmp_path: Path) -> None:
    trainer, _ = make_trainer(tmp_path, steps=400, eval_every=5, patience=2, lr=1e-9)
    result = trainer.fit()
    assert result.stopped_early and result.step < 400


def test_ema_is_evaluated_saved_and_resumed_exactly(tmp_path: Path) -> None:
    straight, straight_model = make_trainer(tmp_path / "straight", steps=30, eval_every=10, ema_decay=0.9)
    straight.fit()
    reference = {name: value.detach().clone() for name, value in straight_model.named_parameters()}
    first, _ = make_trainer(tmp_path / "split", steps=30, eval_every=10, ema_decay=0.9)
    first.fit(stop_after_steps=15)
    second, resumed = make_trainer(tmp_path / "split", steps=30, eval_every=10, ema_decay=0.9)
    second.fit(resume=True)
    for name, value in resumed.named_parameters():
        assert torch.equal(value, reference[name]), name
    saved = load_file(str(tmp_path / "straight" / "last" / "ema.safetensors"))
    resumed_average = load_file(str(tmp_path / "split" / "last" / "ema.safetensors"))
    assert saved.keys() == resumed_average.keys() and all(torch.equal(saved[k], resumed_average[k]) for k in saved)
    best = load_model_dir(tmp_path / "straight" / "best").model.state_dict()
    raw = straight_model.state_dict()
    assert any(not torch.equal(best[k], raw[k]) for k in raw if raw[k].is_floating_point())  # the average, not raw


def test_time_budget_stops_evaluates_and_saves(tmp_path: Path) -> None:
    trainer, _ = make_trainer(tmp_path, steps=400, eval_every=100, max_minutes=1e-9)
    result = trainer.fit()
    assert result.out_of_time and result.step == 1
    assert [e["step"] for e in result.evaluations] == [1]
    assert (tmp_path / "best" / "model.safetensors").is_file() and (tmp_path / "last").is_dir()


def test_bf16_autocast_trains(tmp_path: Path) -> None:
    trainer, model = make_trainer(tmp_path, steps=60, precision="bf16")
    result = trainer.fit()
    assert result.best_metric is not None and result.best_metric > 0.9
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())


def test_fp16_needs_a_gpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    trainer, _ = make_trainer(tmp_path, precision="fp16", device="cpu")
    with pytest.raises(ValueError, match="fp16' needs a GPU"):
        trainer.fit()


def test_resume_without_checkpoint_names_the_folder(tmp_path: Path) -> None:
    trainer, _ = make_trainer(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        trainer.fit(resume=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "training.steps must be a positive integer"),
        ({"batch_size": 10, "accumulation": 4}, "divisible by training.accumulation"),
        ({"schedule": "step"}, "training.schedule must be one of"),
        ({"precision": "fp8"}, "training.precision must be one of"),
        ({"warmup_steps": 5000}, "training.warmup_steps must be in 0..steps"),
    ],
)
def test_training_config_names_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**changes)
