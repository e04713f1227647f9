"""Model directories in the Hugging Face style: ``config.json``, ``model.safetensors``, ``tokenizer.json``
and, for classifiers, ``labels.json``. Loading reads data only; it never runs code from the directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from torch import nn

from multihead.atomic import atomic_directory, recover_directory
from multihead.errors import CheckpointError, LimitError
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
from multihead.safetensors_files import load_weights_into

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
MAX_CONFIG_BYTES = 64 << 20
"""A ``config.json`` larger than this is refused unread (ours are a few kilobytes)."""


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
    raise TypeError(f"cannot save a {type(model).__name__}: not a multihead model")


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
    overwrite: bool = False,
) -> Path:
    """Write a model directory atomically: readers see the previous version or this one, never a mix.

    An existing ``directory`` is replaced only when it is a model directory (or empty); ``overwrite`` allows one
    that holds other files too, and then replaces only the model's files (see
    :func:`multihead.atomic.atomic_directory`).
    """
    directory = Path(directory)
    with atomic_directory(directory, overwrite=overwrite) as staging:
        write_model_files(staging, model=model, tokenizer=tokenizer, labels=labels, extra=extra)
    return directory


def load_model_dir(directory: str | Path, *, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the model of ``directory`` from its JSON config and load its safetensors weights (eval mode).

    Raises:
        FileNotFoundError: ``config.json`` or ``model.safetensors`` is missing.
        CheckpointError: anything else wrong with the directory: a damaged or unreadable file, a config of another
            format version, weights of another shape or dtype, NaN or infinite weights, labels that do not fit.
        LimitError: the config describes a model over the size limits.
    """
    directory = Path(directory)
    recover_directory(directory)
    config_path = directory / CONFIG_FILE
    config = _read_config(config_path)
    architecture = config.get("architecture")
    if architecture not in _BUILDERS:
        raise CheckpointError(f"{config_path}: unknown architecture {str(architecture)[:80]!r}; known: "
                              f"{sorted(_BUILDERS)}")
    model = _build(config, config_path)
    if "quantization" in config:  # int8/int4 layers, rebuilt empty before the weights are checked and loaded
        apply_quantization_record(model, config["quantization"], origin=str(config_path))
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: not found; a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    load_weights_into(model, weights, device=str(device), what=f"the {architecture} of {config_path.name}")
    tokenizer = labels = None
    if (directory / TOKENIZER_FILE).is_file():
        from multihead.tokenizers import Tokenizer

        tokenizer = Tokenizer.load(directory / TOKENIZER_FILE)
    if (directory / LABELS_FILE).is_file():
        from multihead.data import LabelVocab

        labels = LabelVocab.load(directory / LABELS_FILE)
        _check_labels(labels, config, directory / LABELS_FILE)
    return LoadedModel(model=model.to(device).eval(), config=config, tokenizer=tokenizer, labels=labels)


def _read_config(path: Path) -> dict[str, Any]:
    """``config.json`` of a model directory, checked for its format and format version."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: {path.stat().st_size:,} bytes; a model config is at most "
                              f"{MAX_CONFIG_BYTES:,} bytes (ours are a few kilobytes)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from error
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except RecursionError as error:
        raise CheckpointError(f"{path}: JSON nested too deeply; expected a model config") from error
    if not isinstance(config, dict) or config.get("format") != "multihead":
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{path}: not a multihead model directory (\"format\" is {str(found)[:80]!r})")
    version = config.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r:.20} is not one this multihead reads "
                              f"(1..{FORMAT_VERSION}); a newer multihead wrote it, or the file is damaged")
    return config


def _build(config: dict[str, Any], config_path: Path) -> nn.Module:
    """The untrained model ``config`` describes; a config that does not fit raises ``CheckpointError``."""
    architecture = config["architecture"]
    config_class = getattr(_BUILDERS[architecture], "config_class", TransformerConfig)
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{config_path}: \"model\" must be an object of config fields, got "
                              f"{str(config.get('model'))[:80]!r}")
    try:
        model_config = config_class.from_dict(config["model"])
    except LimitError as error:
        raise LimitError(f"{config_path}: {error}") from error
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: bad \"model\" section: {str(error)[:300]}") from error
    arguments = config.get("architecture_args", {})
    if not isinstance(arguments, dict) or not all(isinstance(value, str | int | float | bool | None)
                                                  for value in arguments.values()):
        raise CheckpointError(f"{config_path}: \"architecture_args\" must be an object of plain values, got "
                              f"{str(arguments)[:80]!r}")
    wrong = {key: value for key, value in arguments.items()
             if key in ("n_classes", "n_labels", "size") and (not isinstance(value, int) or isinstance(value, bool))}
    if wrong:
        raise CheckpointError(f"{config_path}: architecture_args {wrong!r:.80}: expected whole numbers")
    try:
        return _BUILDERS[architecture](model_config, **arguments)
    except (TypeError, ValueError) as error:  # an argument the constructor does not take, or a bad value
        raise CheckpointError(f"{config_path}: architecture_args {str(arguments)[:80]} do not build a "
                              f"{architecture}: {str(error)[:200]}") from error


def _check_labels(labels: Any, config: dict[str, Any], path: Path) -> None:
    """``labels.json`` names as many classes as the model has."""
    arguments = config.get("architecture_args") or {}
    classes = arguments.get("n_classes", arguments.get("n_labels"))
    if classes is not None and len(labels) != classes:
        raise CheckpointError(f"{path}: {len(labels)} label names for a model of {classes} classes; expected "
                              f"one name per class")
