"""BERT (``BertModel``, ``BertForSequenceClassification``) <-> our ``Encoder`` and ``SequenceClassifier``.

BERT is a post-norm encoder with learned positions and a LayerNorm over the summed embeddings
(``config.embedding_norm``). Its token-type embeddings are folded into our position table: our
models feed one segment, type 0, so ``position[p] + type[0]`` is added at position ``p`` either way.
Saving writes two zero token-type rows, so the exported model computes the same thing for type 0 and 1.
BERT's pooler (``tanh(dense(h[CLS]))``) is ``config.pooler`` of a ``SequenceClassifier`` with ``cls``
pooling; a plain ``Encoder`` has none, so loading a ``BertModel`` skips it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from multihead.errors import CheckpointError, ConfigError
from multihead.interop.options import Requirements, activation_from_hf, activation_to_hf, hf_value
from multihead.interop.weights import TensorSource, load_mapped
from multihead.models import Encoder, SequenceClassifier, TransformerConfig

__all__ = ["ARCHITECTURES", "export_bert", "load_bert"]

ARCHITECTURES = ("BertModel", "BertForSequenceClassification", "BertForMaskedLM", "BertForPreTraining")
"""Loadable BERT classes; the two pre-training ones give their encoder (their heads are skipped)."""

_LAYER = (  # (BERT name, our name) inside one layer
    ("attention.self.query", "self_attn.q_proj"),
    ("attention.self.key", "self_attn.k_proj"),
    ("attention.self.value", "self_attn.v_proj"),
    ("attention.output.dense", "self_attn.out_proj"),
    ("attention.output.LayerNorm", "attn_norm"),
    ("intermediate.dense", "feed_forward.up"),
    ("output.dense", "feed_forward.down"),
    ("output.LayerNorm", "ff_norm"),
)
_SKIPPED = ("embeddings.position_ids", "embeddings.token_type_ids")


def _config(hf: Mapping[str, Any], *, origin: str, pooler: bool) -> TransformerConfig:
    """Our config for a BERT ``config.json``; options we cannot reproduce are errors."""
    position_type = hf.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise CheckpointError(f"{origin}: position_embedding_type {position_type!r:.80} is not supported; expected "
                              "'absolute'")
    for flag in ("is_decoder", "add_cross_attention"):
        if hf.get(flag):
            raise CheckpointError(f"{origin}: {flag}=true is not supported; expected a bidirectional BERT encoder")
    return TransformerConfig(
        vocab_size=hf_value(hf, "vocab_size", origin=origin),
        d_model=hf_value(hf, "hidden_size", 768, origin=origin),
        n_heads=hf_value(hf, "num_attention_heads", 12, origin=origin),
        n_layers=hf_value(hf, "num_hidden_layers", 12, origin=origin),
        d_ff=hf_value(hf, "intermediate_size", 3072, origin=origin),
        activation=activation_from_hf(hf.get("hidden_act", "gelu"), origin=origin, key="hidden_act"),
        norm_first=False,
        eps=float(hf.get("layer_norm_eps", 1e-12)),
        positions="learned",
        max_length=hf_value(hf, "max_position_embeddings", 512, origin=origin),
        dropout=float(hf.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.1)),
        activation_dropout=0.0,
        scale_embeddings=False,
        pad_id=hf.get("pad_token_id", 0),
        embedding_norm=True,
        pooler=pooler,
    )


def _label_names(hf: Mapping[str, Any], *, origin: str) -> list[str]:
    """Class names in index order from ``id2label`` (or ``LABEL_i`` for ``num_labels``)."""
    if hf.get("problem_type") == "regression":
        raise CheckpointError(f"{origin}: problem_type 'regression' is not supported; expected a classifier")
    id2label = hf.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            return [str(id2label[key]) for key in sorted(id2label, key=int)]
        except ValueError as error:
            raise CheckpointError(f"{origin}: id2label keys must be class indices, got {sorted(id2label)}") from error
    return [f"LABEL_{index}" for index in range(hf_value(hf, "num_labels", 2, origin=origin))]


def load_bert(
    hf: Mapping[str, Any], tensors: Mapping[str, Tensor], *, origin: str
) -> tuple[nn.Module, list[str] | None]:
    """Build and fill an ``Encoder`` (or a ``SequenceClassifier`` and its class names) from a BERT checkpoint."""
    architecture = (hf.get("architectures") or ["BertModel"])[0]
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{origin}: architecture {architecture!r:.80} is not supported; expected one of "
                              f"{ARCHITECTURES}")
    classify = architecture == "BertForSequenceClassification"
    has_prefix = any(name.startswith("bert.") for name in tensors)
    source = TensorSource(tensors, origin=origin, prefix="bert." if has_prefix else "")
    config = _config(hf, origin=origin, pooler=classify)
    labels = _label_names(hf, origin=origin) if classify else None
    model: nn.Module
    if classify:
        assert labels is not None
        model = SequenceClassifier(config, n_classes=len(labels), pooling="cls")
        ours = "encoder."
    else:
        model = Encoder(config)
        ours = ""
    mapped = _encoder_tensors(source, config, ours)
    if classify:
        for hf_name, our_name in (("pooler.dense", "pooler.0"), ("classifier", "classifier")):
            mapped[f"{our_name}.weight"] = source.take(f"{hf_name}.weight")
            mapped[f"{our_name}.bias"] = source.take(f"{hf_name}.bias")
    else:
        source.skip(["pooler.*", "cls.*"])
    source.skip(_SKIPPED)
    source.check(architecture)
    load_mapped(model, mapped, origin=origin)
    return model, labels


def _encoder_tensors(source: TensorSource, config: TransformerConfig, ours: str) -> dict[str, Tensor]:
    """Our encoder's tensors (names start with ``ours``) from BERT's ``embeddings.*`` and ``encoder.*``."""
    positions = source.take("embeddings.position_embeddings.weight")
    token_types = source.take("embeddings.token_type_embeddings.weight")
    if positions.numel() and token_types.numel():
        positions = positions + token_types[0]  # one segment: type 0 at every position
    mapped = {
        f"{ours}embeddings.tokens.weight": source.take("embeddings.word_embeddings.weight"),
        f"{ours}embeddings.positions.embedding.weight": positions,
        f"{ours}embeddings.norm.weight": source.take("embeddings.LayerNorm.weight", "embeddings.LayerNorm.gamma"),
        f"{ours}embeddings.norm.bias": source.take("embeddings.LayerNorm.bias", "embeddings.LayerNorm.beta"),
    }
    for index in range(config.n_layers):
        for hf_name, our_name in _LAYER:
            hf_prefix, our_prefix = f"encoder.layer.{index}.{hf_name}", f"{ours}layers.{index}.{our_name}"
            mapped[f"{our_prefix}.weight"] = source.take(f"{hf_prefix}.weight", f"{hf_prefix}.gamma")
            mapped[f"{our_prefix}.bias"] = source.take(f"{hf_prefix}.bias", f"{hf_prefix}.beta")
    return mapped


def export_bert(
    model: nn.Module, *, base: Mapping[str, Any], labels: Sequence[str] | None = None
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The ``config.json`` values and tensors of ``model`` (an ``Encoder`` or a ``SequenceClassifier``) as BERT."""
    classify = isinstance(model, SequenceClassifier)
    architecture = "BertForSequenceClassification" if classify else "BertModel"
    config: TransformerConfig = model.config
    needs = Requirements(architecture)
    needs.shared(config)
    needs.need("norm_first", config.norm_first, False)
    needs.need("positions", config.positions, "learned")
    needs.need("embedding_norm", config.embedding_norm, True)
    needs.need("scale_embeddings", config.scales_embeddings, False)
    if classify:
        needs.need("pooler", config.pooler, True)
        needs.need("pooling", model.pooling, "cls")
    needs.check()
    encoder: Encoder = model.encoder if classify else model  # type: ignore[assignment]
    state = encoder.state_dict()
    prefix = "bert." if classify else ""
    tensors = {
        f"{prefix}embeddings.word_embeddings.weight": state["embeddings.tokens.weight"],
        f"{prefix}embeddings.position_embeddings.weight": state["embeddings.positions.embedding.weight"],
        f"{prefix}embeddings.token_type_embeddings.weight": torch.zeros(2, config.d_model),
        f"{prefix}embeddings.LayerNorm.weight": state["embeddings.norm.weight"],
        f"{prefix}embeddings.LayerNorm.bias": state["embeddings.norm.bias"],
    }
    for index in range(config.n_layers):
        for hf_name, our_name in _LAYER:
            for kind in ("weight", "bias"):
                tensors[f"{prefix}encoder.layer.{index}.{hf_name}.{kind}"] = state[f"layers.{index}.{our_name}.{kind}"]
    values = {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "intermediate_size": config.feed_forward_width,
        "hidden_act": activation_to_hf(config),
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_length,
        "type_vocab_size": 2,
        "layer_norm_eps": config.eps,
        "pad_token_id": config.pad_id,
    }
    if classify:
        head = model.state_dict()
        tensors.update({
            "bert.pooler.dense.weight": head["pooler.0.weight"], "bert.pooler.dense.bias": head["pooler.0.bias"],
            "classifier.weight": head["classifier.weight"], "classifier.bias": head["classifier.bias"],
        })
        names = _export_labels(model.classifier.out_features, labels, base)
        values["id2label"] = dict(enumerate(names))
        values["label2id"] = {name: index for index, name in enumerate(names)}
    return values, tensors


def _export_labels(n_classes: int, labels: Sequence[str] | None, base: Mapping[str, Any]) -> list[str]:
    """Class names for ``id2label``: the given ones, else the base config's when they fit, else ``LABEL_i``."""
    if labels is not None:
        if len(labels) != n_classes:
            raise ConfigError(f"labels has {len(labels)} names, the classifier has {n_classes} classes")
        return [str(name) for name in labels]
    id2label = base.get("id2label")
    if isinstance(id2label, dict) and len(id2label) == n_classes:
        return [str(id2label[key]) for key in sorted(id2label, key=int)]
    return [f"LABEL_{index}" for index in range(n_classes)]
