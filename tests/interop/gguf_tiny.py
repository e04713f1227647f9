"""Tiny GGUF files written the way llama.cpp's converter writes them, from a tiny random ``transformers`` model.

The converter permutes the query and key rows of ``llama`` models for llama.cpp's interleaved rotary layout
(``reshape(heads, 2, Dh / 2, in).swapaxes(1, 2)``), lists tensor shapes fastest dimension first and stores the
tokenizer (a byte-level BPE: the 256 byte symbols, a few merges, control tokens) in the metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="GGUF tests need the gguf package (pip install gguf)")
transformers = pytest.importorskip("transformers", reason="GGUF parity tests compare against transformers")

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
MERGES = ("Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
          " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def byte_tokens() -> list[str]:
    """The 256 single-byte symbols of GPT-2's byte-level alphabet, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[byte] for byte in range(256)]


def vocabulary() -> tuple[list[str], list[int]]:
    """Tokens (specials first, then bytes, then merged tokens) and their llama.cpp types (3 control, 1 normal)."""
    tokens = list(SPECIALS) + byte_tokens() + ["".join(merge.split()) for merge in MERGES]
    return tokens, [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))


VOCAB = len(vocabulary()[0])


def hf_model(kind: str = "LlamaForCausalLM", **overrides: Any) -> Any:
    """A 2-layer random ``kind`` (width 32, 4 query heads of width 8, feed-forward 64) over ``VOCAB`` tokens."""
    values = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
              "initializer_range": 0.2, "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "bos_token_id": 1,
              "eos_token_id": 2, "pad_token_id": 2, **overrides}
    theta = values.pop("rope_theta", 10000.0)
    config = getattr(transformers, kind.replace("ForCausalLM", "Config"))(**values)
    config.rope_parameters = {"rope_type": "default", "rope_theta": theta}
    torch.manual_seed(0)
    model = getattr(transformers, kind)(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.2)
            elif "norm" in name:
                parameter.normal_(1.0, 0.2)
    return model


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute``: rotate-half pairs of each head become neighbours."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


def write_gguf(path: Path, model: Any, *, arch: str = "llama", quant: str = "F32", embedding_quant: str | None = None,
               fields: dict[str, Any] | None = None, drop: tuple[str, ...] = (),
               replace: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``model`` (a ``transformers`` Llama or Qwen2) as a GGUF file of architecture ``arch``.

    Args:
        quant: storage of the 2-D weights (``F32``, ``F16``, ``Q8_0``, ``Q4_0``, ``Q4_1``, ...); norms stay F32.
        embedding_quant: storage of the token embedding (default ``quant``).
        fields: metadata to add or override (``None`` values remove a key).
        drop: tensor names to leave out; replace: tensors (GGUF names) to write instead of the model's.
    """
    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    tensors: dict[str, np.ndarray] = {}
    for name, value in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if name.startswith("model.layers."):
            index, rest = name.removeprefix("model.layers.").split(".", 1)
            module, kind = rest.rsplit(".", 1)
            target = f"blk.{index}.{layer[module]}.{kind}"
        else:
            target = names[name]
        array = value.detach().float().numpy().copy()
        if arch != "qwen2" and target.split(".")[-2] in ("attn_q", "attn_k"):
            array = _permute(array, heads if ".attn_q." in target else kv_heads)
        tensors[target] = array
    tensors.update(replace or {})
    tokens, types = vocabulary()
    values: dict[str, Any] = {
        f"{arch}.block_count": config.num_hidden_layers, f"{arch}.context_length": config.max_position_embeddings,
        f"{arch}.embedding_length": config.hidden_size, f"{arch}.feed_forward_length": config.intermediate_size,
        f"{arch}.attention.head_count": heads, f"{arch}.attention.head_count_kv": kv_heads,
        f"{arch}.rope.freq_base": float(config.rope_parameters["rope_theta"]),
        f"{arch}.attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        f"{arch}.rope.dimension_count": config.hidden_size // heads,
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm", "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": list(MERGES),
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.padding_token_id": 2, "tokenizer.ggml.add_bos_token": False, "tokenizer.chat_template": CHATML,
        **(fields or {}),
    }
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)
    for name, array in tensors.items():
        if name in drop:
            continue
        storage = (embedding_quant or quant) if name == "token_embd.weight" else quant
        if array.ndim == 1 or storage == "F32":
            writer.add_tensor(name, array.astype(np.float32))
        elif storage == "F16":
            writer.add_tensor(name, array.astype(np.float16))
        else:
            kind = gguf.GGMLQuantizationType[storage]
            writer.add_tensor(name, gguf.quants.quantize(array.astype(np.float32), kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def roundtrip(model: Any, quant: str, embedding_quant: str | None = None) -> Any:
    """``model`` with every 2-D weight replaced by its ``quant``-stored value (quantized, then dequantized), so that
    it computes what the GGUF file holds."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            storage = (embedding_quant or quant) if "embed_tokens" in name else quant
            if parameter.dim() == 2 and storage not in ("F32",):
                if storage == "F16":
                    parameter.copy_(parameter.half().float())
                    continue
                kind = gguf.GGMLQuantizationType[storage]
                stored = gguf.quants.quantize(parameter.numpy().astype(np.float32), kind)
                parameter.copy_(torch.from_numpy(gguf.quants.dequantize(stored, kind).reshape(parameter.shape)))
    return model
