"""llama.cpp's blocks in our formats: Q4_0 and Q4_1 equal ``gguf.quants.dequantize`` exactly, Q8_0 is requantized
within half an int8 step, and ``load_gguf(..., keep_quantized=True)`` keeps a tiny llama's layers quantized."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from multihead.model_dir import load_model_dir, save_model_dir
from multihead.quantize import QuantizedLinear, int4_from_q4_blocks, int8_from_q8_0_blocks, set_backend
from multihead.quantize.formats import dequantize_int4, dequantize_int8

gguf = pytest.importorskip("gguf", reason="GGUF blocks are made with the gguf package (pip install gguf)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))


def weights(rows: int = 24, columns: int = 128, *, seed: int = 0) -> np.ndarray:
    generator = np.random.default_rng(seed)
    array = generator.normal(size=(rows, columns)).astype(np.float32) * np.logspace(-3, 1, rows, dtype=np.float32)[
        :, None]
    array[3] += 5.0  # blocks far from zero
    array[4, :32] = 0.25  # a constant block
    array[5] = 0.0
    return array


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_q4_blocks_equal_gguf_dequantize_exactly(kind: str) -> None:
    array = weights()
    blocks = gguf.quants.quantize(array, gguf.GGMLQuantizationType[kind])  # (rows, 4 * bytes) uint8
    qweight, scales, offsets = int4_from_q4_blocks(torch.from_numpy(blocks), kind, columns=128)
    assert qweight.shape == (24, 64) and scales.shape == offsets.shape == (24, 4)
    expected = torch.from_numpy(gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[kind]))
    assert torch.equal(dequantize_int4(qweight, scales, offsets), expected)


def test_q8_0_is_requantized_per_row_within_half_a_step() -> None:
    array = weights()
    blocks = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
    qweight, scales = int8_from_q8_0_blocks(torch.from_numpy(blocks), columns=128)
    exact = torch.from_numpy(gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q8_0))
    assert qweight.shape == (24, 128) and scales.shape == (24,)
    assert ((dequantize_int8(qweight, scales) - exact).abs() <= scales[:, None] / 2 + 1e-12).all()


def test_rows_of_the_wrong_size_are_refused() -> None:
    blocks = torch.from_numpy(gguf.quants.quantize(weights(), gguf.GGMLQuantizationType.Q4_1))
    with pytest.raises(ValueError, match="Q4_1 rows of 96 values need uint8 rows of 60 bytes"):
        int4_from_q4_blocks(blocks, "Q4_1", columns=96)
    with pytest.raises(ValueError, match="not one of"):
        int4_from_q4_blocks(blocks, "Q5_0", columns=128)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("transformers", reason="the tiny GGUF files are written from a transformers model")
    from gguf_tiny import hf_model, write_gguf

    folder = tmp_path_factory.mktemp("gguf")
    model = hf_model(intermediate_size=64)
    return {kind: write_gguf(folder / f"{kind}.gguf", model, quant=kind, embedding_quant="Q8_0")
            for kind in ("Q4_0", "Q4_1")}


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_load_gguf_keep_quantized_keeps_the_files_weights(tiny_files: dict[str, Path], kind: str,
                                                          tmp_path: Path) -> None:
    from multihead.interop.gguf import load_gguf

    plain = load_gguf(tiny_files[kind]).model
    kept = load_gguf(tiny_files[kind], keep_quantized=True).model
    layers = {name: module for name, module in kept.named_modules() if isinstance(module, QuantizedLinear)}
    assert layers.pop("lm_head").scheme == "int8"  # tied to the Q8_0 token embedding: requantized
    assert len(layers) == 2 * 7 and {module.scheme for module in layers.values()} == {"int4_g32"}
    for name, module in layers.items():  # the file's values exactly, rows of q and k un-permuted as for floats
        assert torch.equal(module.dequantize(), plain.get_submodule(name).weight), name
    assert torch.equal(kept.decoder.embeddings.tokens.weight, plain.decoder.embeddings.tokens.weight)
    ids = torch.randint(3, 267, (2, 12))
    set_backend(kept, "fallback")
    with torch.no_grad():
        expected, got = plain(ids), kept(ids)
        set_backend(kept, "kernel")
        kernel = kept(ids)
    for logits in (got, kernel):
        assert (logits - expected).norm() / expected.norm() < 0.02
        assert (logits.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.9
    save_model_dir(tmp_path / "kept", model=kept)
    loaded = load_model_dir(tmp_path / "kept").model
    assert all(torch.equal(value, loaded.state_dict()[name]) for name, value in kept.state_dict().items())
