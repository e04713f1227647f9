"""Llama, Qwen2 and Mistral (``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``MistralForCausalLM``) <-> our ``DecoderLM``.

The three share one shape: a pre-norm decoder with RMSNorm, rotary positions (rotate-half layout, base
``rope_theta``), grouped-query attention and a SwiGLU feed-forward ``down(silu(gate(x)) * up(x))``. Llama has no
biases (or, with ``attention_bias`` and ``mlp_bias``, biases everywhere); Qwen2 has biases on the query, key and
value projections only. Mistral's sliding window is not implemented: a model whose window is shorter than its
context gets ``max_length`` = the window, inside which both agree exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from multihead.errors import CheckpointError, LimitError
from multihead.interop.options import Requirements, hf_value
from multihead.interop.weights import TensorSource, load_mapped
from multihead.models import DecoderLM, TransformerConfig

__all__ = ["ARCHITECTURES", "MODEL_TYPES", "config_from_hf", "export_llama", "hf_model_type", "load_llama"]

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}
"""``model_type`` -> the ``transformers`` class of its causal language model."""
MODEL_TYPES = tuple(ARCHITECTURES)
_DEFAULT_CONTEXT = {"llama": 2048, "qwen2": 32768, "mistral": 131072}
_LAYER = (  # (Hugging Face name, our name) of each layer's weights
    ("input_layernorm", "attn_norm"),
    ("post_attention_layernorm", "ff_norm"),
    ("self_attn.q_proj", "self_attn.q_proj"),
    ("self_attn.k_proj", "self_attn.k_proj"),
    ("self_attn.v_proj", "self_attn.v_proj"),
    ("self_attn.o_proj", "self_attn.out_proj"),
    ("mlp.gate_proj", "feed_forward.gate"),
    ("mlp.up_proj", "feed_forward.up"),
    ("mlp.down_proj", "feed_forward.down"),
)
_SKIPPED = ("layers.*.self_attn.rotary_emb.inv_freq", "rotary_emb.inv_freq")  # buffers some versions saved


def rope_theta_from_hf(hf: Mapping[str, Any], *, origin: str) -> float:
    """The rotary base of a ``config.json``: ``rope_parameters`` (transformers 5) or ``rope_theta`` and
    ``rope_scaling`` (earlier); any scaling but the default is refused."""
    parameters = hf.get("rope_parameters")
    if isinstance(parameters, Mapping):
        kind, theta = parameters.get("rope_type", "default"), parameters.get("rope_theta", hf.get("rope_theta"))
    else:
        scaling = hf.get("rope_scaling") or {}
        kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, Mapping) else scaling
        theta = hf.get("rope_theta")
    if kind != "default":
        raise CheckpointError(f"{origin}: rotary scaling {kind!r} is not supported; expected plain RoPE "
                              f"(rope_type 'default')")
    theta = 10000.0 if theta is None else theta
    if isinstance(theta, bool) or not isinstance(theta, int | float) or not theta > 1:
        raise CheckpointError(f"{origin}: rope_theta must be a number > 1, got {theta!r:.40}")
    return float(theta)


def config_from_hf(hf: Mapping[str, Any], *, origin: str) -> TransformerConfig:
    """Our config for a Llama, Qwen2 or Mistral ``config.json``; options we cannot reproduce are errors."""
    model_type = hf.get("model_type")
    if model_type not in ARCHITECTURES:
        raise CheckpointError(f"{origin}: model_type {model_type!r} is not one of {MODEL_TYPES}")
    if hf.get("hidden_act", "silu") not in ("silu", "swish"):
        raise CheckpointError(f"{origin}: hidden_act {hf.get('hidden_act')!r} is not supported; expected 'silu'")
    d_model = hf_value(hf, "hidden_size", origin=origin)
    n_heads = hf_value(hf, "num_attention_heads", origin=origin)
    if d_model is None or n_heads is None or d_model % n_heads:
        raise CheckpointError(f"{origin}: hidden_size {d_model} must be a multiple of num_attention_heads {n_heads}")
    head_dim = hf.get("head_dim")
    if head_dim not in (None, d_model // n_heads):
        raise CheckpointError(f"{origin}: head_dim {head_dim} differs from hidden_size / num_attention_heads = "
                              f"{d_model // n_heads}; only that head width is supported")
    if hf.get("partial_rotary_factor", 1.0) != 1.0:
        raise CheckpointError(f"{origin}: partial_rotary_factor {hf.get('partial_rotary_factor')} is not supported; "
                              f"expected rotary positions on every channel (1.0)")
    bias, qkv_bias = _biases(hf, model_type, origin=origin)
    context = hf_value(hf, "max_position_embeddings", _DEFAULT_CONTEXT[model_type], origin=origin)
    window = hf.get("sliding_window") if model_type == "mistral" or hf.get("use_sliding_window") else None
    if isinstance(window, int) and not isinstance(window, bool) and 0 < window < context:
        context = window
    kv_heads = hf_value(hf, "num_key_value_heads", n_heads, origin=origin)
    pad_id = hf.get("pad_token_id")
    vocab_size = hf_value(hf, "vocab_size", origin=origin)
    try:
        return TransformerConfig(
            vocab_size=vocab_size,
            d_model=d_model,
            n_heads=n_heads,
            n_kv_heads=None if kv_heads == n_heads else kv_heads,
            d_ff=hf_value(hf, "intermediate_size", origin=origin),
            n_layers=hf_value(hf, "num_hidden_layers", origin=origin),
            activation="swiglu",
            norm="rms",
            norm_first=True,
            eps=float(hf.get("rms_norm_eps", 1e-6)),
            positions="rope",
            rope_theta=rope_theta_from_hf(hf, origin=origin),
            max_length=context,
            dropout=0.0,
            attention_dropout=float(hf.get("attention_dropout", 0.0)),
            activation_dropout=0.0,
            bias=bias,
            qkv_bias=qkv_bias,
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            scale_embeddings=False,
            pad_id=pad_id if isinstance(pad_id, int) and 0 <= pad_id < (vocab_size or 0) else None,
        )
    except (TypeError, ValueError) as error:  # sizes over the limits stay LimitErrors; the rest is a bad file
        raise (LimitError if isinstance(error, LimitError) else CheckpointError)(f"{origin}: {error}") from error


def _biases(hf: Mapping[str, Any], model_type: str, *, origin: str) -> tuple[bool, bool | None]:
    """``(bias, qkv_bias)`` of our config for the architecture's bias options."""
    if model_type == "qwen2":
        return False, True
    attention, mlp = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    if attention != mlp:
        raise CheckpointError(f"{origin}: attention_bias={attention} with mlp_bias={mlp} is not supported; "
                              f"expected both false (Llama) or both true")
    return attention, None


def load_llama(hf: Mapping[str, Any], tensors: Mapping[str, Tensor], *, origin: str) -> tuple[nn.Module, None]:
    """Build and fill a ``DecoderLM`` from a Llama, Qwen2 or Mistral checkpoint."""
    model_type = str(hf.get("model_type"))
    allowed = (ARCHITECTURES.get(model_type, ""), ARCHITECTURES.get(model_type, "").replace("ForCausalLM", "Model"))
    architecture = (hf.get("architectures") or [allowed[0]])[0]
    if architecture not in allowed:
        raise CheckpointError(f"{origin}: architecture {architecture!r} is not supported; expected one of {allowed}")
    config = config_from_hf(hf, origin=origin)
    has_prefix = any(name.startswith("model.") for name in tensors)
    source = TensorSource(tensors, origin=origin, prefix="model." if has_prefix else "")
    mapped = {
        "decoder.embeddings.tokens.weight": source.take("embed_tokens.weight"),
        "decoder.final_norm.weight": source.take("norm.weight"),
    }
    for index in range(config.n_layers):
        for hf_name, our_name in _LAYER:
            our, theirs = f"decoder.layers.{index}.{our_name}", f"layers.{index}.{hf_name}"
            mapped[f"{our}.weight"] = source.take(f"{theirs}.weight")
            if _has_bias(config, hf_name):
                mapped[f"{our}.bias"] = source.take(f"{theirs}.bias")
    if config.tie_embeddings:
        source.skip(["lm_head.weight"])  # some exports save the tied copy too
    else:
        mapped["lm_head.weight"] = source.take("lm_head.weight")
    source.skip(_SKIPPED)
    try:
        source.check(architecture)
        model = DecoderLM(config)
        load_mapped(model, mapped, origin=origin)
    except ValueError as error:
        raise error if isinstance(error, CheckpointError) else CheckpointError(str(error)) from error
    return model, None


def _has_bias(config: TransformerConfig, hf_name: str) -> bool:
    """Whether the layer weight called ``hf_name`` has a bias under ``config``."""
    if hf_name.endswith("layernorm"):
        return False
    if hf_name.split(".")[-1] in ("q_proj", "k_proj", "v_proj"):
        return config.uses_qkv_bias
    return config.bias


def hf_model_type(config: TransformerConfig) -> str:
    """``qwen2`` for biases on the query, key and value projections alone, else ``llama``."""
    return "qwen2" if config.uses_qkv_bias and not config.bias else "llama"


def export_llama(
    model: nn.Module, *, base: Mapping[str, Any], special_ids: Mapping[str, int | None] | None = None
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The ``config.json`` values and tensors of a rotary, RMSNorm, SwiGLU ``DecoderLM`` as ``LlamaForCausalLM``
    (or ``Qwen2ForCausalLM`` when only q/k/v have biases).

    Args:
        base: ``config.json`` values carried over (special token ids are taken from it first).
        special_ids: ``bos``, ``eos`` and ``pad`` token ids, used where ``base`` has none.
    """
    config: TransformerConfig = model.config
    model_type = hf_model_type(config)
    needs = Requirements(ARCHITECTURES[model_type])
    needs.need("norm", config.norm, "rms")
    needs.need("norm_first", config.norm_first, True)
    needs.need("positions", config.positions, "rope")
    needs.need("activation", config.activation, "swiglu")
    needs.need("embedding_norm", config.embedding_norm, False)
    needs.need("output_bias", config.output_bias, False)
    needs.need("scale_embeddings", config.scales_embeddings, False)
    needs.need("pruned_heads", config.pruned_heads, None)
    if model_type == "llama":
        needs.need("qkv_bias", config.uses_qkv_bias, config.bias)
    needs.check()
    state = model.state_dict()
    tensors = {
        "model.embed_tokens.weight": state["decoder.embeddings.tokens.weight"],
        "model.norm.weight": state["decoder.final_norm.weight"],
    }
    for index in range(config.n_layers):
        for hf_name, our_name in _LAYER:
            our, theirs = f"decoder.layers.{index}.{our_name}", f"model.layers.{index}.{hf_name}"
            tensors[f"{theirs}.weight"] = state[f"{our}.weight"]
            if _has_bias(config, hf_name):
                tensors[f"{theirs}.bias"] = state[f"{our}.bias"]
    if not config.tie_embeddings:
        tensors["lm_head.weight"] = state["lm_head.weight"]
    ids = dict(special_ids or {})
    values: dict[str, Any] = {
        "architectures": [ARCHITECTURES[model_type]],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.feed_forward_width,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads or config.n_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_length,
        "rms_norm_eps": config.eps,
        "rope_theta": config.rope_theta,  # transformers 4 reads this key, 5 reads rope_parameters
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "tie_word_embeddings": config.tie_embeddings,
        "attention_dropout": config.attention_dropout,
        "use_cache": True,
        "bos_token_id": base.get("bos_token_id", ids.get("bos")),
        "eos_token_id": base.get("eos_token_id", ids.get("eos")),
        "pad_token_id": config.pad_id if config.pad_id is not None else base.get("pad_token_id", ids.get("pad")),
    }
    if model_type == "llama":
        values.update(attention_bias=config.bias, mlp_bias=config.bias)
    else:
        values.update(use_sliding_window=False, sliding_window=None)
    return values, tensors
