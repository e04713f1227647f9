"""``multihead heads`` in-process: importance table and plot, pruning curve, a pruned model that loads and
scores as the curve said; on a labelled file, on the MR data set's splits and on Multi30k sentences."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from multihead.cli import main
from multihead.data import LabelVocab, data_root
from multihead.experiment import load_experiment
from multihead.model_dir import load_model_dir, save_model_dir
from multihead.models import EncoderDecoder, SequenceClassifier, TransformerConfig
from multihead.tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]


def _has(name: str) -> bool:
    try:
        return (data_root() / name).is_dir()
    except FileNotFoundError:
        return False


def needs(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not _has(name), reason=f"../shared/data/{name} is absent; set MULTIHEAD_DATA to "
                              "the folder holding the data sets")


TEXTS = ["a fine warm film", "dull and slow", "a warm funny story", "slow dull mess", "funny and fine",
         "a mess of a film", "warm story", "dull story"] * 3


def classifier_dir(path: Path, texts: list[str], labels: list[str], extra: dict[str, object]) -> Path:
    """An untrained 2-layer, 4-head classifier with a word tokenizer: 8 heads to rank and prune."""
    torch.manual_seed(0)
    tokenizer = Tokenizer.train_from_texts(texts, kind="word", vocab_size=2000, min_frequency=1, lowercase=True)
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                               max_length=64, dropout=0.0, pad_id=tokenizer.pad_id)
    model = SequenceClassifier(config, n_classes=2)
    with torch.no_grad():  # decisive logits, so that accuracy does not hang on rounding
        model.classifier.weight.mul_(50.0)
    return save_model_dir(path, model=model, tokenizer=tokenizer, labels=LabelVocab.from_labels(labels),
                          extra={"task": "classification", **extra})


def test_heads_on_a_labelled_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Writes importance/curve tables and plots; --prune saves a smaller model that ``load_model_dir`` loads
    and ``multihead eval`` scores exactly as ``pruned.json`` reports."""
    labels = ["pos", "neg"] * 12
    data = tmp_path / "data.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in zip(TEXTS, labels, strict=True)))
    model_dir = classifier_dir(tmp_path / "model", TEXTS, labels, {})
    out = tmp_path / "heads"
    assert main(["heads", str(model_dir), str(data), "--out", str(out), "--step", "0.25", "--prune", "0.5",
                 "--speed-rounds", "1"]) == 0
    printed = capsys.readouterr().out
    assert "pruned 8/8 heads" in printed and "tokens/s" in printed
    for name in ("importance.json", "importance.md", "importance.png", "curve.json", "curve.md", "curve.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    importance = json.loads((out / "importance.json").read_text())["importance"]
    assert list(importance) == ["encoder.0.self_attn", "encoder.1.self_attn"]
    for scores in importance.values():
        assert sum(v * v for v in scores.values()) == pytest.approx(1.0, rel=1e-5)
    curve = json.loads((out / "curve.json").read_text())
    assert [step["pruned"] for step in curve["steps"]] == [0, 2, 4, 6, 8]
    assert "| 4 | 50% |" in (out / "curve.md").read_text()
    summary = json.loads((out / "pruned.json").read_text())
    removed = curve["steps"][2]["removed"]
    assert summary["removed"] == removed and summary["heads"] == 4
    loaded = load_model_dir(out / "pruned")
    assert loaded.model.config.pruned_heads == {name: tuple(ids) for name, ids in removed.items()}
    assert summary["metrics"]["data"]["accuracy"] == curve["steps"][2]["metrics"]["data_accuracy"]
    assert main(["eval", str(out / "pruned"), str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == summary["metrics"]["data"]["accuracy"]


def test_heads_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = classifier_dir(tmp_path / "model", TEXTS, ["pos", "neg"] * 12, {})
    assert main(["heads", str(model_dir), "--out", str(tmp_path / "o"), "--prune", "1.5"]) == 2
    assert "--prune must be a fraction of the heads in [0, 1], got 1.5" in capsys.readouterr().err
    assert main(["heads", str(model_dir), "--out", str(tmp_path / "o")]) == 2
    assert "records no experiment" in capsys.readouterr().err


@needs("sentence-polarity")
def test_heads_on_the_mr_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model of the built-in MR data set: heads are chosen on --split validation and scored on test too."""
    experiment = load_experiment(ROOT / "configs" / "sentiment-mr.yaml").to_dict()
    model_dir = classifier_dir(tmp_path / "model", TEXTS, ["positive", "negative"] * 12,
                               {"experiment": experiment})
    out = tmp_path / "heads"
    assert main(["heads", str(model_dir), "--out", str(out), "--split", "validation", "--also-split", "test",
                 "--limit", "40", "--step", "0.5", "--no-recompute"]) == 0
    steps = json.loads((out / "curve.json").read_text())["steps"]
    assert [s["pruned"] for s in steps] == [0, 4, 8]
    assert {"validation_accuracy", "test_accuracy"} <= set(steps[0]["metrics"])
    assert "ranked once" in (out / "curve.md").read_text()
    capsys.readouterr()


@needs("multi30k")
def test_heads_on_multi30k_sentences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A translation model scored by BLEU on source/reference files: self and cross heads are ranked."""
    folder = data_root() / "multi30k"
    lines = {}
    for side in ("en", "de"):
        with gzip.open(folder / f"val.{side}.gz", "rt", encoding="utf-8") as handle:
            lines[side] = [next(handle).strip() for _ in range(6)]
        (tmp_path / f"val.{side}").write_text("\n".join(lines[side]) + "\n")
    tokenizer = Tokenizer.train_from_texts(lines["en"] + lines["de"], kind="word", vocab_size=500, min_frequency=1)
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_heads=2, n_layers=1, d_ff=64,
                               max_length=32, dropout=0.0, pad_id=tokenizer.pad_id)
    model_dir = save_model_dir(tmp_path / "model", model=EncoderDecoder(config), tokenizer=tokenizer,
                               extra={"task": "translation", "experiment": {"data": {"max_target_length": 6}}})
    out = tmp_path / "heads"
    assert main(["heads", str(model_dir), str(tmp_path / "val.en"), "--references", str(tmp_path / "val.de"),
                 "--out", str(out), "--step", "0.5", "--prune", "0.5"]) == 0
    importance = json.loads((out / "importance.json").read_text())["importance"]
    assert list(importance) == ["encoder.0.self_attn", "decoder.0.cross_attn", "decoder.0.self_attn"]
    steps = json.loads((out / "curve.json").read_text())["steps"]
    assert [s["pruned"] for s in steps] == [0, 3, 6] and "data_bleu" in steps[0]["metrics"]
    pruned = load_model_dir(out / "pruned").model
    assert sum(len(ids) for ids in pruned.config.pruned_heads.values()) == 3
    capsys.readouterr()
