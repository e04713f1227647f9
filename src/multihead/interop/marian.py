"""Marian (``MarianMTModel``) <-> our ``EncoderDecoder``.

Marian is a post-norm encoder-decoder without a final norm. With a shared vocabulary one matrix
embeds both sides; a checkpoint whose encoder and decoder matrices differ anyway (untied ones) loads
as two vocabularies of the same size. Its fixed sinusoidal positions put every
sine before every cosine (``config.sinusoid_layout = "halves"``); token embeddings are scaled by
``sqrt(D)`` when ``scale_embedding`` is set; logits get ``final_logits_bias`` (``config.output_bias``).
The position tables are not weights (Hugging Face rebuilds them on load), so they are skipped on
load and not written on save.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from multihead.errors import CheckpointError
from multihead.interop.options import Requirements, activation_from_hf, activation_to_hf, hf_value
from multihead.interop.weights import TensorSource, load_mapped
from multihead.models import EncoderDecoder, TransformerConfig

__all__ = ["ARCHITECTURES", "export_marian", "load_marian"]

ARCHITECTURES = ("MarianMTModel",)

_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
_COMMON = (("self_attn_layer_norm", "attn_norm"), ("fc1", "feed_forward.up"), ("fc2", "feed_forward.down"),
           ("final_layer_norm", "ff_norm"))
_CROSS = (("encoder_attn_layer_norm", "cross_norm"),)
_LAYER_NORM_EPS = 1e-5  # Marian's LayerNorms use PyTorch's default


def _layer_names(side: str, index: int) -> list[tuple[str, str]]:
    """(Marian prefix, our prefix) of every linear or norm of one layer; ``side`` is encoder or decoder."""
    pairs = [(f"self_attn.{name}", f"self_attn.{name}") for name in _ATTENTION] + list(_COMMON)
    if side == "decoder":
        pairs += [(f"encoder_attn.{name}", f"cross_attn.{name}") for name in _ATTENTION] + list(_CROSS)
    return [(f"model.{side}.layers.{index}.{hf}", f"{side}.layers.{index}.{ours}") for hf, ours in pairs]


def _config(hf: Mapping[str, Any], *, origin: str, separate: bool) -> TransformerConfig:
    """Our config for a Marian ``config.json``; options we cannot reproduce are errors. ``separate``: the
    encoder and decoder embeddings differ even though the vocabulary is shared (untied checkpoints)."""
    for encoder_key, decoder_key in (("encoder_attention_heads", "decoder_attention_heads"),
                                     ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(encoder_key) != hf.get(decoder_key):
            raise CheckpointError(f"{origin}: {encoder_key}={hf.get(encoder_key)!r:.80} differs from {decoder_key}="
                                  f"{hf.get(decoder_key)!r:.80}; expected the same value on both sides")
    vocab_size = hf_value(hf, "vocab_size", origin=origin)
    shared = bool(hf.get("share_encoder_decoder_embeddings", True))
    decoder_vocab = hf.get("decoder_vocab_size") or vocab_size
    if shared and decoder_vocab != vocab_size:
        raise CheckpointError(f"{origin}: decoder_vocab_size {decoder_vocab} differs from vocab_size {vocab_size} "
                              f"but share_encoder_decoder_embeddings is true")
    return TransformerConfig(
        vocab_size=vocab_size,
        target_vocab_size=decoder_vocab if separate or not shared else None,
        d_model=hf_value(hf, "d_model", 1024, origin=origin),
        n_heads=hf_value(hf, "encoder_attention_heads", 16, origin=origin),
        n_layers=hf_value(hf, "encoder_layers", 12, origin=origin),
        n_decoder_layers=hf_value(hf, "decoder_layers", 12, origin=origin),
        d_ff=hf_value(hf, "encoder_ffn_dim", 4096, origin=origin),
        activation=activation_from_hf(hf.get("activation_function", "gelu"), origin=origin,
                                      key="activation_function"),
        norm_first=False,
        eps=_LAYER_NORM_EPS,
        positions="sinusoidal",
        sinusoid_layout="halves",
        max_length=hf_value(hf, "max_position_embeddings", 1024, origin=origin),
        dropout=float(hf.get("dropout", 0.1)),
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        activation_dropout=float(hf.get("activation_dropout", 0.0)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        scale_embeddings=bool(hf.get("scale_embedding", False)),
        pad_id=hf.get("pad_token_id"),
        output_bias=True,
    )


def load_marian(hf: Mapping[str, Any], tensors: Mapping[str, Tensor], *, origin: str) -> tuple[nn.Module, None]:
    """Build and fill an ``EncoderDecoder`` from a ``MarianMTModel`` checkpoint."""
    architecture = (hf.get("architectures") or ["MarianMTModel"])[0]
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{origin}: architecture {architecture!r:.80} is not supported; expected one of "
                              f"{ARCHITECTURES}")
    source = TensorSource(tensors, origin=origin)
    encoder_embedding = source.take("model.encoder.embed_tokens.weight", "model.shared.weight")
    decoder_embedding = source.take("model.decoder.embed_tokens.weight", "model.shared.weight")
    source.skip(["model.shared.weight"])  # the matrix both sides use when the checkpoint ties them
    same = encoder_embedding.shape == decoder_embedding.shape and torch.equal(encoder_embedding, decoder_embedding)
    config = _config(hf, origin=origin, separate=not same)
    model = EncoderDecoder(config)
    mapped = {"encoder.embeddings.tokens.weight": encoder_embedding}
    if config.target_vocab_size is not None:
        mapped["decoder.embeddings.tokens.weight"] = decoder_embedding
    for side, count in (("encoder", config.n_layers), ("decoder", config.decoder_layers)):
        for index in range(count):
            for hf_prefix, our_prefix in _layer_names(side, index):
                for kind in ("weight", "bias"):
                    mapped[f"{our_prefix}.{kind}"] = source.take(f"{hf_prefix}.{kind}")
    bias = source.take("final_logits_bias")  # (1, V)
    mapped["lm_head.bias"] = bias.reshape(-1) if bias.numel() else bias  # (V,)
    if config.tie_embeddings:
        source.skip(["lm_head.weight"])
    else:
        mapped["lm_head.weight"] = source.take("lm_head.weight")
    source.skip(["model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"])
    source.check(architecture)
    load_mapped(model, mapped, origin=origin)
    return model, None


def export_marian(model: nn.Module, *, base: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The ``config.json`` values and tensors of an ``EncoderDecoder`` as ``MarianMTModel``.

    ``decoder_start_token_id`` defaults to the padding id and ``eos_token_id`` to 0, Marian's conventions,
    unless ``base`` (e.g. the loaded model's config) names them.
    """
    config: TransformerConfig = model.config
    needs = Requirements("MarianMTModel")
    needs.shared(config)
    needs.need("norm_first", config.norm_first, False)
    needs.need("positions", config.positions, "sinusoidal")
    needs.need("sinusoid_layout", config.sinusoid_layout, "halves")
    needs.need("embedding_norm", config.embedding_norm, False)
    needs.need("eps", config.eps, _LAYER_NORM_EPS)
    if config.pad_id is None:
        needs.problems.append("pad_id must be set (Marian pads with it and starts decoding from it)")
    needs.check()
    state = model.state_dict()
    tensors: dict[str, Tensor] = {}
    if config.target_vocab_size is None:
        tensors["model.shared.weight"] = state["encoder.embeddings.tokens.weight"]
    else:
        tensors["model.encoder.embed_tokens.weight"] = state["encoder.embeddings.tokens.weight"]
        tensors["model.decoder.embed_tokens.weight"] = state["decoder.embeddings.tokens.weight"]
    for side, count in (("encoder", config.n_layers), ("decoder", config.decoder_layers)):
        for index in range(count):
            for hf_prefix, our_prefix in _layer_names(side, index):
                for kind in ("weight", "bias"):
                    tensors[f"{hf_prefix}.{kind}"] = state[f"{our_prefix}.{kind}"]
    bias = state.get("lm_head.bias", torch.zeros(config.output_vocab_size))
    tensors["final_logits_bias"] = bias.reshape(1, -1)  # (1, V)
    if not config.tie_embeddings:
        tensors["lm_head.weight"] = state["lm_head.weight"]
    values = {
        "architectures": ["MarianMTModel"],
        "model_type": "marian",
        "vocab_size": config.vocab_size,
        "decoder_vocab_size": config.output_vocab_size,
        "share_encoder_decoder_embeddings": config.target_vocab_size is None,
        "d_model": config.d_model,
        "encoder_layers": config.n_layers,
        "decoder_layers": config.decoder_layers,
        "encoder_attention_heads": config.n_heads,
        "decoder_attention_heads": config.n_heads,
        "encoder_ffn_dim": config.feed_forward_width,
        "decoder_ffn_dim": config.feed_forward_width,
        "activation_function": activation_to_hf(config),
        "dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": config.dropout if config.activation_dropout is None else config.activation_dropout,
        "max_position_embeddings": config.max_length,
        "scale_embedding": config.scales_embeddings,
        "tie_word_embeddings": config.tie_embeddings,
        "pad_token_id": config.pad_id,
        "decoder_start_token_id": base.get("decoder_start_token_id", config.pad_id),
        "eos_token_id": base.get("eos_token_id", 0),
        "forced_eos_token_id": base.get("forced_eos_token_id"),
        "bos_token_id": base.get("bos_token_id"),
        "is_encoder_decoder": True,
    }
    return values, tensors
