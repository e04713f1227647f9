"""An ``EncoderDecoder`` exported as prefill (encoder, start token, cross-attention cache) and step graphs (once
for the module): logits and caches equal PyTorch's, beam-4 n-best lists are identical, and ``translate --runtime
onnx`` prints what ``translate`` prints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_export import needs_onnx, translator_dir

from multihead.cli.main import main
from multihead.generation import DecodingState, GenerationConfig, generate

needs_onnx()

SOURCES = [[6, 7, 8, 9, 10, 5], [11, 12, 5], [13, 6, 14, 15, 5], [16, 5]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from multihead.export import export_onnx

    root = tmp_path_factory.mktemp("seq2seq")
    model_dir = translator_dir(root / "model")
    return model_dir, export_onnx(model_dir, root / "onnx")


def test_prefill_caches_and_steps_equal_pytorch(exported: tuple[Path, Path]) -> None:
    from multihead.export import OnnxDecodingState, load_onnx
    from multihead.model_dir import load_model_dir

    model_dir, out = exported
    model = load_model_dir(model_dir).model
    graphs = load_onnx(out, threads=1)
    with torch.inference_mode():
        theirs = DecodingState(model, SOURCES, max_new_tokens=8, use_cache=True, bos_id=4, pad_id=0)
        ours = OnnxDecodingState(graphs, SOURCES, max_new_tokens=8, bos_id=4, pad_id=0)
        expected, got = theirs.prefill(), ours.prefill()
        assert theirs.cache is not None and theirs.cache.cross_attention is not None
        for layer, cache in enumerate(theirs.cache.cross_attention):
            keys, values = cache.cached()  # (N, H, S, Dh)
            torch.testing.assert_close(torch.from_numpy(ours.cross[2 * layer]), keys, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(torch.from_numpy(ours.cross[2 * layer + 1]), values, atol=1e-4, rtol=1e-4)
        for step in range(8):
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4, msg=f"logits at step {step}")
            chosen = expected.argmax(dim=-1)
            if step == 3:  # beams reorder rows: both states must follow
                index = torch.tensor([3, 0, 0, 2])
                theirs.select(index)
                ours.select(index)
                chosen = chosen.index_select(0, index)
            if step < 7:
                expected, got = theirs.advance(chosen), ours.advance(chosen)
        keys, _ = theirs.cache.self_attention[1].cached()
        torch.testing.assert_close(torch.from_numpy(ours.cache[2]), keys, atol=1e-4, rtol=1e-4)


def test_beam_4_n_best_lists_are_identical(exported: tuple[Path, Path]) -> None:
    from multihead.export import generate_onnx, load_onnx
    from multihead.model_dir import load_model_dir

    model_dir, out = exported
    config = GenerationConfig(max_new_tokens=12, num_beams=4, num_return_sequences=4, bos_id=4, eos_id=5, pad_id=0)
    expected = generate(load_model_dir(model_dir).model, SOURCES, config)
    got = generate_onnx(load_onnx(out, threads=1), SOURCES, config)
    for mine, theirs in zip(got, expected, strict=True):
        assert [h.tokens for h in mine] == [h.tokens for h in theirs]
        assert [h.finished for h in mine] == [h.finished for h in theirs]
        assert [h.score for h in mine] == pytest.approx([h.score for h in theirs], abs=1e-4)
    assert len({tuple(h.tokens) for hypotheses in expected for h in hypotheses}) > 8  # no degenerate repeats


def test_translate_command_with_the_onnx_runtime(exported: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
                                                 ) -> None:
    model_dir, out = exported
    arguments = ["a dog runs on the beach", "two men sit", "--max-new-tokens", "6"]
    assert main(["translate", str(model_dir), *arguments]) == 0
    expected = capsys.readouterr().out
    assert main(["translate", str(out), *arguments, "--runtime", "onnx"]) == 0
    assert capsys.readouterr().out == expected and len(expected.splitlines()) == 2
    assert main(["summarize", str(out), "a girl reads a book", "--max-new-tokens", "6", "--runtime", "onnx",
                 "--num-beams", "1", "--stream"]) == 0
    streamed = capsys.readouterr().out.strip()
    assert main(["translate", str(model_dir), "a girl reads a book", "--max-new-tokens", "6", "--num-beams", "1"]) == 0
    assert capsys.readouterr().out.strip() == streamed.splitlines()[-1]


def test_the_translation_speed_benchmark_runs_end_to_end(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """``benchmarks/translate_speed.py`` on the tiny translator (Marian's layout), its ONNX export reused."""
    import importlib.util
    import subprocess
    import sys

    from tiny_export import SENTENCES

    model_dir, out = exported
    (tmp_path / "source.txt").write_text("\n".join(SENTENCES) + "\n")
    (tmp_path / "references.txt").write_text("\n".join(SENTENCES[::-1]) + "\n")
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "translate_speed.py"
    result = subprocess.run([sys.executable, str(script), str(model_dir), "--source", str(tmp_path / "source.txt"),
                             "--references", str(tmp_path / "references.txt"), "--batch-size", "4",
                             "--max-new-tokens", "6", "--onnx-dir", str(out), "--work", str(tmp_path / "work")],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line[:26].strip(): line for line in result.stdout.splitlines()}
    assert rows["ours fp32"].split()[-2:] == ["6/6", "1.00x"] and "threads" in result.stdout
    assert rows["onnxruntime fp32"].split()[-2] == "6/6"  # the same graphs, the same beams
    assert rows["transformers generate"].split()[-2] == "6/6"  # Marian's layout holds the model exactly
    assert "ours int8 (weight-only)" in rows and "ours int8 (dynamic)" in rows
    assert rows["ours bf16"].split()[-2] == "6/6"  # the wide tiny model's choices are far from bfloat16's rounding
    if importlib.util.find_spec("ctranslate2") is None:
        assert "CTranslate2 skipped: pip install ctranslate2" in result.stdout
    else:
        assert rows["CTranslate2 fp32"].split()[-2] == "6/6"
