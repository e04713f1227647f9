"""``run_compare``: train each architecture of a comparison through the normal task function, score it, measure
its speed and memory, and write the report.

Quality: classification accuracy (validation at the best step; test once, by that step's model), translation
BLEU and chrF (sacreBLEU, validation and test, decoded with the config's ``decoding`` options) and the
language model's validation perplexity. Speed and memory are measured afterwards on fresh models of the same
architectures and sizes (random weights: time and memory do not depend on the values), interleaved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from multihead.compare.config import CompareConfig
from multihead.compare.measure import Measured, TaskInputs, count_parameters, measure_models
from multihead.errors import ConfigError
from multihead.experiment import ExperimentConfig
from multihead.tasks.registry import get_task

__all__ = ["CompareResult", "fresh_copy", "run_compare"]

CompareResult = dict[str, Any]


def fresh_copy(model: nn.Module, *, max_length: int) -> nn.Module:
    """A new, randomly initialised model of ``model``'s architecture and sizes, long enough for ``max_length``."""
    from multihead.model_dir import architecture_of

    _, arguments = architecture_of(model)  # the constructor arguments beyond the config
    config = model.config
    if hasattr(config, "max_length") and config.max_length < max_length:
        config = replace(config, max_length=max_length)
    return type(model)(config, **arguments)


def _train_task(experiment: ExperimentConfig, *, decoding: dict[str, Any], log: Callable[[str], None]
                ) -> dict[str, Any]:
    """Train one architecture; its quality figures and the best model directory."""
    task = get_task(experiment.task)
    if task.compare_scores is None:
        raise ConfigError(f"multihead compare cannot compare {task.name} models")
    result = task.train(experiment, resume=False, test=True, log=log)
    scores = {"best_step": result.best_step, "seconds": result.seconds,
              "validation": {experiment.training.metric: result.best_validation}}
    figures = task.compare_scores(experiment, result, decoding)
    scores["validation"] = figures.pop("validation", scores["validation"])
    return {**scores, **figures}


def _paired_tests(config: CompareConfig) -> dict[str, dict[str, float]]:
    """Exact McNemar tests between every two classifiers on the test split: ``"a vs b"`` -> how many test examples
    only ``a`` got right, only ``b``, and the two-sided p-value."""
    from multihead.metrics import compare_reports
    from multihead.tasks.classification import evaluate_classifier_split

    reports = {label: evaluate_classifier_split(Path(experiment.output_dir) / "best", "test", with_predictions=True)
               for label, experiment in config.experiments.items()}
    labels = list(reports)
    return {f"{a} vs {b}": compare_reports(reports[a], reports[b])
            for i, a in enumerate(labels) for b in labels[i + 1:]}


def _task_inputs(kind: str, model: nn.Module) -> TaskInputs:
    return TaskInputs(kind=kind, vocab_size=model.config.vocab_size, pad_id=model.config.pad_id)


def run_compare(config: CompareConfig, *, log: Callable[[str], None] = print) -> CompareResult:
    """Train, score and measure every architecture of ``config``; write ``report.md``, ``report.json`` and plots
    to ``config.output_dir``; return the report's figures."""
    from multihead.compare.report import write_report
    from multihead.model_dir import load_model_dir

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    quality: dict[str, dict[str, Any]] = {}
    trained: dict[str, nn.Module] = {}
    for label, experiment in config.experiments.items():
        log(f"== {label}: training ({experiment.architecture})")
        if config.probe is not None:
            from multihead.compare.probe_run import train_probe

            quality[label] = train_probe(experiment, config.probe, log=log)
        else:
            quality[label] = _train_task(experiment, decoding=config.decoding, log=log)
        trained[label] = load_model_dir(Path(experiment.output_dir) / "best").model
        quality[label]["parameters"] = count_parameters(trained[label])
        quality[label]["architecture"] = experiment.architecture
        (output_dir / "quality.json").write_text(json.dumps(quality, indent=2, default=str) + "\n")
    measured: Measured | None = None
    if config.measure is not None:
        settings = config.measure
        log(f"== measuring speed and memory ({settings.rounds} interleaved rounds, {settings.threads} thread(s))")
        models = {label: (fresh_copy(model, max_length=max(*settings.lengths, settings.train_length)),
                          _task_inputs(config.model_inputs, model)) for label, model in trained.items()}
        train_batch = next(iter(config.experiments.values())).training.batch_size
        measured = measure_models(models, lengths=settings.lengths, batch_size=settings.batch_size,
                                  rounds=settings.rounds, train_batch=train_batch,
                                  train_length=settings.train_length, threads=settings.threads, log=log)
    tested = all("accuracy" in q.get("test", {}) for q in quality.values())
    paired = config.probe is None and get_task(config.task).paired
    significance = _paired_tests(config) if paired and tested else None
    result = write_report(config, quality=quality, measured=measured, seconds=time.perf_counter() - started,
                          significance=significance)
    log(f"wrote {output_dir / 'report.md'}")
    return result
