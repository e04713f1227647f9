"""``load_models``: ``NAME=PATH`` specs -> the served models, each loaded once, by what the path holds.

A path is a multihead model directory (the kind follows its architecture and task), a Hugging Face directory
(BERT -> embeddings, GPT-2 -> generation, Marian -> translation), a GGUF file (a chat model), or
``package:NAME``: an installed package's ``model/`` folder or its one ``.gguf`` file (found with
``importlib.util.find_spec``; the package is never imported). Loading never runs code from the files.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from multihead.errors import CheckpointError, ConfigError
from multihead.interop import PACKAGE_PREFIX
from multihead.serve.served import (
    Answerer,
    Classifier,
    Embedder,
    ExtractiveSummarizer,
    Generator,
    ServedModel,
    Translator,
)

__all__ = ["load_model", "load_models", "parse_model_spec", "resolve_served_path"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DECODERS = ("gpt2", "llama", "qwen2", "mistral")
"""Hugging Face model types that are language models (served for chat and completions)."""
_CLASSIFIERS = ("SequenceClassifier", "TextCNN", "BiLSTMClassifier", "ClassifierEnsemble")


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` -> ``(NAME, PATH)``; a bare ``PATH`` is named after its package, file or directory."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"a model is NAME=PATH or PATH, got {spec!r}")
    name, equals, path = spec.partition("=")
    if equals and _NAME.match(name):
        return name, path
    path = spec
    if path.startswith(PACKAGE_PREFIX):
        name = path[len(PACKAGE_PREFIX):]
    else:
        location = Path(path)
        name = location.stem if location.suffix == ".gguf" else location.name
        if name in ("best", "last", "") and location.parent.name:
            name = location.parent.name
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-._")[:64] or "model"
    return name, path


def resolve_served_path(path: str) -> Path:
    """The directory or GGUF file ``path`` names (``package:NAME``: the package's ``model/`` or its ``.gguf``)."""
    if not path.startswith(PACKAGE_PREFIX):
        location = Path(path).expanduser()
        if not location.exists():
            raise FileNotFoundError(f"{location}: no such model directory or GGUF file")
        return location
    package = path[len(PACKAGE_PREFIX):]
    try:
        spec = importlib.util.find_spec(package) if package and "." not in package else None
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(f"{path}: no installed package {package!r} (pip install {package.replace('_', '-')})")
    folder = Path(locations[0])
    if (folder / "model" / "config.json").is_file():
        return folder / "model"
    gguf = sorted(folder.glob("*.gguf"))
    if len(gguf) == 1:
        return gguf[0]
    raise FileNotFoundError(f"{path}: {folder} holds neither model/config.json nor exactly one .gguf file")


def load_models(specs: Iterable[str]) -> dict[str, ServedModel]:
    """Load every ``NAME=PATH`` spec; names must be unique."""
    models: dict[str, ServedModel] = {}
    for spec in specs:
        name, path = parse_model_spec(spec)
        if name in models:
            raise ConfigError(f"two models are named {name!r}; name them: NAME=PATH")
        models[name] = load_model(name, path)
    if not models:
        raise ConfigError("give at least one model to serve: NAME=PATH or PATH")
    return models


def load_model(name: str, path: str) -> ServedModel:
    """Load one model and wrap it for serving, by what ``path`` holds."""
    location = resolve_served_path(path)
    if location.is_file():
        if location.suffix != ".gguf":
            raise ConfigError(f"{location}: expected a model directory or a .gguf file")
        return _generator(name, location)
    from multihead.interop import is_hf_directory

    if is_hf_directory(location):
        return _hugging_face(name, location)
    config = _config(location)
    architecture, task = config.get("architecture"), config.get("task")
    if architecture == "DecoderLM":
        return _generator(name, location)
    if architecture in ("EncoderDecoder", "RNNEncoderDecoder"):
        from multihead.tasks.registry import get_task
        from multihead.tasks.seq2seq_eval import load_seq2seq

        kind = get_task(str(task or "translation")).served_as
        if kind not in ("translation", "summarization"):
            raise ConfigError(f"{location}: an encoder-decoder recorded as a {task} model; expected translation "
                              "or abstractive-summarization")
        return Translator(name, load_seq2seq(location), task=kind)
    if architecture == "SentenceScorer" and isinstance(config.get("extractive"), dict):
        from multihead.model_dir import load_model_dir

        loaded = load_model_dir(location)
        if loaded.tokenizer is None:
            raise CheckpointError(f"{location}: no tokenizer.json; expected the summariser's tokenizer")
        return ExtractiveSummarizer(name, loaded.model, loaded.tokenizer, config["extractive"])
    if architecture == "SpanExtractor" and isinstance(config.get("qa"), dict):
        from multihead.tasks.qa_model import QAModel

        return Answerer(name, QAModel.load(location))
    if architecture in _CLASSIFIERS:
        from multihead.model_dir import load_model_dir

        loaded = load_model_dir(location)
        if loaded.tokenizer is None or loaded.labels is None:
            raise CheckpointError(f"{location}: a classifier directory needs tokenizer.json and labels.json")
        length = int(config.get("experiment", {}).get("data", {}).get("max_length", 512))
        return Classifier(name, loaded.model, loaded.tokenizer, list(loaded.labels.names), max_length=length)
    if architecture in ("Encoder", "MaskedLM"):
        from multihead.embeddings import SentenceEncoder

        return Embedder(name, SentenceEncoder.load(location))
    raise ConfigError(f"{location}: a {architecture} model is not served (serve generates with a DecoderLM, "
                      "translates and summarises with an encoder-decoder, classifies, answers questions, and embeds "
                      "with an encoder)")


def _config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; expected a model directory (config.json, model.safetensors)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({str(error)[:120]})") from error
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return values


def _hugging_face(name: str, directory: Path) -> ServedModel:
    from multihead.interop import load_pretrained
    from multihead.models import Encoder, EncoderDecoder

    if _config(directory).get("model_type") in _DECODERS:
        return _generator(name, directory)
    pretrained = load_pretrained(directory)
    if isinstance(pretrained.model, Encoder):
        from multihead.embeddings import SentenceEncoder

        return Embedder(name, SentenceEncoder.load(directory))
    if pretrained.tokenizer is None:
        raise CheckpointError(f"{directory}: no tokenizer.json; expected the model's tokenizer")
    if isinstance(pretrained.model, EncoderDecoder):
        from multihead.tasks.seq2seq_eval import Seq2SeqModel

        seq2seq = Seq2SeqModel(model=pretrained.model, source_tokenizer=pretrained.tokenizer,
                               target_tokenizer=pretrained.tokenizer, config={})
        return Translator(name, seq2seq, task="translation")
    raise ConfigError(f"{directory}: a Hugging Face {type(pretrained.model).__name__} is not served")


def _generator(name: str, location: Path) -> Generator:
    """A chat model (a GGUF file or a language-model directory) with its chat template (ChatML when it has none)
    and end-of-turn tokens, loaded by ``multihead.chat``."""
    from multihead.chat.load import load_chat_model

    return Generator(name, load_chat_model(location))
