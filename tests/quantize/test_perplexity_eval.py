"""``multihead eval MODEL TEXT --window N`` on a GGUF language model (no recorded data split) and on its quantized
model directory: perplexity equals a plain float64 computation over the same non-overlapping windows."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from multihead.cli.main import main
from multihead.model_dir import save_model_dir
from multihead.quantize import quantize_model
from multihead.tasks.text_generator import evaluate_language_model, load_text_generator

pytest.importorskip("gguf", reason="GGUF files need the gguf package (pip install gguf)")
pytest.importorskip("transformers", reason="the tiny GGUF file is written from a transformers model")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))

TEXT = "the cat sat on the mat. the hen ate the seed; a star shone on the sea and the rest ran in.\n" * 3


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from gguf_tiny import hf_model, write_gguf

    folder = tmp_path_factory.mktemp("eval")
    (folder / "text.txt").write_text(TEXT)
    return write_gguf(folder / "tiny.gguf", hf_model(intermediate_size=64), quant="Q4_1"), folder / "text.txt"


def reference_loss(model: torch.nn.Module, ids: list[int], window: int) -> float:
    """Mean next-token cross-entropy over consecutive windows of ``window`` inputs, in float64."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start:start + window + 1]
            logits = model(torch.tensor([chunk[:-1]]))[0].double()  # (L, V)
            total += float(-logits.log_softmax(-1).gather(1, torch.tensor(chunk[1:])[:, None]).sum())
            count += len(chunk) - 1
    return total / count


def test_eval_of_a_gguf_file_and_its_quantized_directory(files: tuple[Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    gguf_file, text = files
    generator = load_text_generator(gguf_file)
    ids = generator.tokenizer.encode(TEXT, add_special_tokens=False)
    assert main(["eval", str(gguf_file), str(text), "--window", "16"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["window"] == 16 and report["tokens"] == len(ids)
    expected = reference_loss(generator.model, ids, 16)
    assert math.isclose(report["loss"], expected, rel_tol=1e-5)
    assert math.isclose(report["perplexity"], math.exp(expected), rel_tol=1e-5)

    quantized = quantize_model(generator.model, bits=8)
    directory = save_model_dir(tmp_path / "int8", model=quantized, tokenizer=generator.tokenizer,
                               extra={"task": "language-model"})
    scores = evaluate_language_model(directory, file=text, window=16)
    # windows batched together take the float32 fallback, one window alone the bfloat16 kernel: 1e-3 apart
    assert math.isclose(scores["loss"], reference_loss(quantized, ids, 16), rel_tol=2e-3)
    assert abs(scores["loss"] - expected) < 0.05 * expected


def test_window_errors_are_one_line(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gguf_file, text = files
    assert main(["eval", str(gguf_file), str(text), "--window", "100000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("multihead eval: error: window must be a whole number of tokens from 2 to the model's "
                          "context 128") and len(err.splitlines()) == 1
