"""GPT-2 (``GPT2LMHeadModel``, ``GPT2Model``) <-> our ``DecoderLM``.

GPT-2 is a pre-norm decoder with learned positions and a final LayerNorm. Its projections are
``Conv1D`` layers, ``y = x @ W + b`` with ``W`` of shape ``(in, out)``: the transpose of a
``nn.Linear`` weight. The query, key and value projections are one ``c_attn`` of width ``3 * D``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from multihead.errors import CheckpointError
from multihead.interop.options import Requirements, activation_from_hf, activation_to_hf, hf_value
from multihead.interop.weights import TensorSource, load_mapped
from multihead.models import DecoderLM, TransformerConfig

__all__ = ["ARCHITECTURES", "export_gpt2", "load_gpt2"]

ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")

_PLAIN = (("ln_1", "attn_norm"), ("ln_2", "ff_norm"))  # (GPT-2 name, our name) of a layer's norms
_CONV = (("attn.c_proj", "self_attn.out_proj"), ("mlp.c_fc", "feed_forward.up"), ("mlp.c_proj", "feed_forward.down"))
_SKIPPED = ("h.*.attn.bias", "h.*.attn.masked_bias", "h.*.crossattention.bias")  # causal-mask buffers


def _config(hf: Mapping[str, Any], *, origin: str) -> TransformerConfig:
    """Our config for a GPT-2 ``config.json``; options we cannot reproduce are errors."""
    if hf.get("add_cross_attention"):
        raise CheckpointError(f"{origin}: add_cross_attention=true is not supported; expected a decoder-only GPT-2")
    if not hf.get("scale_attn_weights", True) or hf.get("scale_attn_by_inverse_layer_idx"):
        raise CheckpointError(f"{origin}: only attention scaled by 1/sqrt(head width) is supported "
                              f"(scale_attn_weights=true, scale_attn_by_inverse_layer_idx=false)")
    d_model = hf_value(hf, "n_embd", 768, origin=origin)
    return TransformerConfig(
        vocab_size=hf_value(hf, "vocab_size", origin=origin),
        d_model=d_model,
        n_heads=hf_value(hf, "n_head", 12, origin=origin),
        n_layers=hf_value(hf, "n_layer", 12, origin=origin),
        d_ff=hf.get("n_inner") or 4 * d_model,
        activation=activation_from_hf(hf.get("activation_function", "gelu_new"), origin=origin,
                                      key="activation_function"),
        norm_first=True,
        eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        positions="learned",
        max_length=hf_value(hf, "n_positions", 1024, origin=origin),
        dropout=float(hf.get("resid_pdrop", 0.1)),
        attention_dropout=float(hf.get("attn_pdrop", 0.1)),
        activation_dropout=0.0,
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        scale_embeddings=False,
        pad_id=hf.get("pad_token_id"),
    )


def load_gpt2(hf: Mapping[str, Any], tensors: Mapping[str, Tensor], *, origin: str) -> tuple[nn.Module, None]:
    """Build and fill a ``DecoderLM`` from a GPT-2 checkpoint (``GPT2Model`` needs tied embeddings)."""
    architecture = (hf.get("architectures") or ["GPT2LMHeadModel"])[0]
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{origin}: architecture {architecture!r:.80} is not supported; expected one of "
                              f"{ARCHITECTURES}")
    config = _config(hf, origin=origin)
    has_prefix = any(name.startswith("transformer.") for name in tensors)
    source = TensorSource(tensors, origin=origin, prefix="transformer." if has_prefix else "")
    model = DecoderLM(config)
    mapped = {
        "decoder.embeddings.tokens.weight": source.take("wte.weight"),
        "decoder.embeddings.positions.embedding.weight": source.take("wpe.weight"),
        "decoder.final_norm.weight": source.take("ln_f.weight"),
        "decoder.final_norm.bias": source.take("ln_f.bias"),
    }
    for index in range(config.n_layers):
        hf_prefix, our_prefix = f"h.{index}", f"decoder.layers.{index}"
        for hf_name, our_name in _PLAIN:
            for kind in ("weight", "bias"):
                mapped[f"{our_prefix}.{our_name}.{kind}"] = source.take(f"{hf_prefix}.{hf_name}.{kind}")
        for hf_name, our_name in _CONV:
            weight = _transposed(source.take(f"{hf_prefix}.{hf_name}.weight"))  # (out, in)
            mapped[f"{our_prefix}.{our_name}.weight"] = weight
            mapped[f"{our_prefix}.{our_name}.bias"] = source.take(f"{hf_prefix}.{hf_name}.bias")
        qkv_weight = _transposed(source.take(f"{hf_prefix}.attn.c_attn.weight"))  # (3D, D)
        qkv_bias = source.take(f"{hf_prefix}.attn.c_attn.bias")  # (3D,)
        if qkv_weight.numel() and qkv_bias.numel():
            parts = zip("qkv", qkv_weight.chunk(3, dim=0), qkv_bias.chunk(3), strict=True)  # (D, D) and (D,) each
            for part, weight, bias in parts:
                mapped[f"{our_prefix}.self_attn.{part}_proj.weight"] = weight
                mapped[f"{our_prefix}.self_attn.{part}_proj.bias"] = bias
    if config.tie_embeddings:
        source.skip(["lm_head.weight"])  # saved by some versions; it is the token embedding
    else:
        mapped["lm_head.weight"] = source.take("lm_head.weight")
    source.skip(_SKIPPED)
    source.check(architecture)
    load_mapped(model, mapped, origin=origin)
    return model, None


def _transposed(weight: Tensor) -> Tensor:
    """A ``Conv1D`` weight ``(in, out)`` as a ``nn.Linear`` weight ``(out, in)`` (empty stays empty)."""
    return weight.t() if weight.dim() == 2 else weight


def export_gpt2(model: nn.Module, *, base: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The ``config.json`` values and tensors of a ``DecoderLM`` as ``GPT2LMHeadModel``."""
    config: TransformerConfig = model.config
    needs = Requirements("GPT2LMHeadModel")
    needs.shared(config)
    needs.need("norm_first", config.norm_first, True)
    needs.need("positions", config.positions, "learned")
    needs.need("embedding_norm", config.embedding_norm, False)
    needs.need("output_bias", config.output_bias, False)
    needs.need("scale_embeddings", config.scales_embeddings, False)
    needs.check()
    state = model.state_dict()
    tensors = {
        "transformer.wte.weight": state["decoder.embeddings.tokens.weight"],
        "transformer.wpe.weight": state["decoder.embeddings.positions.embedding.weight"],
        "transformer.ln_f.weight": state["decoder.final_norm.weight"],
        "transformer.ln_f.bias": state["decoder.final_norm.bias"],
    }
    for index in range(config.n_layers):
        hf_prefix, our_prefix = f"transformer.h.{index}", f"decoder.layers.{index}"
        for hf_name, our_name in _PLAIN:
            for kind in ("weight", "bias"):
                tensors[f"{hf_prefix}.{hf_name}.{kind}"] = state[f"{our_prefix}.{our_name}.{kind}"]
        for hf_name, our_name in _CONV:
            tensors[f"{hf_prefix}.{hf_name}.weight"] = state[f"{our_prefix}.{our_name}.weight"].t()  # (in, out)
            tensors[f"{hf_prefix}.{hf_name}.bias"] = state[f"{our_prefix}.{our_name}.bias"]
        parts = [f"{our_prefix}.self_attn.{part}_proj" for part in "qkv"]
        tensors[f"{hf_prefix}.attn.c_attn.weight"] = torch.cat([state[f"{p}.weight"] for p in parts]).t()  # (D, 3D)
        tensors[f"{hf_prefix}.attn.c_attn.bias"] = torch.cat([state[f"{p}.bias"] for p in parts])  # (3D,)
    if not config.tie_embeddings:
        tensors["lm_head.weight"] = state["lm_head.weight"]
    values = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.max_length,
        "n_embd": config.d_model,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": config.feed_forward_width,
        "activation_function": activation_to_hf(config),
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.attention_dropout,
        "layer_norm_epsilon": config.eps,
        "tie_word_embeddings": config.tie_embeddings,
        "pad_token_id": config.pad_id,
        "bos_token_id": base.get("bos_token_id"),
        "eos_token_id": base.get("eos_token_id"),
    }
    return values, tensors
