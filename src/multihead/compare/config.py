"""The ``multihead compare`` config: a base experiment (or the long-range probe), the architectures to train on
it with the same budget, and how to measure them.

```yaml
title: MR sentiment
output_dir: runs/compare-mr
base: sentiment-mr.yaml              # an experiment config (task, data, tokenizer, training budget)
experiment: {training: {steps: 2000}}  # optional overrides of the base, section by section
architectures:                       # report label -> model section (+ optimiser settings of its own)
  transformer: {model: {preset: tiny, d_model: 128}}
  textcnn: {model: {architecture: textcnn}, training: {lr: 1.0e-3}}
measure: {lengths: [32, 128, 512], batch_size: 8, rounds: 5, train_length: 64}
```

A probe comparison has ``probe:`` (a :class:`multihead.compare.probe.ProbeSpec` plus example counts) and a
``training:`` section instead of ``base``/``experiment``. Every architecture gets the same steps, batch size,
time limit, seed and evaluation schedule; only the optimiser settings in :data:`PER_ARCHITECTURE_TRAINING` may
differ.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multihead.compare.probe import ProbeSpec
from multihead.errors import ConfigError
from multihead.experiment import ExperimentConfig, apply_overrides, build_experiment, read_config_file

__all__ = ["PER_ARCHITECTURE_TRAINING", "CompareConfig", "MeasureConfig", "ProbeSettings", "load_compare"]

PER_ARCHITECTURE_TRAINING = ("lr", "weight_decay", "betas", "schedule", "warmup_steps", "min_lr_ratio", "clip_norm",
                             "label_smoothing", "precision", "ema_decay")
"""Training keys an architecture may set for itself; the budget (steps, batch size, time) stays shared."""


@dataclass(frozen=True, kw_only=True)
class MeasureConfig:
    """How speed and memory are measured (on fresh models of each trained architecture).

    Attributes:
        lengths: sequence lengths for inference latency and memory.
        batch_size: sequences per inference batch.
        rounds: interleaved rounds (architecture A, B, C, A, B, C, ...); medians are reported.
        train_length: tokens per sequence in the training-throughput batch (its batch size is the budget's).
        threads: torch intra-op threads while measuring.
    """

    lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    batch_size: int = 8
    rounds: int = 5
    train_length: int = 64
    threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "lengths", tuple(self.lengths))
        if not self.lengths or any(not isinstance(n, int) or n < 2 for n in self.lengths):
            raise ConfigError(f"measure.lengths must be integers >= 2, got {self.lengths!r:.80}")
        for name in ("batch_size", "rounds", "train_length", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"measure.{name} must be a positive integer, got {value!r:.80}")


@dataclass(frozen=True, kw_only=True)
class ProbeSettings:
    """The probe's layout (``spec``) and how many examples to train, validate and test on (test: per distance)."""

    spec: ProbeSpec
    train_examples: int = 20000
    validation_examples: int = 500
    test_examples: int = 500

    def __post_init__(self) -> None:
        for name in ("train_examples", "validation_examples", "test_examples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"probe.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class CompareConfig:
    """A validated comparison.

    Attributes:
        experiments: label -> the experiment that trains that architecture (task runs), in report order.
        probe: the probe settings (probe runs; then ``experiments`` hold only the model and training sections).
        decoding: generation options for translation quality (e.g. ``beam_size``).
        measure: speed and memory settings, or None to skip them.
        source: the config file, and the ``--set`` overrides, for the report's command line.
    """

    title: str
    output_dir: str
    experiments: dict[str, ExperimentConfig]
    probe: ProbeSettings | None = None
    decoding: dict[str, Any] = field(default_factory=dict)
    measure: MeasureConfig | None = None
    source: str = ""
    overrides: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        return "probe" if self.probe is not None else next(iter(self.experiments.values())).task

    @property
    def model_inputs(self) -> str:
        """How the compared models are fed (the probe's are classifiers); see ``Task.model_inputs``."""
        from multihead.tasks.registry import get_task

        return "classification" if self.probe is not None else get_task(self.task).model_inputs


_TOP_KEYS = {"title", "output_dir", "base", "experiment", "architectures", "measure", "decoding", "probe", "training"}


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Section by section: a mapping in ``changes`` updates the same section of ``base``."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_compare(values: dict[str, Any], *, base_dir: Path, source: str = "",
                  overrides: tuple[str, ...] = ()) -> CompareConfig:
    """Validate a compare mapping; relative paths are read from ``base_dir``."""
    unknown = sorted(set(values) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]}; allowed keys: {sorted(_TOP_KEYS)}")
    architectures = values.get("architectures")
    if not isinstance(architectures, dict) or not architectures:
        raise ConfigError("architectures must map report labels to {model: ..., training: ...}, got "
                          f"{architectures!r:.80}")
    output_dir = str(values.get("output_dir", "runs/compare"))  # from the working directory, as experiments
    probe = None
    if "probe" in values:
        if "base" in values or "experiment" in values:
            raise ConfigError("a probe comparison takes probe: and training:, not base: or experiment:")
        section = dict(values["probe"] or {})
        counts = {key: section.pop(key) for key in ("train_examples", "validation_examples", "test_examples")
                  if key in section}
        try:
            probe = ProbeSettings(spec=ProbeSpec(**section), **counts)
        except TypeError as error:
            raise ConfigError(f"probe: {error}") from error
        base: dict[str, Any] = {"task": "classification", "data": {"train": "(the probe)"},
                                "training": dict(values.get("training") or {})}
    else:
        if "training" in values:
            raise ConfigError("training: belongs to the base experiment (or experiment: overrides), not the top")
        if "base" not in values and "experiment" not in values:
            raise ConfigError("a comparison needs base: (an experiment config file) or experiment: (its sections)")
        base = {}
        if "base" in values:
            base_path = base_dir / str(values["base"])
            base = read_config_file(base_path)
            base_dir_of_experiment = base_path.resolve().parent
        else:
            base_dir_of_experiment = base_dir
        base = _merge(base, dict(values.get("experiment") or {}))
        base.pop("model", None)
    experiments: dict[str, ExperimentConfig] = {}
    for label, entry in architectures.items():
        if not isinstance(label, str) or not label.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"architecture label {label!r:.80}: use letters, digits, '-' and '_' (it names a folder)")
        entry = dict(entry or {})
        extra = sorted(set(entry) - {"model", "training"})
        if extra:
            raise ConfigError(f"architectures.{label}: unknown key {extra[0]}; allowed: model, training")
        training = dict(entry.get("training") or {})
        shared = sorted(set(training) - set(PER_ARCHITECTURE_TRAINING))
        if shared:
            raise ConfigError(f"architectures.{label}.training.{shared[0]}: the budget is shared; an architecture may "
                              f"set only {list(PER_ARCHITECTURE_TRAINING)}")
        values_of = _merge(base, {"training": training})
        values_of["model"] = dict(entry.get("model") or {})
        values_of["output_dir"] = str(Path(output_dir) / label)
        try:
            experiments[label] = build_experiment(values_of, base_dir=None if probe else base_dir_of_experiment)
        except ValueError as error:
            raise ConfigError(f"architectures.{label}: {error}") from error
    measure = None
    if values.get("measure", {}) is not None:
        try:
            measure = MeasureConfig(**dict(values.get("measure") or {}))
        except TypeError as error:
            raise ConfigError(f"measure: {error}") from error
    decoding = dict(values.get("decoding") or {})
    return CompareConfig(title=str(values.get("title", "Comparison")), output_dir=output_dir,
                         experiments=experiments, probe=probe, decoding=decoding, measure=measure, source=source,
                         overrides=overrides)


def load_compare(path: str | Path, overrides: list[str] | None = None, *, output_dir: str | None = None
                 ) -> CompareConfig:
    """Read, override (``--set section.key=value``) and validate a compare config file."""
    path = Path(path)
    values = apply_overrides(read_config_file(path), overrides or [])
    if output_dir is not None:
        values["output_dir"] = str(Path(output_dir).resolve())
    try:
        return build_compare(values, base_dir=path.resolve().parent, source=str(path),
                             overrides=tuple(overrides or ()))
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from error
