"""The task registry: one table from a task's name to what the task is.

Every caller that acts on a task (``multihead train``/``eval``, ``multihead compare``, ``multihead heads``, the
server) looks it up here; no other module dispatches on a task's name. A task module defines ``TASK = Task(...)``
and gets one line in :data:`_BUILTIN`; modules are imported on first use, so the table costs nothing to read.

Example::

    task = get_task(config.task)
    result = task.train(config, resume=False, test=True, log=print)
    print("\\n".join(task.result_lines(result)))
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multihead.errors import CheckpointError, ConfigError

__all__ = ["Task", "TaskResult", "get_task", "model_task", "task_names", "task_of_model"]


@dataclass(frozen=True)
class TaskResult:
    """What training one task produced, in the one shape every task shares.

    Attributes:
        task: the task's name.
        output_dir: the run's folder (``best/`` and ``last/`` inside).
        seconds: wall time of training.
        best_step: the step chosen on validation (None if validation never ran).
        metric: the validation metric's name (``accuracy``, ``bleu``, ``loss``, ...).
        best_validation: its value at ``best_step``.
        validation: the best model's validation figures by name (may be empty).
        test: the test report, when the task scored test during training (None otherwise).
        interrupted: training was stopped (Ctrl-C) before its budget; ``last/`` holds the state to resume.
        notes: further lines worth printing (a chosen selection rule, skipped rows, ...).
    """

    task: str
    output_dir: Path
    seconds: float
    best_step: int | None
    metric: str
    best_validation: float | None
    validation: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] | None = None
    interrupted: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """What a task is, for everything that acts on one.

    Attributes:
        name: the ``task:`` value of a config and of a model directory's ``config.json``.
        train: ``(config, *, resume, test, log) -> TaskResult``.
        evaluate: ``(model_dir, *, split, data, references, options, limit) -> report`` (a JSON-able dict).
        report_lines: the summary a report prints, one line each.
        next_steps: ``(best_model_dir) -> commands`` a user may run after training.
        compare_scores: ``(config, result, decoding) -> figures`` for ``multihead compare``; None: not comparable.
        head_study: ``(model_dir, **options) -> HeadStudy`` for ``multihead heads``; None: not supported.
        summarize: ``(model_dir, texts, *, sentences) -> summaries`` for a summariser that does not decode like a
            translator (extractive); None: ``multihead summarize`` decodes with the model's generation config.
        paired: evaluation reports carry per-example predictions that ``eval --against`` can pair.
        served_as: the kind of model ``multihead serve`` makes of the task's models (``classification``,
            ``translation``, ``summarization``, ``generation``, ``question-answering``); None: not served.
        model_inputs: how a model of the task is fed when ``multihead compare`` measures it: ``classification``
            (``model(ids, mask=)``), ``translation`` (``model(source, target)``) or ``language-model``
            (``model(ids)``); see :class:`multihead.compare.measure.TaskInputs`.
    """

    name: str
    train: Callable[..., TaskResult]
    evaluate: Callable[..., dict[str, Any]]
    report_lines: Callable[[dict[str, Any]], list[str]]
    next_steps: Callable[[Path], list[str]] = lambda best: []
    compare_scores: Callable[..., dict[str, Any]] | None = None
    head_study: Callable[..., Any] | None = None
    summarize: Callable[..., list[str]] | None = None
    paired: bool = False
    model_inputs: str = "classification"
    served_as: str | None = None

    def result_lines(self, result: TaskResult) -> list[str]:
        """The lines ``multihead train`` prints after training."""
        best = result.output_dir / "best"
        value = "none" if result.best_validation is None else f"{result.best_validation:.4f}"
        state = "stopped early (interrupted)" if result.interrupted else "trained"
        if result.best_step is None and result.best_validation is not None:  # an ensemble: no one step
            step = ""
        else:
            step = f" at step {result.best_step if result.best_step is not None else '(never validated)'}"
        lines = [f"{state} in {result.seconds:.0f} s; best validation {result.metric} {value}{step}; model: {best}"]
        lines += list(result.notes)
        if result.test is not None:
            lines += ["test split (reported once, with the best-on-validation model):", *self.report_lines(result.test)]
        if result.interrupted:
            state_dir = result.output_dir / "last"  # an ensemble's is in its member's folder (see its notes)
            lines.append("resume: multihead train CONFIG --resume"
                         + (f" (state in {state_dir})" if state_dir.is_dir() else ""))
        else:
            lines += [f"next: {command}" for command in self.next_steps(best)]
        return lines


_BUILTIN: dict[str, str] = {
    "classification": "multihead.tasks.builtin:CLASSIFICATION",
    "translation": "multihead.tasks.builtin:TRANSLATION",
    "abstractive-summarization": "multihead.tasks.builtin:ABSTRACTIVE",
    "extractive-summarization": "multihead.tasks.builtin:EXTRACTIVE",
    "language-model": "multihead.tasks.builtin:LANGUAGE_MODEL",
    "question-answering": "multihead.tasks.question_answering:TASK",
}
"""Task name -> ``module:attribute`` of its :class:`Task`."""


def task_names() -> tuple[str, ...]:
    """Every registered task's name, in the table's order."""
    return tuple(_BUILTIN)


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; a ``ConfigError`` names the known tasks otherwise."""
    if name not in _BUILTIN:
        raise ConfigError(f"unknown task {str(name)[:80]!r}; known tasks: {', '.join(_BUILTIN)}")
    module, attribute = _BUILTIN[name].split(":")
    task = getattr(importlib.import_module(module), attribute)
    if not isinstance(task, Task) or task.name != name:
        raise TypeError(f"{_BUILTIN[name]} is not the Task {name!r}")  # a bug in the table, not bad input
    return task


def model_task(model_dir: str | Path) -> str:
    """The ``task`` recorded in a model directory's ``config.json`` (``classification`` when absent); a GGUF file
    (``.gguf`` or ``package:NAME`` holding one) is a language model."""
    if str(model_dir).endswith(".gguf") or str(model_dir).startswith("package:"):
        from multihead.interop import resolve_model_path

        if resolve_model_path(model_dir).suffix == ".gguf":
            return "language-model"
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; expected a model directory (config.json, model.safetensors)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({str(error)[:120]})") from error
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return str(values.get("task", "classification"))


def task_of_model(model_dir: str | Path) -> Task:
    """The :class:`Task` of a saved model directory."""
    return get_task(model_task(model_dir))
