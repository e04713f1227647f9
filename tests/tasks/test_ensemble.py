"""Ensembles of Transformer classifiers: the averaging, the model directory, and training with members."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from multihead.experiment import build_experiment
from multihead.model_dir import load_model_dir, save_model_dir
from multihead.models import SequenceClassifier, TransformerConfig
from multihead.models.ensemble import ClassifierEnsemble
from multihead.tasks.classification import predict, train_classifier
from multihead.tasks.ensemble import train_ensemble

CONFIG = TransformerConfig.preset("tiny", vocab_size=40, pad_id=0, d_model=16, n_heads=2, n_layers=1, d_ff=32)


def _members(count: int, seed: int = 0) -> list[SequenceClassifier]:
    torch.manual_seed(seed)
    return [SequenceClassifier(CONFIG, n_classes=3, pooling="mean").eval() for _ in range(count)]


def test_output_is_the_log_of_the_mean_probability_in_float64() -> None:
    members = _members(3)
    ensemble = ClassifierEnsemble.from_members(members).eval()
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    with torch.no_grad():
        expected = torch.stack([m(ids).double().softmax(-1) for m in members]).mean(0)  # (B, C)
        got = ensemble(ids)
    torch.testing.assert_close(got.double().exp(), expected, rtol=1e-6, atol=1e-7)
    assert got.argmax(-1).tolist() == expected.argmax(-1).tolist()


def test_members_are_copies_not_shared() -> None:
    members = _members(2)
    ensemble = ClassifierEnsemble.from_members(members)
    with torch.no_grad():
        members[0].classifier.weight.add_(1.0)
    assert not torch.equal(ensemble.members[0].classifier.weight, members[0].classifier.weight)


def test_mismatched_members_are_refused() -> None:
    other = SequenceClassifier(CONFIG, n_classes=2, pooling="mean")
    with pytest.raises(ValueError, match="member 1 differs"):
        ClassifierEnsemble.from_members([_members(1)[0], other])
    with pytest.raises(ValueError, match="at least one member"):
        ClassifierEnsemble.from_members([])
    with pytest.raises(ValueError, match="size >= 1"):
        ClassifierEnsemble(CONFIG, n_classes=2, size=0)


def test_model_directory_round_trip(tmp_path: Path) -> None:
    ensemble = ClassifierEnsemble.from_members(_members(2)).eval()
    save_model_dir(tmp_path / "ens", model=ensemble)
    loaded = load_model_dir(tmp_path / "ens")
    assert isinstance(loaded.model, ClassifierEnsemble) and len(loaded.model.members) == 2
    assert loaded.config["architecture_args"] == {"n_classes": 3, "pooling": "mean", "size": 2}
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), ensemble(ids), rtol=0, atol=0)


def _write_split(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    good, bad = ["fine", "great", "superb", "lovely"], ["awful", "dull", "poor", "weak"]
    filler = ["the", "film", "was", "a", "story", "plot", "with", "cast"]
    lines = ["text\tlabel"]
    for _ in range(rows):
        label = rng.choice(["pos", "neg"])
        words = [*rng.choices(filler, k=rng.randint(3, 8)), rng.choice(good if label == "pos" else bad)]
        rng.shuffle(words)
        lines.append(f"{' '.join(words)}\t{label}")
    path.write_text("\n".join(lines) + "\n")


def _experiment(tmp_path: Path, ensemble: int, seed: int, output: str) -> dict:
    for name, rows, seed_ in (("train", 96, 1), ("test", 40, 2)):
        _write_split(tmp_path / f"{name}.tsv", rows, seed_)
    return {
        "task": "classification", "output_dir": str(tmp_path / output),
        "data": {"train": str(tmp_path / "train.tsv"), "test": str(tmp_path / "test.tsv"), "max_length": 16,
                 "validation_fraction": 0.25},
        "tokenizer": {"kind": "word", "vocab_size": 100},
        "model": {"preset": "tiny", "d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "ensemble": ensemble},
        "training": {"steps": 6, "batch_size": 8, "eval_every": 3, "lr": 3e-3, "seed": seed, "progress": False},
    }


def test_members_equal_single_runs_and_the_ensemble_is_saved_and_reported(tmp_path: Path) -> None:
    result = train_ensemble(build_experiment(_experiment(tmp_path, 2, 7, "ens")), log=lambda _: None)
    # member i is exactly the single run with seed 7 + i on the same held-out split (split seed 7)
    for index in range(2):
        single = _experiment(tmp_path, 1, 7 + index, f"single{index}")
        single["data"]["split_seed"] = 7
        train_classifier(build_experiment(single), log=lambda _: None)
        member = load_file(str(tmp_path / "ens" / "members" / str(index) / "best" / "model.safetensors"))
        alone = load_file(str(tmp_path / f"single{index}" / "best" / "model.safetensors"))
        assert member.keys() == alone.keys() and all(torch.equal(member[k], alone[k]) for k in member)
        assert not (tmp_path / "ens" / "members" / str(index) / "test_metrics.json").exists()  # members never see test
    best = tmp_path / "ens" / "best"
    saved = json.loads((best / "config.json").read_text())
    assert saved["architecture"] == "ClassifierEnsemble" and len(saved["ensemble"]["members"]) == 2
    assert result.test_report is not None and result.test_report["examples"] == 40
    saved_test = json.loads((tmp_path / "ens" / "test_metrics.json").read_text())
    assert saved_test["accuracy"] == result.test_report["accuracy"]
    predictions = predict(best, ["a superb film", "a dull plot"])
    assert all(abs(sum(p.probabilities.values()) - 1.0) < 1e-5 for p in predictions)


def test_resume_skips_finished_members(tmp_path: Path) -> None:
    values = _experiment(tmp_path, 2, 3, "ens")
    train_ensemble(build_experiment(values), log=lambda _: None)
    weights = tmp_path / "ens" / "members" / "0" / "best" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    messages: list[str] = []
    train_ensemble(build_experiment(values), resume=True, log=messages.append)
    assert weights.stat().st_mtime_ns == before
    assert sum("finished earlier" in m for m in messages) == 2


@pytest.mark.parametrize(("change", "message"), [
    ({"model": {"ensemble": 0}}, "whole number >= 1"),
    ({"model": {"ensemble": 2, "architecture": "textcnn"}}, "Transformer classifiers"),
    ({"task": "language-model", "model": {"ensemble": 2}}, "Transformer classifiers"),
])
def test_bad_ensemble_settings_are_named(tmp_path: Path, change: dict, message: str) -> None:
    values = _experiment(tmp_path, 1, 0, "x")
    values["model"] = {"preset": "tiny"}
    values.update({key: value for key, value in change.items() if key != "model"})
    values["model"].update(change.get("model", {}))
    with pytest.raises(ValueError, match=message):
        build_experiment(values)
