"""Model directories in the Hugging Face style: ``config.json``, ``model.safetensors``, ``tokenizer.json``
and, for classifiers, ``labels.json``. Loading reads data only; it never runs code from the directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from multihead.atomic import atomic_directory, recover_directory
from multihead.models import (
    DecoderLM,
    Encoder,
    EncoderDecoder,
    SentenceScorer,
    SequenceClassifier,
    SpanExtractor,
    TokenClassifier,
    TransformerConfig,
)
from multihead.models.ensemble import ClassifierEnsemble
from multihead.models.masked_lm import MaskedLM
from multihead.models.rnn_classifier import BiLSTMClassifier
from multihead.models.rnn_lm import LSTMLanguageModel
from multihead.models.rnn_seq2seq import RNNEncoderDecoder
from multihead.models.textcnn import TextCNN
from multihead.quantize import apply_quantization_record, quantization_record

__all__ = [
    "FORMAT_VERSION",
    "LoadedModel",
    "architecture_of",
    "load_model_dir",
    "save_model_dir",
    "write_model_files",
]

FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
TOKENIZER_FILE, LABELS_FILE = "tokenizer.json", "labels.json"


@dataclass
class LoadedModel:
    """What a model directory holds; ``tokenizer`` and ``labels`` are None when absent."""

    model: nn.Module
    config: dict[str, Any]
    tokenizer: Any | None  # multihead.tokenizers.Tokenizer
    labels: Any | None  # multihead.data.LabelVocab


def architecture_of(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """The architecture name and constructor arguments (beyond the config) that rebuild ``model``."""
    if isinstance(model, SequenceClassifier):
        return "SequenceClassifier", {"n_classes": model.classifier.out_features, "pooling": model.pooling}
    if isinstance(model, TokenClassifier):
        return "TokenClassifier", {"n_labels": model.classifier.out_features}
    if isinstance(model, SentenceScorer):
        return "SentenceScorer", {"design": model.design, "segment_embeddings": model.segments is not None}
    for kind in (SpanExtractor, DecoderLM, EncoderDecoder, MaskedLM, Encoder):
        if isinstance(model, kind):
            return kind.__name__, {}
    if type(model).__name__ in _BUILDERS and hasattr(model, "architecture_args"):  # a baseline
        return type(model).__name__, model.architecture_args()
    raise ValueError(f"cannot save a {type(model).__name__}: not a multihead model")


_BUILDERS: dict[str, type[nn.Module]] = {
    "SequenceClassifier": SequenceClassifier,
    "TokenClassifier": TokenClassifier,
    "SpanExtractor": SpanExtractor,
    "DecoderLM": DecoderLM,
    "EncoderDecoder": EncoderDecoder,
    "Encoder": Encoder,
    "MaskedLM": MaskedLM,
    "SentenceScorer": SentenceScorer,
    "RNNEncoderDecoder": RNNEncoderDecoder,
    "LSTMLanguageModel": LSTMLanguageModel,
    "TextCNN": TextCNN,
    "BiLSTMClassifier": BiLSTMClassifier,
    "ClassifierEnsemble": ClassifierEnsemble,
}
"""Architecture name in ``config.json`` -> model class. A class with a ``config_class`` attribute is rebuilt from
that config class (baselines); the others from ``TransformerConfig``. Baselines also define
``architecture_args()``: the constructor arguments beyond the config."""


def write_model_files(
    directory: Path,
    *,
    model: nn.Module,
    tokenizer: Any | None = None,
    labels: Any | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the files of a model directory into an existing ``directory`` (not atomic by itself)."""
    architecture, arguments = architecture_of(model)
    config = {
        "format": "multihead",
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "architecture_args": arguments,
        "model": model.config.to_dict(),
        **(extra or {}),
    }
    if (quantization := quantization_record(model)) is not None:
        config["quantization"] = quantization
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_model(model, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save(directory / TOKENIZER_FILE)
    if labels is not None:
        labels.save(directory / LABELS_FILE)


def save_model_dir(
    directory: str | Path,
    *,
    model: nn.Module,
    tokenizer: Any | None = None,
    labels: Any | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model directory atomically: readers see the previous version or this one, never a mix."""
    directory = Path(directory)
    with atomic_directory(directory) as staging:
        write_model_files(staging, model=model, tokenizer=tokenizer, labels=labels, extra=extra)
    return directory


def load_model_dir(directory: str | Path, *, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model of ``directory`` from its JSON config and load its safetensors weights (eval mode)."""
    directory = Path(directory)
    recover_directory(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found; a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: line {error.lineno}: not valid JSON ({error.msg})") from error
    if config.get("format") != "multihead":
        raise ValueError(f"{config_path}: not a multihead model directory (\"format\" is {config.get('format')!r})")
    architecture = config.get("architecture")
    if architecture not in _BUILDERS:
        raise ValueError(f"{config_path}: unknown architecture {architecture!r}; known: {sorted(_BUILDERS)}")
    config_class = getattr(_BUILDERS[architecture], "config_class", TransformerConfig)
    try:
        model_config = config_class.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{config_path}: bad \"model\" section: {error}") from error
    model = _BUILDERS[architecture](model_config, **config.get("architecture_args", {}))
    if "quantization" in config:  # int8/int4 layers, rebuilt empty before the weights are checked and loaded
        apply_quantization_record(model, config["quantization"], origin=str(config_path))
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: not found")
    missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not fit {architecture}: missing {missing}, unexpected {unexpected}")
    tokenizer = labels = None
    if (directory / TOKENIZER_FILE).is_file():
        from multihead.tokenizers import Tokenizer

        tokenizer = Tokenizer.load(directory / TOKENIZER_FILE)
    if (directory / LABELS_FILE).is_file():
        from multihead.data import LabelVocab

        labels = LabelVocab.load(directory / LABELS_FILE)
    return LoadedModel(model=model.to(device).eval(), config=config, tokenizer=tokenizer, labels=labels)
