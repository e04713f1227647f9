"""Decoding in bfloat16 (``load_seq2seq(..., dtype=)``, ``load_text_generator(..., dtype=)``, ``--dtype``): the
float32 model is the reference. The tiny models' weights are wide, so their choices are far from ties and bfloat16
must pick float32's tokens, with scores within bfloat16's rounding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_export import SENTENCES, language_model_dir, translator_dir

from multihead.cli.main import main
from multihead.errors import ConfigError
from multihead.generation import generate
from multihead.inference_dtype import cast_for_inference
from multihead.tasks.seq2seq_eval import load_seq2seq
from multihead.tasks.text_generator import load_text_generator


@pytest.fixture(scope="module")
def translator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return translator_dir(tmp_path_factory.mktemp("dtype") / "translator")


def test_a_bfloat16_translator_finds_float32s_beams(translator: Path) -> None:
    exact, half = load_seq2seq(translator), load_seq2seq(translator, dtype="bfloat16")
    assert {parameter.dtype for parameter in half.model.parameters()} == {torch.bfloat16}
    assert {parameter.dtype for parameter in exact.model.parameters()} == {torch.float32}
    config = exact.generation_config(num_beams=4, num_return_sequences=2, max_new_tokens=12)
    sources = exact.encode_sources(SENTENCES)
    with torch.inference_mode():
        expected, got = generate(exact.model, sources, config), generate(half.model, sources, config)
    assert [hs[0].tokens for hs in got] == [hs[0].tokens for hs in expected]
    for hypotheses, references in zip(got, expected, strict=True):
        assert isinstance(hypotheses[0].score, float)
        assert hypotheses[0].score == pytest.approx(references[0].score, abs=0.08)  # measured: at most 0.05 apart


def test_translate_dtype_option_prints_the_api_result(translator: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = SENTENCES[:3]
    model = load_seq2seq(translator, dtype=torch.bfloat16)
    expected = model(texts, generation=model.generation_config(max_new_tokens=8))
    assert main(["translate", str(translator), *texts, "--max-new-tokens", "8", "--dtype", "bfloat16"]) == 0
    assert capsys.readouterr().out.splitlines() == expected


def test_a_bfloat16_language_model_generates_float32s_tokens(tmp_path: Path) -> None:
    folder = language_model_dir(tmp_path / "lm")
    exact, half = load_text_generator(folder), load_text_generator(folder, dtype="bfloat16")
    config = exact.generation_config(max_new_tokens=12, num_beams=1)
    assert half([SENTENCES[0]], generation=config) == exact([SENTENCES[0]], generation=config)


@pytest.mark.parametrize(("extra", "message"), [
    (["--runtime", "onnx"], "--dtype bfloat16 runs on the torch runtime"),
    (["--quantized"], "a quantized model decodes with its own int8/int4 arithmetic"),
])
def test_refusals_are_one_line(translator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               extra: list[str], message: str) -> None:
    folder = translator
    if extra == ["--quantized"]:
        assert main(["quantize", str(translator), str(tmp_path / "int8"), "--bits", "8"]) == 0
        folder, extra = tmp_path / "int8", []
    capsys.readouterr()
    assert main(["translate", str(folder), "a dog", "--dtype", "bfloat16", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cast_for_inference_names_what_it_takes() -> None:
    layer = torch.nn.Linear(2, 2)
    assert cast_for_inference(layer, None, where="x") is layer and layer.weight.dtype == torch.float32
    with pytest.raises(ConfigError, match=r"dtype must be one of \['bfloat16', 'float32'\], got 'float16'"):
        cast_for_inference(layer, "float16", where="x")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        cast_for_inference(layer, torch.float64, where="x")
