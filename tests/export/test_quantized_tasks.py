"""Weight-only int8/int4 (``multihead.quantize``) on the deployed tasks: a quantized translator and a quantized
classifier round-trip through model directories (``multihead quantize``), and translate, summarise and predict
from there exactly as the quantized model in memory does. (How close int8 and int4 stay to float32 is measured on
trained models: ``tests/quantize`` and ``docs/results/deploy.md``.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_export import SENTENCES, classifier_dir, translator_dir

from multihead.cli.main import main
from multihead.errors import ConfigError
from multihead.generation import GenerationConfig, generate
from multihead.model_dir import load_model_dir
from multihead.quantize import QuantizedLinear, quantize_model

SOURCES = [[6, 7, 8, 9, 10, 5], [11, 12, 5], [13, 6, 14, 15, 5], [16, 5]]


@pytest.mark.parametrize(("bits", "activations"), [(8, "none"), (4, "none"), (8, "dynamic")])
def test_a_quantized_translator_round_trips_through_a_model_directory(tmp_path: Path, bits: int, activations: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from multihead.tasks.seq2seq_eval import load_seq2seq

    source = translator_dir(tmp_path / "model")
    assert main(["quantize", str(source), str(tmp_path / "quantized"), "--bits", str(bits),
                 "--activations", activations]) == 0
    capsys.readouterr()
    loaded = load_seq2seq(tmp_path / "quantized")
    layers = [module for module in loaded.model.modules() if isinstance(module, QuantizedLinear)]
    assert layers and not any(type(module) is torch.nn.Linear for module in loaded.model.modules())
    backend = "dynamic" if activations == "dynamic" else "auto"
    assert {module.backend for module in layers} == {backend}
    in_memory = quantize_model(load_model_dir(source).model, bits=bits, backend=backend)  # never saved
    config = GenerationConfig(max_new_tokens=10, num_beams=4, num_return_sequences=4, bos_id=4, eos_id=5, pad_id=0)
    expected = generate(in_memory, SOURCES, config)
    got = generate(loaded.model, SOURCES, config)
    assert [[h.tokens for h in hs] for hs in got] == [[h.tokens for h in hs] for hs in expected]
    assert [[h.score for h in hs] for hs in got] == [[h.score for h in hs] for hs in expected]
    arguments = ["a dog runs on the beach", "two men sit", "--max-new-tokens", "6"]
    in_memory_text = loaded(arguments[:2], generation=loaded.generation_config(max_new_tokens=6))
    assert main(["translate", str(tmp_path / "quantized"), *arguments]) == 0
    assert capsys.readouterr().out.splitlines() == in_memory_text
    assert main(["summarize", str(tmp_path / "quantized"), arguments[0], "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out.splitlines() == in_memory_text[:1]


def test_a_quantized_classifier_predicts_from_its_directory(tmp_path: Path) -> None:
    from multihead.quantize.directory import quantize_model_dir
    from multihead.tasks.classification import predict

    source = classifier_dir(tmp_path / "model")
    quantized = quantize_model_dir(source, tmp_path / "int8", bits=8)
    expected, got = predict(source, SENTENCES), predict(quantized, SENTENCES)
    for mine, theirs in zip(got, expected, strict=True):  # measured: at most 0.003 apart
        assert mine.probabilities == pytest.approx(theirs.probabilities, abs=0.005)
        first, second = sorted(theirs.probabilities.values(), reverse=True)[:2]
        if first - second > 0.01:  # the random classifier's near-ties may flip; clear choices may not
            assert mine.label == theirs.label


def test_a_quantized_model_is_not_exported_to_onnx(tmp_path: Path) -> None:
    from multihead.export import export_onnx
    from multihead.quantize.directory import quantize_model_dir

    quantized = quantize_model_dir(classifier_dir(tmp_path / "model"), tmp_path / "int8", bits=8)
    with pytest.raises(ConfigError, match="quantized model has no ONNX export"):
        export_onnx(quantized, tmp_path / "onnx")
