"""Experiment configs: YAML or TOML files, validated on load, with ``--set key=value`` overrides.

A config has ``task``/``output_dir`` at the top, then the sections ``data``, ``tokenizer``, ``model``,
``training`` and (optional) ``pretraining``. Unknown keys are errors that name the key; relative paths
are taken from the config file's folder.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from multihead.config_files import apply_overrides, read_config_file
from multihead.errors import CheckpointError, ConfigError, LimitError, MultiheadError
from multihead.limits import MAX_VOCAB, check_bound
from multihead.models.architectures import config_class_of
from multihead.models.config import TransformerConfig
from multihead.tasks.registry import task_names
from multihead.tokenizers import TOKENIZER_KINDS
from multihead.training.config import TrainingConfig

__all__ = ["DataConfig", "ExperimentConfig", "PretrainingConfig", "TokenizerConfig", "apply_overrides",
           "load_experiment", "recorded_split"]

T = TypeVar("T")

DATA_FORMATS = ("tsv", "csv", "jsonl", "text", "folder")
"""Values of ``data.format`` (``text`` is the readers' ``txt``)."""
BUILTIN_DATASETS = ("sentence-polarity", "bbc-news-topics", "multi30k", "tinyshakespeare", "bbc-news-summary",
                    "squad")


MODEL_EXTRAS = ("architecture", "preset", "pooling", "shared_vocabulary", "init_from", "ensemble")
"""Keys of the ``model`` section that are not config fields: ``architecture`` (``transformer``, the default, or
a baseline of :data:`multihead.models.architectures.ARCHITECTURES`, whose config fields the section then
holds), the preset to start from, the
classifier's pooling, whether a sequence-to-sequence model shares one vocabulary between its sides, and
``ensemble``: for a Transformer classifier, how many copies to train (seeds ``training.seed``, ``+ 1``, ...)
and save as one ensemble that averages their probabilities (default 1); ``init_from``: a pretrained Hugging
Face or multihead directory (or ``package:NAME``, a model shipped in an
installed Python package) whose encoder and tokenizer a classifier starts from; the preset and the
architecture then come from it, and only dropout rates and ``pooler`` may be set."""


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where the examples come from.

    Attributes:
        dataset: a built-in set (``sentence-polarity``, ``bbc-news-topics``) with its fixed splits, or None.
        train, validation, test: files or folders (TSV, CSV, JSONL, text lines, or one sub-folder per class).
        format: the format of the files ``tsv``, ``csv``, ``jsonl``, ``text`` (one example a line) or ``folder``
            (one sub-folder per class); None (default): told by each file's suffix (``.tsv``, ``.csv``,
            ``.jsonl``, ``.txt``, optionally ``.gz``) or by its being a folder.
        text_field, label_field: column names (TSV/CSV) or keys (JSONL).
        validation_fraction: held out from ``train`` (stratified, seeded) when no validation file is given.
        split_seed: seed of that held-out split (default ``training.seed``; an ensemble's members keep one split).
        skip_bad_rows: skip and count malformed rows instead of stopping at the first.
        max_length: tokens per example after truncation (special tokens included).
        encoding: text encoding of the files.
        word_dropout: share of tokens deleted at random from each training example (augmentation).
        source_field, target_field: columns or keys of the two sides of a parallel TSV/CSV/JSONL file.
        train_target, validation_target, test_target: the target files when parallel text comes as two
            line-aligned files (``train`` etc. are then the source files).
        source_language, target_language: the direction for multi30k (``en``, ``de``, ``fr``, ``cs``).
        max_target_length: target tokens per example (sequence-to-sequence tasks).
        doc_stride: question answering: context tokens each window repeats from the one before, when a context
            is longer than one window of ``max_length`` tokens.
    """

    dataset: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    format: str | None = None
    text_field: str = "text"
    label_field: str = "label"
    validation_fraction: float = 0.1
    split_seed: int | None = None
    skip_bad_rows: bool = False
    max_length: int = 128
    encoding: str = "utf-8"
    word_dropout: float = 0.0
    source_field: str = "source"
    target_field: str = "target"
    train_target: str | None = None
    validation_target: str | None = None
    test_target: str | None = None
    source_language: str = "en"
    target_language: str = "de"
    max_target_length: int = 128
    doc_stride: int = 128

    def __post_init__(self) -> None:
        if self.dataset is None and self.train is None:
            raise ConfigError("data needs either data.dataset (a built-in set) or data.train (a file)")
        if self.format is not None and self.format not in DATA_FORMATS:
            raise ConfigError(f"data.format must be one of {DATA_FORMATS} or null, got {self.format!r:.80}")
        if self.dataset is not None and self.dataset not in BUILTIN_DATASETS:
            raise ConfigError(f"data.dataset must be one of {BUILTIN_DATASETS}, got {self.dataset!r:.80}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"data.validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.max_length < 2:
            raise ConfigError(f"data.max_length must be >= 2, got {self.max_length}")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ConfigError(f"data.word_dropout must be in [0, 1), got {self.word_dropout}")
        if self.max_target_length < 2:
            raise ConfigError(f"data.max_target_length must be >= 2, got {self.max_target_length}")


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    """Load a tokenizer (``path``) or train one on the training texts (``kind``, ``vocab_size``, ...)."""

    path: str | None = None
    kind: str = "wordpiece"
    vocab_size: int = 8000
    lowercase: bool = True
    min_frequency: int = 2

    def __post_init__(self) -> None:
        if self.kind not in TOKENIZER_KINDS:
            raise ConfigError(f"tokenizer.kind must be one of {TOKENIZER_KINDS}, got {self.kind!r:.80}")
        if self.vocab_size < 2 or self.min_frequency < 0:
            raise ConfigError(f"tokenizer.vocab_size must be >= 2 and min_frequency >= 0, got {self.vocab_size} "
                              f"and {self.min_frequency}")
        check_bound("tokenizer.vocab_size", self.vocab_size, MAX_VOCAB)


@dataclass(frozen=True, kw_only=True)
class PretrainingConfig:
    """The ``pretraining`` section of an experiment: ``steps: 0`` (the default) skips it.

    Attributes:
        steps, batch_size, lr, warmup_steps, weight_decay: the masked-LM phase's optimisation.
        mask_rate: share of real, non-special tokens chosen per sequence; of those 80% become ``[MASK]``,
            10% a random token and 10% stay (BERT's recipe).
    """

    steps: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    mask_rate: float = 0.15

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1:
            raise ConfigError(f"pretraining.steps must be >= 0 and batch_size >= 1, got {self.steps}, "
                              f"{self.batch_size}")
        if not 0.0 < self.mask_rate < 1.0:
            raise ConfigError(f"pretraining.mask_rate must be in (0, 1), got {self.mask_rate}")
        if self.lr <= 0 or self.warmup_steps < 0 or (self.steps and self.warmup_steps > self.steps):
            raise ConfigError(f"pretraining.lr must be > 0 and warmup_steps in 0..steps, got {self.lr}, "
                              f"{self.warmup_steps}")


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """A whole run. ``model`` holds :data:`MODEL_EXTRAS` plus any ``TransformerConfig`` field."""

    task: str = "classification"
    output_dir: str = "runs/experiment"
    data: DataConfig
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: dict[str, Any] = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    pretraining: PretrainingConfig = field(default_factory=PretrainingConfig)
    decoding: dict[str, Any] = field(default_factory=dict)
    """``GenerationConfig`` options a sequence-to-sequence model is decoded with by default (``multihead eval``,
    ``translate``, ``summarize``), e.g. ``num_beams``, ``no_repeat_ngram_size``, ``min_new_tokens``."""

    def __post_init__(self) -> None:
        if self.task not in task_names():
            raise ConfigError(f"task must be one of {task_names()}, got {str(self.task)[:80]!r}")
        self.model_config(vocab_size=2, pad_id=0)  # validates the model section early

    @property
    def architecture(self) -> str:
        """``model.architecture``: ``transformer`` unless a baseline is named."""
        return str(self.model.get("architecture", "transformer"))

    def model_config(self, *, vocab_size: int, pad_id: int | None) -> Any:
        """The model config (``TransformerConfig``, or the baseline's config class) for a tokenizer of
        ``vocab_size`` with padding id ``pad_id``."""
        fields = {key: value for key, value in self.model.items() if key not in MODEL_EXTRAS}
        for key in ("vocab_size", "pad_id"):
            if key in fields:
                raise ConfigError(f"model.{key} comes from the tokenizer; remove it from the config")
        try:
            if self.architecture != "transformer":
                return config_class_of(self.architecture)(vocab_size=vocab_size, pad_id=pad_id, **fields)
            return TransformerConfig.preset(self.model.get("preset", "small"), vocab_size=vocab_size,
                                            pad_id=pad_id, **fields)
        except TypeError as error:
            raise ConfigError(f"model ({self.architecture}): {error}") from error
        except (ConfigError, LimitError) as error:  # name the settings as the config file does
            raise type(error)(re.sub(r"\b(TransformerConfig|TextCNNConfig|BiLSTMConfig|LSTMLMConfig|"
                                     r"RNNSeq2SeqConfig)\b", "model", str(error))) from error

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field's type (int, float, str, bool, optional, tuple); ints pass as floats."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{where} must not be null")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number, got {value!r:.80}")
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is tuple and isinstance(value, list | tuple):
            kinds = typing.get_args(option)
            if len(kinds) == 2 and kinds[1] is Ellipsis:  # tuple[int, ...]: any length
                kinds = (kinds[0],) * len(value)
            return tuple(_coerce(item, kind, where) for item, kind in zip(value, kinds, strict=False))
        if typing.get_origin(option) is dict and isinstance(value, dict):
            return value
    names = " or ".join(getattr(option, "__name__", str(option)).replace("NoneType", "null") for option in options)
    raise ConfigError(f"{where} must be {names}, got {value!r:.80}")


def _typed(section: dict[str, Any], kind: type, where: str) -> dict[str, Any]:
    hints = typing.get_type_hints(kind)
    return {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in section.items()}


_EXTRA_TYPES: dict[str, Any] = {"architecture": str, "preset": str, "pooling": str, "shared_vocabulary": bool,
                                "ensemble": int}
"""The types of :data:`MODEL_EXTRAS` (``init_from`` is checked with what it may name)."""

_SECTIONS: dict[str, type] = {"data": DataConfig, "tokenizer": TokenizerConfig, "training": TrainingConfig,
                              "pretraining": PretrainingConfig}


def _check_keys(values: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in set(values) - allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key {prefix}{str(unknown[0])[:80]}; allowed keys{' in ' + where if where else ''}: "
                          f"{sorted(allowed)}")


def _decoding(section: Any) -> dict[str, Any]:
    """The ``decoding`` section, checked by building a ``GenerationConfig`` from it (the token ids come from the
    tokenizer and are not allowed here)."""
    from multihead.generation.config import GenerationConfig

    section = section or {}
    if not isinstance(section, dict):
        raise ConfigError(f"decoding must be a mapping of GenerationConfig options, got {section!r:.80}")
    known = {f.name for f in dataclasses.fields(GenerationConfig)} - {"bos_id", "eos_id", "pad_id"}
    _check_keys(section, known, "decoding")
    try:
        GenerationConfig(**section)
    except ConfigError as error:
        raise ConfigError(f"decoding: {error}") from error
    return dict(section)


def build_experiment(values: dict[str, Any], *, base_dir: Path | None = None) -> ExperimentConfig:
    """Validate a nested mapping into an ``ExperimentConfig``; relative paths are resolved from ``base_dir``."""
    _check_keys(values, {f.name for f in dataclasses.fields(ExperimentConfig)}, "")
    sections: dict[str, Any] = {}
    for name, kind in _SECTIONS.items():
        section = values.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{name} must be a mapping of keys, got {section!r:.80}")
        _check_keys(section, {f.name for f in dataclasses.fields(kind)}, name)
        sections[name] = _typed(section, kind, name)
    model = dict(values.get("model") or {})
    config_class = config_class_of(str(model.get("architecture", "transformer")))
    model_fields = {f.name for f in dataclasses.fields(config_class)}
    _check_keys(model, model_fields | set(MODEL_EXTRAS), "model")
    hints = typing.get_type_hints(config_class)
    model = {key: _coerce(value, hints[key], f"model.{key}") if key in model_fields
             else value if key not in _EXTRA_TYPES  # init_from is checked below, with what it may name
             else _coerce(value, _EXTRA_TYPES[key], f"model.{key}") for key, value in model.items()}
    ensemble = model.get("ensemble", 1)
    if not isinstance(ensemble, int) or isinstance(ensemble, bool) or ensemble < 1:
        raise ConfigError(f"model.ensemble must be a whole number >= 1, got {ensemble!r:.80}")
    if ensemble > 1 and (values.get("task", "classification") != "classification"
                         or model.get("architecture", "transformer") != "transformer"):
        raise ConfigError("model.ensemble > 1 is for Transformer classifiers (task: classification)")
    if "init_from" in model and not (isinstance(model["init_from"], str) and model["init_from"]):
        raise ConfigError(f"model.init_from must be a directory or package:NAME, got {model['init_from']!r:.80}")
    if base_dir is not None:
        if model.get("init_from") and not model["init_from"].startswith("package:"):
            model["init_from"] = str(base_dir / Path(model["init_from"]).expanduser())
        for key in ("train", "validation", "test", "train_target", "validation_target", "test_target"):
            if sections["data"].get(key):
                sections["data"][key] = str(base_dir / Path(sections["data"][key]).expanduser())
        if sections["tokenizer"].get("path"):
            sections["tokenizer"]["path"] = str(base_dir / Path(sections["tokenizer"]["path"]).expanduser())
    try:
        return ExperimentConfig(
            task=values.get("task", "classification"),
            output_dir=str(values.get("output_dir", "runs/experiment")),
            data=DataConfig(**sections["data"]),
            tokenizer=TokenizerConfig(**sections["tokenizer"]),
            model=model,
            training=TrainingConfig(**sections["training"]),
            pretraining=PretrainingConfig(**sections["pretraining"]),
            decoding=_decoding(values.get("decoding")),
        )
    except TypeError as error:
        raise ConfigError(str(error)) from error


def recorded_split(saved: dict[str, Any], split: str, load: Callable[[ExperimentConfig], dict[str, T]], *,
                   where: str | Path) -> T:
    """Split ``split`` of the data of the experiment a model directory's ``config.json`` (``saved``) records.

    Args:
        load: reads every split of an experiment's data (e.g. ``load_pairs``, ``load_texts``).
        where: the model directory, named in the errors.
    """
    experiment = saved.get("experiment")
    if experiment is None:
        raise CheckpointError(f"{where}: config.json records no experiment; pass the data to score instead")
    splits = load(build_experiment(experiment))
    if split not in splits:
        raise ConfigError(f"split {split!r:.80} is not known for this model's data; known: {sorted(splits)}")
    return splits[split]


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate a config file; errors name the file and the bad key or value."""
    path = Path(path)
    values = apply_overrides(read_config_file(path), overrides or [])
    try:
        return build_experiment(values, base_dir=path.resolve().parent)
    except (LimitError, ConfigError) as error:
        raise type(error)(f"{path}: {error}") from error
    except MultiheadError:
        raise
