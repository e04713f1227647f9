"""GGUF files in: tiny ``llama``, ``mistral`` and ``qwen2`` files written the way llama.cpp's converter writes them
(rotary rows permuted, weights F32, F16, Q8_0, Q4_0, Q4_1, Q5_1) load into a ``DecoderLM`` that computes what the
``transformers`` model they came from computes (with its weights as stored); ``transformers``' own GGUF reader agrees
on model and tokenizer; damaged or unsupported files fail with one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gguf_tiny import VOCAB, hf_model, roundtrip, write_gguf

from multihead.cli import main
from multihead.errors import CheckpointError
from multihead.generation import GenerationConfig, generate
from multihead.interop import load_pretrained
from multihead.interop.gguf import load_gguf, read_gguf, unpermute_rotary
from multihead.interop.gguf_tokenizer import tokenizer_from_gguf
from multihead.model_dir import load_model_dir
from multihead.tasks.text_generator import load_text_generator

ATOL = 1e-5
PROMPTS = [[40, 90, 100, 71, 80, 5], [60, 61, 62], [100, 101, 102, 103, 104, 7, 8, 9]]
CASES: dict[str, tuple[str, str, str, dict[str, Any]]] = {  # name: (transformers class, arch, storage, options)
    "llama-f32-gqa-tied": ("LlamaForCausalLM", "llama", "F32", {}),
    "llama-q8_0-untied-theta": ("LlamaForCausalLM", "llama", "Q8_0", {"tie_word_embeddings": False,
                                                                      "rope_theta": 100000.0}),
    "llama-q4_1-mha": ("LlamaForCausalLM", "llama", "Q4_1", {"num_key_value_heads": 4}),
    "mistral-f16": ("MistralForCausalLM", "mistral", "F16", {"sliding_window": None}),
    "qwen2-q4_0-biases": ("Qwen2ForCausalLM", "qwen2", "Q4_0", {"rope_theta": 1e6}),
    "qwen2-q5_1-untied": ("Qwen2ForCausalLM", "qwen2", "Q5_1", {"tie_word_embeddings": False}),
}


_BUILT: dict[str, tuple[Any, Any, Path]] = {}


def built(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    """``(LoadedGGUF, the transformers model as stored, the file)`` of case ``name``, built once per module."""
    if name not in _BUILT:
        kind, arch, storage, options = CASES[name]
        reference = hf_model(kind, **options)
        embedding = "Q8_0" if storage.startswith("Q4") else None
        path = write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", reference, arch=arch, quant=storage,
                          embedding_quant=embedding)
        _BUILT[name] = load_gguf(path), roundtrip(reference, storage, embedding), path
    return _BUILT[name]


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    return built(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=["llama-q8_0-untied-theta", "qwen2-q4_0-biases"])
def converted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    """Two of the cases (one per layout of q/k rows), for the slower conversion tests."""
    return built(request.param, tmp_path_factory)


def test_logits_and_hidden_states_equal_the_stored_model(pair: tuple[Any, Any, Path]) -> None:
    loaded, reference, _ = pair
    assert loaded.model.config.rope_theta == reference.config.rope_parameters["rope_theta"]
    assert loaded.model.config.tie_embeddings == reference.config.tie_word_embeddings
    ids = torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = reference(ids, output_hidden_states=True)
        torch.testing.assert_close(loaded.model.decoder(ids), output.hidden_states[-1], atol=ATOL, rtol=0)
        torch.testing.assert_close(loaded.model(ids), output.logits, atol=ATOL, rtol=0)


def test_greedy_continuations_equal_generate(pair: tuple[Any, Any, Path]) -> None:
    loaded, reference, _ = pair
    expected = []
    for prompt in PROMPTS:
        with torch.no_grad():
            ones = torch.ones(1, len(prompt), dtype=torch.long)  # no position is padding
            out = reference.generate(torch.tensor([prompt]), attention_mask=ones, do_sample=False, max_new_tokens=8,
                                     eos_token_id=None, pad_token_id=2)
        expected.append(out[0, len(prompt):].tolist())
    config = GenerationConfig(max_new_tokens=8, eos_id=None, pad_id=2)
    assert [hypotheses[0].tokens for hypotheses in generate(loaded.model, PROMPTS, config)] == expected


def test_tokenizer_roles_and_chat_template(pair: tuple[Any, Any, Path]) -> None:
    tokenizer = pair[0].tokenizer
    assert tokenizer.special_tokens == {"bos": "<|im_start|>", "eos": "<|im_end|>", "unk": "<|endoftext|>",
                                        "pad": "<|im_end|>"}
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (1, 2, 2)
    assert pair[0].generation_config == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    text = "<|im_start|>user\nthe ther 2024<|im_end|>"
    ids = tokenizer.encode(text)
    assert ids[0] == 1 and ids[-1] == 2 and tokenizer.token_to_id("Ġthe") in ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    assert tokenizer.chat_template is not None and pair[0].chat_template == tokenizer.chat_template


def test_transformers_reads_the_same_file_alike(tmp_path: Path) -> None:
    """``transformers``' own GGUF loader (model and tokenizer) on one of these files: the writer's layout is the
    real one, and we agree with an implementation we did not write."""
    transformers = pytest.importorskip("transformers")
    path = write_gguf(tmp_path / "tiny.gguf", hf_model(), quant="Q8_0")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    loaded = load_gguf(path)
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), theirs.eval()(ids).logits, atol=ATOL, rtol=0)
    for text in ["the other theater", " 1234 ab\n\n  x", "<|im_start|>hi there<|im_end|>", "naïve Ünïcode ✓"]:
        assert loaded.tokenizer.encode(text) == their_tokenizer(text)["input_ids"]


def test_unpermute_rotary_inverts_llama_cpp_permutation() -> None:
    weight = torch.arange(4 * 8 * 3, dtype=torch.float32).reshape(32, 3)  # 4 heads of width 8
    permuted = weight.reshape(4, 2, 4, 3).transpose(1, 2).reshape(32, 3)  # llama.cpp's permute
    torch.testing.assert_close(unpermute_rotary(permuted, 4), weight, atol=0, rtol=0)


def test_convert_writes_a_model_directory_that_generates_alike(
    converted: tuple[Any, Any, Path], tmp_path: Path
) -> None:
    loaded, _, path = converted
    out = tmp_path / "converted"
    assert main(["convert", str(path), str(out)]) == 0
    saved = load_model_dir(out)
    assert saved.config["task"] == "language-model" and saved.config["converted_from"]["format"] == "gguf"
    assert saved.tokenizer.special_tokens == loaded.tokenizer.special_tokens
    assert saved.tokenizer.chat_template == loaded.tokenizer.chat_template
    assert json.loads((out / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"
    ids = torch.tensor(PROMPTS[2:])
    with torch.no_grad():
        torch.testing.assert_close(saved.model(ids), loaded.model(ids), atol=0, rtol=0)
    generator = load_text_generator(path)
    assert generator.generation_config().eos_id == 2 and generator.config["format"] == "gguf"


def test_convert_to_hf_loads_in_transformers(converted: tuple[Any, Any, Path], tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    loaded, _, path = converted
    out = tmp_path / "hf"
    assert main(["convert", str(path), str(out), "--to", "hf"]) == 0
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template == loaded.chat_template
    ids = torch.tensor(PROMPTS[:1])
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, loaded.model(ids), atol=ATOL, rtol=0)


# Damaged and unsupported files: one clear line each.


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("good") / "good.gguf", hf_model(), quant="Q8_0")


def _one_line(error: pytest.ExceptionInfo[Exception], path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_truncated_file(good: Path, tmp_path: Path) -> None:
    for fraction in (0.5, 0.999, 0.01):
        path = tmp_path / f"cut-{fraction}.gguf"
        data = good.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(CheckpointError) as error:
            load_gguf(path)
        assert "truncated" in _one_line(error, path)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(CheckpointError, match="GGUF magic") as error:
        load_gguf(path)
    _one_line(error, path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_gguf(tmp_path / "absent.gguf")


def test_unknown_architecture(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "gemma.gguf", hf_model(), arch="gemma2")
    with pytest.raises(CheckpointError, match=r"GGUF architecture 'gemma2' is not supported; expected one of "
                                              r"\('llama', 'mistral', 'qwen2'\)") as error:
        load_gguf(path)
    _one_line(error, path)


def test_unknown_tensor_type(good: Path, tmp_path: Path) -> None:
    data = bytearray(good.read_bytes())
    name = b"blk.0.attn_q.weight"
    where = data.index(name) + len(name) + 4 + 2 * 8  # after the name: dimension count (u32), 2 dimensions (u64)
    assert int.from_bytes(data[where:where + 4], "little") == 8  # Q8_0
    data[where:where + 4] = (99).to_bytes(4, "little")
    path = tmp_path / "odd.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="unknown storage type") as error:
        load_gguf(path)
    _one_line(error, path)


@pytest.mark.parametrize(("options", "message"), [
    ({"fields": {"llama.feed_forward_length": 48}},
     r"tensor blk.0.ffn_gate.weight has shape \(64, 32\); the metadata's sizes need \(48, 32\)"),
    ({"fields": {"llama.embedding_length": 48, "llama.rope.dimension_count": None}},
     r"token_embd.weight has shape \(32, \d+\) \(GGUF order\), but the metadata says \(48, \d+\)"),
    ({"replace": {"blk.1.attn_k.weight": np.zeros((8, 32), dtype=np.float32)}},
     r"tensor blk.1.attn_k.weight has shape \(8, 32\); the metadata's sizes need \(16, 32\)"),
    ({"drop": ("blk.1.ffn_up.weight",)}, r"missing \['blk.1.ffn_up.weight'\]"),
    ({"fields": {"llama.block_count": 1}}, r"unexpected \['blk.1.attn_k.weight'"),
    ({"fields": {"llama.rope.dimension_count": 4}}, "rope.dimension_count = 4 differs from the head width 8"),
    ({"fields": {"llama.rope.scaling.type": "yarn"}}, r"rotary scaling \(yarn\) is not supported"),
    ({"fields": {"tokenizer.ggml.model": "llama"}}, "tokenizer.ggml.model 'llama' is not supported"),
    ({"fields": {"tokenizer.ggml.eos_token_id": 100000}}, "eos_token_id = 100000 is outside the vocabulary"),
])
def test_metadata_and_tensors_that_do_not_fit(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    path = write_gguf(tmp_path / "bad.gguf", hf_model(), **options)
    with pytest.raises(CheckpointError, match=message) as error:
        load_gguf(path)
    _one_line(error, path)


def test_sizes_over_the_limits_are_refused_before_allocating(tmp_path: Path) -> None:
    from multihead.errors import LimitError

    for key, value, message in (("llama.block_count", 5000, "n_layers = 5,000 is over the limit"),
                                ("llama.context_length", 1 << 30, "max_length = 1,073,741,824 is over the limit")):
        path = write_gguf(tmp_path / f"{value}.gguf", hf_model(), fields={key: value})
        with pytest.raises(LimitError, match=message) as error:
            load_gguf(path)
        _one_line(error, path)


def test_errors_reach_the_cli_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_gguf(tmp_path / "gemma.gguf", hf_model(), arch="gemma2")
    assert main(["generate", str(path), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("multihead generate: error:") and "'gemma2' is not supported" in err
    assert len(err.splitlines()) == 1


def test_package_names_resolve_to_the_gguf_file(good: Path) -> None:
    pretrained = load_pretrained(good)
    assert pretrained.format == "gguf" and pretrained.labels is None
    assert pretrained.config["general.architecture"] == "llama" and "tokenizer.ggml.tokens" not in pretrained.config


def test_inspect_reads_a_gguf_file(good: Path) -> None:
    from multihead.inspect import attention_for_text

    maps = attention_for_text(good, "the other theater", max_new_tokens=3)
    assert maps.heads == (0, 1, 2, 3) and len(maps.layers("decoder", "self")) == 2
    weights = maps.weights[maps.layers("decoder", "self")[0]]  # (H, T, T), causal rows summing to one
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[:2]), atol=1e-5, rtol=0)
    assert bool((weights.triu(diagonal=1) == 0).all())


def test_load_in_bfloat16(good: Path) -> None:
    full, half = load_gguf(good), load_gguf(good, dtype=torch.bfloat16)
    assert {parameter.dtype for parameter in half.model.parameters()} == {torch.bfloat16}
    assert half.model.lm_head.weight is half.model.decoder.embeddings.tokens.weight  # still tied
    ids = torch.tensor([PROMPTS[0]])
    with torch.no_grad():
        torch.testing.assert_close(half.model(ids).float(), full.model(ids), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("pre", ["gpt2", "qwen2", "llama-bpe"])
def test_pre_tokenizers_split_like_transformers(tmp_path: Path, pre: str) -> None:
    """Merges across digits and contractions make the split expressions matter: with ``tokenizer.ggml.pre`` of
    GPT-2, Qwen2 and Llama 3, our ids equal ``transformers``' GGUF tokenizer's."""
    transformers = pytest.importorskip("transformers")
    from gguf_tiny import vocabulary

    tokens, types = vocabulary()
    merges = ["1 2", "12 3", "4 5", "3 4", "Ġ 1", "' s", "' S", "Ċ Ċ", "Ġ Ġ", "ĠĠ Ġ"]
    tokens += ["".join(merge.split()) for merge in merges]
    fields = {"tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types + [1] * 10,
              "tokenizer.ggml.merges": [*merges, "Ġ t", "h e", "Ġt he"]}
    path = write_gguf(tmp_path / "tok.gguf", hf_model(vocab_size=len(tokens)), fields=fields)
    ours = load_gguf(path).tokenizer
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    texts = ["12345 and 123 1234567", "it's THE CAT'S   toy\n\n\nend", "a 12x45  \t 9 1345", "    four spaces"]
    assert [ours.encode(text) for text in texts] == theirs(texts)["input_ids"]
    others = {name: [tokenizer_from_gguf({**load_gguf_fields(path), "tokenizer.ggml.pre": name}, origin="x").encode(
        text) for text in texts] for name in ("gpt2", "qwen2", "llama-bpe") if name != pre}
    assert all(ids != [ours.encode(text) for text in texts] for ids in others.values())  # the choice matters


def load_gguf_fields(path: Path) -> dict[str, Any]:
    return read_gguf(path).fields
