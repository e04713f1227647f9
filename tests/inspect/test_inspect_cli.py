"""``multihead inspect`` in-process on tiny saved models: a classifier, a language model, a translation model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from multihead import DecoderLM, EncoderDecoder, SequenceClassifier, TransformerConfig
from multihead.cli import main
from multihead.data import LabelVocab
from multihead.inspect import attention_for_text
from multihead.model_dir import save_model_dir
from multihead.tokenizers import Tokenizer

pytest.importorskip("matplotlib", reason="the pictures need matplotlib (pip install matplotlib)")

TEXTS = ["a dog runs in the park", "two men sit on a bench", "a funny film about a dog", "the park is green"]


def _tokenizer() -> Tokenizer:
    return Tokenizer.train_from_texts(TEXTS, kind="word", vocab_size=100, min_frequency=1)


def _config(tokenizer: Tokenizer, **overrides: object) -> TransformerConfig:
    options: dict[str, object] = {"vocab_size": tokenizer.vocab_size, "d_model": 16, "n_heads": 2, "n_layers": 2,
                                  "d_ff": 32, "dropout": 0.0, "max_length": 32, "pad_id": tokenizer.pad_id}
    options.update(overrides)
    return TransformerConfig(**options)  # type: ignore[arg-type]


def _read(folder: Path) -> dict:
    return json.loads((folder / "statistics.json").read_text(encoding="utf-8"))


def test_inspect_a_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = _tokenizer()
    torch.manual_seed(0)
    model_dir = save_model_dir(tmp_path / "clf", model=SequenceClassifier(_config(tokenizer), n_classes=2).eval(),
                               tokenizer=tokenizer, labels=LabelVocab(["negative", "positive"]))
    out = tmp_path / "out"
    assert main(["inspect", str(model_dir), "a funny film", "--out", str(out), "--html", "--rollout"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("a funny film  ->  ") and "wrote" in printed
    report = _read(out)
    assert report["tokens"]["encoder"][1:4] == ["a", "funny", "film"]
    assert len(report["rollout"]["flow"]) == len(report["tokens"]["encoder"])
    for name in ("heads-encoder-self.png", "heads-encoder-self.svg", "statistics.png", "rollout.png",
                 "attention.html"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "alignment.png").exists()
    assert main(["inspect", str(model_dir), "a dog", "--out", str(tmp_path / "one"), "--layers", "1",
                 "--heads", "1"]) == 0
    one = _read(tmp_path / "one")
    assert one["heads"] == [1] and one["statistics"][0]["layers"] == [1]


def test_inspect_a_language_model(tmp_path: Path) -> None:
    tokenizer = _tokenizer()
    torch.manual_seed(1)
    model_dir = save_model_dir(tmp_path / "lm", model=DecoderLM(_config(tokenizer)).eval(), tokenizer=tokenizer)
    out = tmp_path / "out"
    assert main(["inspect", str(model_dir), "a dog runs", "--out", str(out), "--max-new-tokens", "3"]) == 0
    report = _read(out)
    tokens = report["tokens"]["decoder"]
    assert tokens[:3] == ["a", "dog", "runs"] and 3 <= len(tokens) <= 6
    assert (out / "heads-decoder-self.png").is_file()


def test_inspect_a_translation_model_during_generation_and_teacher_forced(tmp_path: Path) -> None:
    tokenizer = _tokenizer()
    torch.manual_seed(2)
    model = EncoderDecoder(_config(tokenizer, n_decoder_layers=1, max_length=8)).eval()
    model_dir = save_model_dir(tmp_path / "mt", model=model, tokenizer=tokenizer)
    common = ["--num-beams", "2", "--max-new-tokens", "6", "--rollout"]
    assert main(["inspect", str(model_dir), "a dog runs", "--out", str(tmp_path / "gen"), *common]) == 0
    assert main(["inspect", str(model_dir), "a dog runs", "--out", str(tmp_path / "tf"), *common,
                 "--teacher-forced"]) == 0
    during, forced = _read(tmp_path / "gen"), _read(tmp_path / "tf")
    assert during["tokens"]["encoder"] == ["a", "dog", "runs", "[EOS]"]
    assert [g["kind"] for g in during["statistics"]] == ["self", "self", "cross"]
    assert (tmp_path / "gen" / "alignment.png").is_file() and during["rollout"]["stack"] == "encoder"
    rows = len(during["tokens"]["decoder"])  # this output ends at max_new_tokens: its last token is never fed,
    assert forced["tokens"]["decoder"][:rows] == during["tokens"]["decoder"]  # a teacher-forced pass has its row
    assert len(forced["tokens"]["decoder"]) == rows + 1
    generated = attention_for_text(model_dir, "a dog runs", num_beams=2, max_new_tokens=6)
    teacher = attention_for_text(model_dir, "a dog runs", num_beams=2, max_new_tokens=6, teacher_forced=True)
    assert set(generated.weights) == set(teacher.weights)
    for site, weights in generated.weights.items():
        shared = teacher.weights[site][:, : weights.shape[1], : weights.shape[2]]
        torch.testing.assert_close(weights, shared, rtol=1e-4, atol=1e-5, msg=site.name)


def test_inspect_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = _tokenizer()
    model_dir = save_model_dir(tmp_path / "clf", model=SequenceClassifier(_config(tokenizer), n_classes=2).eval(),
                               tokenizer=tokenizer, labels=LabelVocab(["no", "yes"]))
    assert main(["inspect", str(model_dir), "a dog", "--out", str(tmp_path / "x"), "--layers", "5"]) == 2
    assert "multihead inspect: error: layer 5 does not exist; expected 0..1" in capsys.readouterr().err
    assert main(["inspect", str(model_dir), "a dog", "--out", str(tmp_path / "y"), "--layers", "1", "--rollout"]) == 2
    assert "--rollout needs every layer and head" in capsys.readouterr().err


def test_an_ensemble_points_to_its_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from multihead.models.ensemble import ClassifierEnsemble

    tokenizer = _tokenizer()
    ensemble = ClassifierEnsemble(_config(tokenizer), n_classes=2, size=2).eval()
    model_dir = save_model_dir(tmp_path / "run" / "best", model=ensemble, tokenizer=tokenizer,
                               labels=LabelVocab(["no", "yes"]))
    assert main(["inspect", str(model_dir), "a dog", "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert "an ensemble of classifiers" in error and str(tmp_path / "run" / "members" / "0" / "best") in error
