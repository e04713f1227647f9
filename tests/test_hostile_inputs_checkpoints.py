"""Damaged or mismatched model directories give one line that names the file (and the tensor), never a traceback
and never silently wrong results; the checks run before anything large is allocated."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hostile import classifier_dir, edit_config, fails
from multihead.errors import CheckpointError
from multihead.model_dir import load_model_dir


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return classifier_dir(tmp_path_factory.mktemp("classifier") / "model")


def _weights(model: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(str(model / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})


def _poison(value: float) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(tensors: dict[str, torch.Tensor]) -> None:
        tensors["classifier.bias"] = tensors["classifier.bias"].clone()
        tensors["classifier.bias"][1] = value
    return change


def _truncate(model: Path) -> None:
    path = model / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-40])


def _bad_header(model: Path) -> None:
    (model / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")


def _labels(model: Path) -> None:
    (model / "labels.json").write_text(json.dumps({"labels": ["neg", "neutral", "pos"]}))


DAMAGE: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "truncated weights": (_truncate, ("model.safetensors", "not a readable safetensors file")),
    "empty weights": (lambda m: (m / "model.safetensors").write_bytes(b""), ("not a readable safetensors file",)),
    "garbled header": (_bad_header, ("not a readable safetensors file",)),
    "NaN weight": (lambda m: _weights(m, _poison(float("nan"))), ("'classifier.bias'", "NaN")),
    "infinite weight": (lambda m: _weights(m, _poison(float("inf"))), ("'classifier.bias'", "infinite")),
    "int64 weights": (lambda m: _weights(m, lambda t: t.update({k: v.long() for k, v in t.items()})),
                      ("dtype I64", "floating-point")),
    "other shape": (lambda m: _weights(m, lambda t: t.update({"classifier.weight": torch.zeros(3, 16)})),
                    ("'classifier.weight'", "[3, 16]", "[2, 16]")),
    "missing tensor": (lambda m: _weights(m, lambda t: t.pop("classifier.bias")), ("missing", "classifier.bias")),
    "newer format": (lambda m: edit_config(m, format_version=999), ("format_version 999", "1..1")),
    "architecture_args a list": (lambda m: edit_config(m, architecture_args=[1, 2]), ("architecture_args",)),
    "n_classes a string": (lambda m: edit_config(m, architecture_args={"n_classes": "two"}), ("whole numbers",)),
    "unknown constructor argument": (lambda m: edit_config(m, architecture_args={"n_classes": 2, "heads": 3}),
                                     ("do not build a SequenceClassifier",)),
    "labels of another count": (_labels, ("labels.json", "3 label names for a model of 2 classes")),
    "deeply nested config": (lambda m: (m / "config.json").write_text("[" * 100_000 + "]" * 100_000),
                             ("config.json", "nested too deeply")),
    "config not UTF-8": (lambda m: (m / "config.json").write_bytes(b'{"format": "\xff"}'), ("not UTF-8",)),
    "model 1e9 wide": (lambda m: edit_config(m, model={**json.loads((m / "config.json").read_text())["model"],
                                                       "d_model": 1_000_000_000}),
                       ("d_model = 1,000,000,000", "limit")),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_classifier_is_one_line(damage: str, pristine: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    model = Path(shutil.copytree(pristine, tmp_path / "model"))
    change, says = DAMAGE[damage]
    change(model)
    fails(capsys, ["predict", str(model), "a good film"], says=says)


def test_the_pristine_copy_predicts(pristine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from multihead.cli import main

    assert main(["predict", str(pristine), "a good film", "--json"]) == 0
    probabilities = json.loads(capsys.readouterr().out)["probabilities"]
    assert abs(sum(probabilities.values()) - 1.0) < 1e-5


def test_loading_raises_checkpoint_error_naming_the_tensor(pristine: Path, tmp_path: Path) -> None:
    model = Path(shutil.copytree(pristine, tmp_path / "model"))
    _weights(model, _poison(float("nan")))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'classifier\.bias' holds NaN"):
        load_model_dir(model)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this would have run code",))


def test_a_pickle_that_holds_more_than_tensors_is_refused_in_one_line(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 30, "hidden_size": 16,
                                                    "num_hidden_layers": 1, "num_attention_heads": 2,
                                                    "intermediate_size": 32, "max_position_embeddings": 32}))
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weight": _Evil()}, handle, protocol=2)
    line = fails(capsys, ["convert", str(folder), str(tmp_path / "out"), "--to", "multihead"],
                 says=("pytorch_model.bin", "refused"))
    assert "this would have run code" not in capsys.readouterr().out + line
    assert not (tmp_path / "out").exists()


def test_resuming_after_a_model_size_change_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from multihead.cli import main

    rows = ["text\tlabel"] + [f"{'good fun' if i % 2 else 'bad dull'} film {i % 7}\t{'pos' if i % 2 else 'neg'}"
                              for i in range(40)]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "run.yaml").write_text(
        f"task: classification\noutput_dir: {tmp_path / 'run'}\ndata: {{train: train.tsv, max_length: 8}}\n"
        "tokenizer: {kind: word, vocab_size: 40, min_frequency: 1}\n"
        "model: {preset: tiny, d_model: 16, n_heads: 2, n_layers: 1, d_ff: 32}\n"
        "training: {steps: 2, batch_size: 4, eval_every: 2, progress: false}\n")
    assert main(["train", str(tmp_path / "run.yaml"), "--no-test"]) == 0
    fails(capsys, ["train", str(tmp_path / "run.yaml"), "--resume", "--set", "model.d_model=32"],
          says=("last/model.safetensors", "shape", "--resume needs the settings"))
