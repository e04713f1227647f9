"""A ``DecoderLM`` (rope, grouped-query attention, RMSNorm, SwiGLU) exported as prefill and step graphs (once for
the module): the prefill's logits and key/value cache and 16 cached steps equal PyTorch's, and the onnxruntime
generation loop picks the same tokens as ``generate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_export import language_model_dir, needs_onnx

from multihead.cli.main import main
from multihead.generation import DecodingState, GenerationConfig, generate

needs_onnx()

PROMPTS = [[6, 7, 8, 9, 10], [11, 12], [13, 6, 14]]  # left-padded together: rows 1 and 2 carry padding


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from multihead.export import export_onnx

    root = tmp_path_factory.mktemp("lm")
    model_dir = language_model_dir(root / "model")
    return model_dir, export_onnx(model_dir, root / "onnx")


def test_prefill_and_16_cached_steps_equal_pytorch(exported: tuple[Path, Path]) -> None:
    from multihead.export import OnnxDecodingState, load_onnx
    from multihead.model_dir import load_model_dir

    model_dir, out = exported
    model = load_model_dir(model_dir).model
    graphs = load_onnx(out, threads=1)
    assert graphs.manifest["graphs"]["step"]["inputs"][:4] == ["ids", "mask", "position_ids", "past.0.key"]
    with torch.inference_mode():
        theirs = DecodingState(model, PROMPTS, max_new_tokens=16, use_cache=True, bos_id=None, pad_id=0)
        ours = OnnxDecodingState(graphs, PROMPTS, max_new_tokens=16, bos_id=None, pad_id=0)
        expected, got = theirs.prefill(), ours.prefill()
        tokens: list[list[int]] = []
        for step in range(16):
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4, msg=f"logits at step {step}")
            assert theirs.cache is not None
            for layer, cache in enumerate(theirs.cache.self_attention):
                keys, values = cache.cached()  # (N, Hkv, L, Dh)
                torch.testing.assert_close(torch.from_numpy(ours.cache[2 * layer]), keys, atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(torch.from_numpy(ours.cache[2 * layer + 1]), values, atol=1e-4, rtol=1e-4)
            chosen = expected.argmax(dim=-1)
            assert torch.equal(got.argmax(dim=-1), chosen)
            tokens.append(chosen.tolist())
            if step < 15:
                expected, got = theirs.advance(chosen), ours.advance(chosen)
    assert len({token for row in tokens for token in row}) > 3  # the wide weights give varied tokens


@pytest.mark.parametrize("options", [{"max_new_tokens": 16},
                                     {"max_new_tokens": 12, "do_sample": True, "top_k": 5, "seed": 7,
                                      "num_return_sequences": 2},
                                     {"max_new_tokens": 10, "num_beams": 3, "num_return_sequences": 3, "eos_id": 5}])
def test_generation_on_onnxruntime_equals_generate(exported: tuple[Path, Path], options: dict[str, object]) -> None:
    from multihead.export import generate_onnx, load_onnx
    from multihead.model_dir import load_model_dir

    model_dir, out = exported
    config = GenerationConfig(**options)  # type: ignore[arg-type]
    expected = generate(load_model_dir(model_dir).model, PROMPTS, config, batch_size=2)
    got = generate_onnx(load_onnx(out, threads=1), PROMPTS, config, batch_size=2)  # the same batches
    for mine, theirs in zip(got, expected, strict=True):
        assert [h.tokens for h in mine] == [h.tokens for h in theirs]
        assert [h.score for h in mine] == pytest.approx([h.score for h in theirs], abs=1e-4)


def test_generate_command_with_the_onnx_runtime(exported: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    model_dir, out = exported
    assert json.loads((out / "onnx.json").read_text())["layers"] == 2
    arguments = ["--prompt", "a dog runs", "--max-new-tokens", "8"]
    assert main(["generate", str(model_dir), *arguments]) == 0
    expected = capsys.readouterr().out
    assert main(["generate", str(out), *arguments, "--runtime", "onnx"]) == 0
    assert capsys.readouterr().out == expected and expected.startswith("a dog runs")
    assert main(["generate", str(out), *arguments, "--runtime", "onnx", "--stream"]) == 0
    assert capsys.readouterr().out.strip() == expected.splitlines()[0]
