"""``multihead quantize MODEL_DIR OUT_DIR --bits 8|4``: run in-process on a saved tiny LM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from quantize_models import random_lm

from multihead.cli.main import main
from multihead.model_dir import load_model_dir, save_model_dir
from multihead.quantize import QuantizedLinear, quantize_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return save_model_dir(tmp_path / "lm", model=random_lm(), extra={"task": "language-model"})


def test_quantize_writes_a_quantized_directory(model_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "int4"
    assert main(["quantize", str(model_dir), str(out), "--bits", "4", "--group-size", "64"]) == 0
    assert f"wrote int4 model directory {out}" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "language-model" and config["quantized_from"] == str(model_dir)
    assert config["quantization"]["bits"] == 4 and config["quantization"]["group_size"] == 64
    assert config["quantization"]["modules"]["int8"] == ["lm_head"]
    loaded = load_model_dir(out).model
    same = quantize_model(load_model_dir(model_dir).model, bits=4, group_size=64)  # the Python function's result
    assert sum(isinstance(module, QuantizedLinear) for module in loaded.modules()) == 15
    ids = torch.randint(1, 48, (1, 8))
    with torch.no_grad():
        assert torch.equal(loaded(ids), same(ids))
    assert (out / "model.safetensors").stat().st_size < (model_dir / "model.safetensors").stat().st_size


def test_skip_and_head_bits_options(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    assert main(["quantize", str(model_dir), str(out), "--bits", "8", "--skip", "lm_head",
                 "--skip", "*.feed_forward.*"]) == 0
    modules = json.loads((out / "config.json").read_text())["quantization"]["modules"]
    assert list(modules) == ["int8"] and len(modules["int8"]) == 8  # q, k, v, out of two layers


def test_dynamic_activations_are_recorded_and_restored(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "dynamic"
    assert main(["quantize", str(model_dir), str(out), "--bits", "8", "--activations", "dynamic"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"]["activations"] == "dynamic"
    loaded = load_model_dir(out).model
    assert {module.backend for module in loaded.modules() if isinstance(module, QuantizedLinear)} == {"dynamic"}
    same = quantize_model(load_model_dir(model_dir).model, bits=8, backend="dynamic")
    ids = torch.randint(1, 48, (2, 8))
    with torch.no_grad():
        assert torch.equal(loaded(ids), same(ids))
    weight_only = tmp_path / "weight-only"
    assert main(["quantize", str(model_dir), str(weight_only), "--bits", "8"]) == 0
    assert "activations" not in json.loads((weight_only / "config.json").read_text())["quantization"]


def test_an_unknown_activations_record_is_one_line(model_dir: Path, tmp_path: Path) -> None:
    from multihead.errors import CheckpointError

    out = tmp_path / "dynamic"
    assert main(["quantize", str(model_dir), str(out), "--bits", "8", "--activations", "dynamic"]) == 0
    config = json.loads((out / "config.json").read_text())
    config["quantization"]["activations"] = "static"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"\"activations\" is 'static'; expected one of") as error:
        load_model_dir(out)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--bits", "8", "--group-size", "32"], "group_size applies to int4 only"),
    (["--bits", "4", "--head-bits", "4"], None),  # fine: checked below
])
def test_option_errors_are_one_line(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    arguments: list[str], message: str | None) -> None:
    status = main(["quantize", str(model_dir), str(tmp_path / "out"), *arguments])
    if message is None:
        assert status == 0
        return
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("multihead quantize: error:") and message in err
    assert len(err.splitlines()) == 1


def test_refuses_a_quantized_source_a_missing_one_and_its_own_folder(model_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "int8"
    assert main(["quantize", str(model_dir), str(out), "--bits", "8"]) == 0
    capsys.readouterr()
    for source, target, message in ((out, tmp_path / "again", "already quantized"),
                                    (tmp_path / "nothing", tmp_path / "x", "not found"),
                                    (model_dir, model_dir, "the output directory is the model directory")):
        assert main(["quantize", str(source), str(target), "--bits", "8"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("multihead quantize: error:") and message in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["quantize", str(model_dir), str(out), "--bits", "3"])
