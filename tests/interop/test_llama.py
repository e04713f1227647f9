"""Llama, Qwen2 and Mistral parity: tiny random ``transformers`` models (grouped-query attention, tied and untied
embeddings, a non-default rotary base, q/k/v biases) loaded into our ``DecoderLM`` give the same hidden states and
logits in float32 (padded batches too) and the same greedy outputs as ``generate``; ours saved back with
``save_hf`` load in ``transformers`` and agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hf_tiny import hf_model, left_padded, ours, until_eos

from multihead.errors import CheckpointError
from multihead.generation import GenerationConfig, generate
from multihead.interop import load_hf, save_hf
from multihead.models import DecoderLM, TransformerConfig

transformers = pytest.importorskip("transformers", reason="parity tests compare against Hugging Face transformers")

ATOL = 1e-5
VOCAB = 101
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [20, 21, 22, 23, 24]]  # mixed lengths: left padding
NEW_TOKENS = 10
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-gqa-untied-theta": ("LlamaForCausalLM", {"num_key_value_heads": 2, "rope_theta": 50000.0,
                                                    "tie_word_embeddings": False}),
    "llama-mha-tied": ("LlamaForCausalLM", {"num_key_value_heads": 4, "tie_word_embeddings": True}),
    "llama-biases": ("LlamaForCausalLM", {"num_key_value_heads": 1, "attention_bias": True, "mlp_bias": True}),
    "qwen2-gqa-tied-theta": ("Qwen2ForCausalLM", {"num_key_value_heads": 2, "rope_theta": 1e6,
                                                  "tie_word_embeddings": True}),
    "qwen2-untied": ("Qwen2ForCausalLM", {"num_key_value_heads": 2, "tie_word_embeddings": False}),
    "mistral-gqa": ("MistralForCausalLM", {"num_key_value_heads": 2, "sliding_window": None}),
}


def tiny(kind: str, directory: Path, **overrides: Any) -> Path:
    """A 2-layer random ``kind`` (4 query heads of width 8) saved to ``directory``; weights spread wider than the
    default 0.02 so that next-token choices are clear."""
    values = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
              "num_attention_heads": 4, "max_position_embeddings": 64, "initializer_range": 0.2,
              "rms_norm_eps": 1e-6, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, **overrides}
    theta = values.pop("rope_theta", None)
    config = getattr(transformers, kind.replace("ForCausalLM", "Config"))(**values)
    if theta is not None:
        config.rope_parameters = {"rope_type": "default", "rope_theta": theta}
    torch.manual_seed(0)
    model = getattr(transformers, kind)(config)
    with torch.no_grad():  # biases start at zero: make them matter
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.2)
    model.eval().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[DecoderLM, Any, str]:
    kind, overrides = CASES[request.param]
    directory = tiny(kind, tmp_path_factory.mktemp(request.param), **overrides)
    model = load_hf(directory).model
    assert isinstance(model, DecoderLM)
    return model, hf_model(kind, directory), request.param


def test_config_follows_the_checkpoint(pair: tuple[DecoderLM, Any, str]) -> None:
    model, theirs, name = pair
    config = model.config
    hf = theirs.config
    assert (config.positions, config.norm, config.activation) == ("rope", "rms", "swiglu")
    assert (config.n_kv_heads or config.n_heads) == hf.num_key_value_heads
    assert config.tie_embeddings == hf.tie_word_embeddings
    assert config.rope_theta == hf.rope_parameters["rope_theta"]
    assert config.eps == hf.rms_norm_eps
    assert (model.decoder.layers[0].self_attn.q_proj.bias is not None) == ("qwen2" in name or "biases" in name)
    assert (model.decoder.layers[0].self_attn.out_proj.bias is not None) == ("biases" in name)


def test_hidden_states_and_logits_equal(pair: tuple[DecoderLM, Any, str]) -> None:
    model, theirs, _ = pair
    ids = torch.randint(3, VOCAB, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = theirs(ids, output_hidden_states=True)
        torch.testing.assert_close(model.decoder(ids), output.hidden_states[-1], atol=ATOL, rtol=0)
        torch.testing.assert_close(model(ids), output.logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_logits_equal_unpadded(pair: tuple[DecoderLM, Any, str], side: str) -> None:
    """One padded batch: with the key mask and per-row position ids, every real position's logits equal those of
    the row run alone in ``transformers``."""
    model, theirs, _ = pair
    longest = max(len(prompt) for prompt in PROMPTS)
    ids = torch.zeros(len(PROMPTS), longest, dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for row, prompt in enumerate(PROMPTS):
        where = slice(longest - len(prompt), longest) if side == "left" else slice(0, len(prompt))
        ids[row, where], mask[row, where] = torch.tensor(prompt), True
    positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T): 0 at each row's first real token
    with torch.no_grad():
        logits = model(ids, mask=mask, position_ids=positions)
        for row, prompt in enumerate(PROMPTS):
            expected = theirs(torch.tensor([prompt])).logits[0]
            torch.testing.assert_close(logits[row][mask[row]], expected, atol=ATOL, rtol=0)


def test_greedy_outputs_equal_generate(pair: tuple[DecoderLM, Any, str]) -> None:
    model, theirs, _ = pair
    ids, mask = left_padded(PROMPTS, pad_id=0)
    with torch.no_grad():
        out = theirs.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW_TOKENS,
                              pad_token_id=0, eos_token_id=2)
    expected = until_eos(out[:, ids.shape[1]:], 2)
    assert ours(generate(model, PROMPTS, GenerationConfig(max_new_tokens=NEW_TOKENS, eos_id=2, pad_id=0))) == expected
    assert len({tuple(row) for row in expected}) == len(expected)  # the prompts lead to different outputs


@pytest.mark.parametrize(("options", "kind"), [
    ({"n_kv_heads": 2, "bias": False, "tie_embeddings": False, "rope_theta": 2e5}, "LlamaForCausalLM"),
    ({"n_kv_heads": 1, "bias": False, "qkv_bias": True, "tie_embeddings": True}, "Qwen2ForCausalLM"),
    ({"bias": True, "tie_embeddings": True}, "LlamaForCausalLM"),
])
def test_saved_model_loads_in_transformers_and_agrees(tmp_path: Path, options: dict[str, Any], kind: str) -> None:
    config = TransformerConfig(vocab_size=VOCAB, d_model=32, n_heads=4, d_ff=48, n_layers=2, max_length=64,
                               positions="rope", norm="rms", activation="swiglu", eps=1e-6, dropout=0.0,
                               pad_id=0, **options)
    torch.manual_seed(1)
    model = DecoderLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                parameter.normal_(0.0 if name.endswith("bias") else 1.0, 0.2)
    directory = save_hf(model, tmp_path / "hf")
    theirs = hf_model(kind, directory)
    assert json.loads((directory / "config.json").read_text())["architectures"] == [kind]
    assert (directory / "generation_config.json").is_file()
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), theirs(ids).logits, atol=ATOL, rtol=0)
    again = load_hf(directory).model
    assert again.config == config.replace(activation_dropout=0.0, scale_embeddings=False)
    torch.testing.assert_close(again(ids), model(ids), atol=0, rtol=0)


def test_export_refuses_what_llama_cannot_hold(tmp_path: Path) -> None:
    config = TransformerConfig(vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=1, positions="rope", norm="layer")
    with pytest.raises(ValueError, match=r"LlamaForCausalLM.*norm must be 'rms'.*activation must be 'swiglu'"):
        save_hf(DecoderLM(config), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rotary scaling 'llama3' is not supported"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
    ({"head_dim": 16}, "head_dim 16 differs"),
    ({"attention_bias": True}, "attention_bias=True with mlp_bias=False is not supported"),
])
def test_unsupported_options_are_one_clear_error(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    directory = tiny("LlamaForCausalLM", tmp_path)
    values = json.loads((directory / "config.json").read_text())
    values.pop("rope_parameters") if "rope_scaling" in change else None
    (directory / "config.json").write_text(json.dumps({**values, **change}))
    with pytest.raises(CheckpointError, match=message) as error:
        load_hf(directory)
    assert "\n" not in str(error.value) and str(directory) in str(error.value)


def test_missing_and_misshapen_weights_are_named(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    directory = tiny("Qwen2ForCausalLM", tmp_path, num_key_value_heads=2)
    tensors = load_file(str(directory / "model.safetensors"))
    del tensors["model.layers.1.self_attn.k_proj.bias"]
    tensors["model.layers.0.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"][:-1]
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing \['layers.1.self_attn.k_proj.bias'\]"):
        load_hf(directory)
    tensors["model.layers.1.self_attn.k_proj.bias"] = torch.zeros(16)
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"feed_forward.up.weight: expected \(48, 32\), got \(47, 32\)"):
        load_hf(directory)


def test_new_config_fields_leave_existing_configs_unchanged(tmp_path: Path) -> None:
    """``rope_theta`` and ``qkv_bias`` are written only when set, so every earlier ``config.json`` reads the same and
    every earlier model writes the same; bad values are one-line ``ConfigError``s."""
    from multihead.errors import ConfigError

    plain = TransformerConfig(vocab_size=VOCAB, positions="rope")
    assert "rope_theta" not in plain.to_dict() and "qkv_bias" not in plain.to_dict()
    assert TransformerConfig.from_dict(plain.to_dict()) == plain and plain.uses_qkv_bias
    qwen = plain.replace(rope_theta=1e6, bias=False, qkv_bias=True)
    assert qwen.to_dict()["rope_theta"] == 1e6 and qwen.to_dict()["qkv_bias"] is True
    qwen.save(tmp_path / "config.json")
    assert TransformerConfig.load(tmp_path / "config.json") == qwen
    layer = DecoderLM(qwen).decoder.layers[0]
    assert layer.self_attn.positions.base == 1e6
    assert layer.self_attn.k_proj.bias is not None and layer.self_attn.out_proj.bias is None
    assert layer.feed_forward.up.bias is None
    for bad in ({"rope_theta": 0.5}, {"rope_theta": float("nan")}, {"rope_theta": True}, {"qkv_bias": "yes"}):
        with pytest.raises(ConfigError, match=f"TransformerConfig.{next(iter(bad))} must be"):
            plain.replace(**bad)
